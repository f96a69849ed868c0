package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"backstop/shared/command"
)

// Command states the function reports beside the probe's own
// (command.State): before a probe has picked the command up.
const (
	statePending = "pending" // written, not picked up yet, still valid
	stateExpired = "expired" // not picked up before it expired: no probe will run it
)

// StatusResponse answers {"action":"status"}.
type StatusResponse struct {
	CommandID string           `json:"command_id"`
	Host      string           `json:"host"`
	State     string           `json:"state"`   // pending | expired | claimed | running | succeeded | failed | rejected
	Summary   string           `json:"summary"` // in words
	Command   *command.Command `json:"command,omitempty"`
	Status    *command.Status  `json:"status,omitempty"` // the probe's latest <id>.status.json
	Result    *command.Result  `json:"result,omitempty"` // <id>.result.json, once done
	Heartbeat string           `json:"heartbeat,omitempty"`
}

// Status answers {"action":"status","host":...,"command_id":...}: the
// command, the probe's latest status and its result, or how long the
// command has waited to be picked up (with the age of the probe's
// heartbeat, so a dead probe shows).
func (h *Handler) Status(ctx context.Context, req Request) (*StatusResponse, error) {
	if err := h.checkHost(req.Host); err != nil {
		return nil, err
	}
	id := req.CommandID
	if id == "" {
		return nil, badInput("command_id: required (restore returned it)")
	}
	if err := command.ParseID(id); err != nil {
		return nil, badInput("command_id %q: not a command id like 20250301T051500Z-1a2b3c4d", id)
	}
	resp := &StatusResponse{CommandID: id, Host: req.Host}
	data, err := h.get(ctx, h.prefixed(command.Key(req.Host, id)))
	if errors.Is(err, errNotFound) {
		return nil, badInput("command %s: not found under s3://%s/%s (issued for another host?)", id, h.Bucket, h.prefixed(command.Prefix(req.Host)))
	}
	if err != nil {
		return nil, err
	}
	c, err := command.Decode(data)
	if err != nil {
		// Not the function's own writing (or a newer one's): show what the probe says anyway.
		resp.Summary = "the command object does not decode: " + err.Error() + ". "
	} else {
		resp.Command = &c
	}
	if resp.Status, err = getJSON[command.Status](ctx, h, h.prefixed(command.StatusKey(req.Host, id))); err != nil {
		return nil, err
	}
	if resp.Result, err = getJSON[command.Result](ctx, h, h.prefixed(command.ResultKey(req.Host, id))); err != nil {
		return nil, err
	}
	// Only what the probe signed is reported: a bucket writer could write
	// a status or result that says anything.
	key, err := h.commandKey(ctx)
	if err != nil {
		return nil, err
	}
	if resp.Status != nil {
		if err := command.VerifyStatus(*resp.Status, key); err != nil {
			resp.Summary += fmt.Sprintf("ignored s3://%s/%s: %v. ", h.Bucket, h.prefixed(command.StatusKey(req.Host, id)), err)
			resp.Status = nil
		}
	}
	if resp.Result != nil {
		if err := command.VerifyResult(*resp.Result, key); err != nil {
			resp.Summary += fmt.Sprintf("ignored s3://%s/%s: %v. ", h.Bucket, h.prefixed(command.ResultKey(req.Host, id)), err)
			resp.Result = nil
		}
	}
	now := h.now()
	switch {
	case resp.Result != nil:
		r := resp.Result
		resp.State = string(r.State)
		resp.Summary += fmt.Sprintf("%s: %s", r.State, r.Message)
		if r.Txn != "" {
			resp.Summary += fmt.Sprintf(" (transaction %s; `probe revert %s` on the host undoes it)", r.Txn, r.Txn)
		}
		if !r.FinishedAt.IsZero() {
			resp.Summary += fmt.Sprintf(". Finished %s, %s ago.", r.FinishedAt.UTC().Format(time.RFC3339), roundAge(now.Sub(r.FinishedAt)))
		}
	case resp.Status != nil:
		s := resp.Status
		resp.State = string(s.State)
		resp.Summary += fmt.Sprintf("%s: %s (as of %s, %s ago)", s.State, s.Message, s.At.UTC().Format(time.RFC3339), roundAge(now.Sub(s.At)))
		if s.State.Done() {
			break
		}
		resp.Summary += "; no result yet"
	default:
		claimed, err := h.exists(ctx, h.prefixed(command.ClaimKey(req.Host, id)))
		if err != nil {
			return nil, err
		}
		switch {
		case claimed:
			resp.State = string(command.StateClaimed)
			resp.Summary += "claimed by the probe; no status written yet"
		case resp.Command == nil:
			resp.State = statePending
			resp.Summary += "not picked up yet"
		case now.Before(c.ExpiresAt):
			resp.State = statePending
			resp.Summary += fmt.Sprintf("not picked up yet: issued %s ago, expires in %s (the probe polls every commands.poll, 15 s by default)",
				roundAge(now.Sub(c.IssuedAt)), roundAge(c.ExpiresAt.Sub(now)))
		default:
			resp.State = stateExpired
			resp.Summary += fmt.Sprintf("expired unrun: issued %s ago, no probe picked it up before %s; a probe refuses it now — issue a new one once the probe runs",
				roundAge(now.Sub(c.IssuedAt)), c.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if resp.Heartbeat, err = h.heartbeat(ctx, req.Host, now); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// getJSON reads and decodes a JSON object; nil when it does not exist. An
// object that does not decode is an error naming it.
func getJSON[T any](ctx context.Context, h *Handler, key string) (*T, error) {
	data, err := h.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode s3://%s/%s: %w", h.Bucket, key, err)
	}
	return v, nil
}

// exists reports whether key exists.
func (h *Handler) exists(ctx context.Context, key string) (bool, error) {
	_, err := h.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// heartbeat says how old the probe's <host>/heartbeat.json is.
func (h *Handler) heartbeat(ctx context.Context, host string, now time.Time) (string, error) {
	key := h.hostKey(host, "heartbeat.json")
	hb, err := getJSON[struct {
		At time.Time `json:"at"`
	}](ctx, h, key)
	switch {
	case err != nil:
		return "", err
	case hb == nil:
		return fmt.Sprintf("no s3://%s/%s: the probe has never written its heartbeat to the store", h.Bucket, key), nil
	}
	return fmt.Sprintf("the probe's last heartbeat: %s ago (%s)", roundAge(now.Sub(hb.At)), hb.At.UTC().Format(time.RFC3339)), nil
}
