package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"backstop/shared/command"
	"backstop/shared/manifest"
)

// Bounds of the free-text fields of a command.
const (
	maxReason      = 500
	maxRequestedBy = 200
)

// RestoreResponse answers {"action":"restore"}: the command written for
// the host's probe.
type RestoreResponse struct {
	CommandID string    `json:"command_id"`
	Host      string    `json:"host"`
	Snapshot  string    `json:"snapshot"` // the resolved id ("latest" is resolved here, not by the probe)
	Parts     []string  `json:"parts"`
	DryRun    bool      `json:"dry_run"`
	Plan      string    `json:"plan"` // in words
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Key       string    `json:"key"`  // where the command is: s3://bucket/<host>/commands/<id>.json
	Next      string    `json:"next"` // the status request to paste next
}

// Restore answers {"action":"restore",...}: it validates the request —
// known host, reason, parts among db/data/code, a snapshot (an id, or
// "latest": the newest restorable one) whose manifest is complete, whose
// parts are all in S3 with the manifest's sizes and, with RequireVault,
// that the vault catalog lists — then writes the command signed with the
// key from Secrets Manager to <host>/commands/<id>.json with
// If-None-Match: *, valid for TTL. Bad input is an inputError and writes
// nothing; so does an id that already exists (nothing is overwritten).
func (h *Handler) Restore(ctx context.Context, req Request) (*RestoreResponse, error) {
	if err := h.checkHost(req.Host); err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.Reason)
	switch {
	case reason == "":
		return nil, badInput("reason: required — say why; it goes into the probe's restore log, the result and the mails")
	case len(reason) > maxReason:
		return nil, badInput("reason: %d bytes, at most %d", len(reason), maxReason)
	}
	by := strings.TrimSpace(req.RequestedBy)
	switch {
	case by == "":
		by = "console"
	case len(by) > maxRequestedBy:
		return nil, badInput("requested_by: %d bytes, at most %d", len(by), maxRequestedBy)
	}
	for i, p := range req.Parts {
		if p != command.PartDB && p != command.PartData && p != command.PartCode {
			return nil, badInput("parts: unknown part %q (want db, data or code)", p)
		}
		if slices.Contains(req.Parts[:i], p) {
			return nil, badInput("parts: %q given twice", p)
		}
	}
	want := strings.TrimSpace(req.Snapshot)
	if want == "" {
		want = command.Latest
	}
	if want != command.Latest {
		if _, err := manifest.ParseID(want); err != nil {
			return nil, badInput("snapshot %q: neither \"latest\" nor a snapshot id like 20250301T020000Z-3fa2c1 (list shows them)", want)
		}
	}

	vault, err := h.vaultCatalog(ctx, req.Host)
	if err != nil {
		return nil, err
	}
	s, skipped, err := h.resolve(ctx, req.Host, want, vault)
	if err != nil {
		return nil, err
	}
	m := s.m
	have := parts(m)
	p := slices.Clone(req.Parts)
	if len(p) == 0 {
		p = have
	}
	for _, x := range p {
		if !slices.Contains(have, x) {
			return nil, badInput("snapshot %s has no %s part (it holds %s)", m.ID, x, strings.Join(have, ", "))
		}
	}
	if len(p) == 0 {
		return nil, badInput("snapshot %s holds nothing to restore (no database dump, data archive or app revision)", m.ID)
	}

	key, err := h.commandKey(ctx)
	if err != nil {
		return nil, err
	}
	now := h.now().Truncate(time.Second)
	c := command.Command{
		ID: command.NewID(now, h.Rand), Host: req.Host, Snapshot: m.ID, Parts: p,
		Reason: reason, RequestedBy: by, IssuedAt: now, ExpiresAt: now.Add(h.ttl()), DryRun: req.DryRun,
	}
	if err := command.Sign(&c, key); err != nil {
		return nil, err
	}
	data, err := command.Encode(c)
	if err != nil {
		return nil, err
	}
	objKey := h.prefixed(command.Key(c.Host, c.ID))
	if err := h.create(ctx, objKey, data); err != nil {
		if errors.Is(err, errExists) {
			return nil, badInput("command %s already exists at s3://%s/%s: nothing was overwritten and no new command was written; invoke again for a new id", c.ID, h.Bucket, objKey)
		}
		return nil, err
	}
	h.logger().Info("restore command written", "command_id", c.ID, "host", c.Host, "snapshot", c.Snapshot,
		"parts", strings.Join(c.Parts, ","), "dry_run", c.DryRun, "requested_by", c.RequestedBy, "reason", c.Reason,
		"expires_at", c.ExpiresAt)
	return &RestoreResponse{
		CommandID: c.ID, Host: c.Host, Snapshot: c.Snapshot, Parts: c.Parts, DryRun: c.DryRun,
		Plan:     h.plan(c, m, vault.has(m.ID), skipped),
		IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt,
		Key:  "s3://" + h.Bucket + "/" + objKey,
		Next: fmt.Sprintf(`{"action":"status","host":%q,"command_id":%q}`, c.Host, c.ID),
	}, nil
}

