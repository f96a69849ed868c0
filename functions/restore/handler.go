package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// SecretReader reads the command HMAC key. *secretsmanager.Client
// satisfies it.
type SecretReader interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ SecretReader = (*secretsmanager.Client)(nil)

// DefaultTTL is how long a command stays valid for the probe to pick up.
const DefaultTTL = 15 * time.Minute

// Handler answers the operator's requests (see Request). Set the fields,
// then call Handle; it is safe for concurrent use and keeps the HMAC key
// cached across warm invocations.
type Handler struct {
	S3           ObjectStore
	Secrets      SecretReader
	Bucket       string
	KeyPrefix    string   // the probe's store.s3.prefix ("" = keys start with the host)
	Hosts        []string // hosts an operator may act on
	SecretID     string   // name or ARN of the command HMAC key
	RequireVault bool     // restore only snapshots the vault catalog lists

	TTL  time.Duration    // a command's validity (DefaultTTL when 0)
	Now  func() time.Time // time.Now when nil
	Rand io.Reader        // randomness of command ids (crypto/rand when nil)
	Log  *slog.Logger

	keyMu sync.Mutex
	key   []byte // cached HMAC key
}

// Request is one invocation's input, as pasted into the console's Test
// tab:
//
//	{"action":"list","host":"psyfit-prod"}
//	{"action":"restore","host":"psyfit-prod","snapshot":"latest","parts":["db","data","code"],"reason":"...","dry_run":false}
//	{"action":"status","host":"psyfit-prod","command_id":"..."}
type Request struct {
	Action      string   `json:"action"`
	Host        string   `json:"host"`
	Snapshot    string   `json:"snapshot,omitempty"`     // restore: an id or "latest" (the default)
	Parts       []string `json:"parts,omitempty"`        // restore: db, data, code; none = every part the snapshot holds
	Reason      string   `json:"reason,omitempty"`       // restore: required, goes into the probe's log and mails
	RequestedBy string   `json:"requested_by,omitempty"` // restore: who asks (default "console")
	DryRun      bool     `json:"dry_run,omitempty"`      // restore: the probe only checks and reports its plan
	CommandID   string   `json:"command_id,omitempty"`   // status
}

// ErrorResponse is the answer to bad input: nothing was written. Failures
// of S3 or Secrets Manager are function errors instead, so the function's
// Errors alarm sees them.
type ErrorResponse struct {
	Error string `json:"error"`
}

// inputError is a problem with the request, answered as an ErrorResponse.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// Handle decodes payload and runs its action: List, Restore or Status.
// Bad input comes back as an ErrorResponse (with a nil error) and writes
// nothing; an error is returned only when S3 or Secrets Manager failed.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	req, err := decodeRequest(payload)
	var resp any
	if err == nil {
		switch req.Action {
		case "list":
			resp, err = h.List(ctx, req)
		case "restore":
			resp, err = h.Restore(ctx, req)
		case "status":
			resp, err = h.Status(ctx, req)
		default:
			err = badInput("unknown action %q: want list, restore or status", req.Action)
		}
	}
	var ie *inputError
	switch {
	case errors.As(err, &ie):
		h.logger().Info("request refused", "action", req.Action, "host", req.Host, "reason", ie.msg)
		return ErrorResponse{Error: ie.msg}, nil
	case err != nil:
		h.logger().Error("request failed", "action", req.Action, "host", req.Host, "err", err)
		return nil, fmt.Errorf("%s %s: %w", req.Action, req.Host, err)
	}
	return resp, nil
}

// decodeRequest reads one Request; unknown fields are refused (a typo like
// "dryrun" must not silently run a real restore).
func decodeRequest(payload []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, badInput("the input is not a request %s: %v", `{"action":"list|restore|status","host":"..."}`, err)
	}
	if dec.More() {
		return req, badInput("the input holds more than one JSON value")
	}
	req.Action = strings.TrimSpace(req.Action)
	req.Host = strings.TrimSpace(req.Host)
	return req, nil
}

// checkHost refuses a host that is not in Hosts.
func (h *Handler) checkHost(host string) error {
	switch {
	case host == "":
		return badInput("host: required (one of %s)", strings.Join(h.Hosts, ", "))
	case !slices.Contains(h.Hosts, host):
		return badInput("host %q: unknown (this function serves %s; HOSTS)", host, strings.Join(h.Hosts, ", "))
	}
	return nil
}

// hostKey returns the object key of rel under host's prefix.
func (h *Handler) hostKey(host, rel string) string { return h.prefixed(host + "/" + rel) }

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now().UTC()
	}
	return h.Now().UTC()
}

func (h *Handler) ttl() time.Duration {
	if h.TTL <= 0 {
		return DefaultTTL
	}
	return h.TTL
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}