// resolve finds the snapshot to restore: want's, or for "latest" the
// newest restorable one (skipped says which newer ones were passed over,
// and why). A snapshot that is missing, incomplete or (with RequireVault)
// not vaulted is an inputError.
func (h *Handler) resolve(ctx context.Context, host, want string, vault *vaultCatalog) (*snapshot, []string, error) {
	onlyID := want
	if want == command.Latest {
		onlyID = ""
	}
	snaps, _, err := h.scan(ctx, host, onlyID)
	if err != nil {
		return nil, nil, err
	}
	where := fmt.Sprintf("s3://%s/%s", h.Bucket, h.hostKey(host, "snapshots/"))
	var skipped []string
	for _, s := range snaps {
		why := s.problem
		if why == "" && h.RequireVault && !vault.has(s.id) {
			why = "no vault copy yet (" + vault.describe() + "; the offsite function copies each snapshot after its manifest lands)"
		}
		if why == "" {
			return s, skipped, nil
		}
		if want != command.Latest {
			return nil, nil, badInput("snapshot %s: %s", s.id, why)
		}
		skipped = append(skipped, s.id+": "+why)
	}
	if want != command.Latest {
		return nil, nil, badInput("snapshot %s: not found under %s (list shows the snapshots)", want, where)
	}
	if len(skipped) == 0 {
		return nil, nil, badInput("no snapshots under %s", where)
	}
	return nil, nil, badInput("no restorable snapshot under %s: %s", where, strings.Join(skipped, "; "))
}

// plan says in words what the command will make the probe do.
func (h *Handler) plan(c command.Command, m *manifest.Manifest, vaulted bool, skipped []string) string {
	var b strings.Builder
	verb := "Restore"
	if c.DryRun {
		verb = "Dry run (nothing is changed): plan a restore of"
	}
	facts := []string{string(m.Trigger), "taken " + m.CreatedAt.UTC().Format(time.RFC3339)}
	if age := c.IssuedAt.Sub(m.CreatedAt); age > 0 {
		facts = append(facts, roundAge(age)+" before this command")
	}
	if m.Status == manifest.StatusVerified {
		facts = append(facts, "verified")
	} else {
		facts = append(facts, "not verified since the backup (the probe checks every checksum before it changes anything)")
	}
	if vaulted {
		facts = append(facts, "copied to the vault")
	}
	fmt.Fprintf(&b, "%s %s from snapshot %s (%s): ", verb, c.Host, m.ID, strings.Join(facts, ", "))
	var what []string
	for _, p := range c.Parts {
		switch p {
		case command.PartDB:
			d := m.DB
			s := fmt.Sprintf("the database %s (PostgreSQL %s, %d tables, %s compressed", d.Database, d.ServerVersion, len(d.Tables), humanBytes(d.Size))
			if d.Migration.Tool != "" && d.Migration.Tool != manifest.ToolNone {
				s += ", " + d.Migration.Tool + " revision " + d.Migration.Revision
			}
			what = append(what, s+")")
		case command.PartData:
			what = append(what, fmt.Sprintf("the data directory %s (%d entries, %s compressed)", m.Data.Path, m.Data.Entries, humanBytes(m.Data.Size)))
		case command.PartCode:
			var rev []string
			if m.App.Revision != "" {
				rev = append(rev, "revision "+m.App.Revision)
			}
			if m.App.Image != "" {
				rev = append(rev, "image "+m.App.Image)
			}
			what = append(what, "the code ("+strings.Join(rev, ", ")+")")
		}
	}
	b.WriteString(joinWords(what))
	b.WriteString(". ")
	if c.DryRun {
		b.WriteString("The probe resolves and verifies the snapshot and writes its plan to the result; it changes nothing. ")
	} else {
		b.WriteString("The probe verifies every checksum before it changes anything, keeps the current state beside the restored one, " +
			"and reverts everything if a step fails; afterwards `probe revert TXN` on the host undoes it. ")
	}
	fmt.Fprintf(&b, "Reason: %s (requested by %s). ", c.Reason, c.RequestedBy)
	fmt.Fprintf(&b, "The probe on %s picks the command up at its next poll (commands.poll, 15 s by default); "+
		"it expires unrun at %s.", c.Host, c.ExpiresAt.UTC().Format(time.RFC3339))
	if len(skipped) > 0 {
		fmt.Fprintf(&b, " Newer snapshots passed over: %s.", strings.Join(skipped, "; "))
	}
	return b.String()
}

// joinWords joins "a", "b", "c" as "a, b and c".
func joinWords(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// roundAge prints d for people: "45s", "12m", "3h20m", "2d4h".
func roundAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// prefixed puts key (relative to the store's root) under KeyPrefix.
func (h *Handler) prefixed(key string) string {
	if h.KeyPrefix == "" {
		return key
	}
	return h.KeyPrefix + "/" + key
}
