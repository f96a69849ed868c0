package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/alert"
	"backstop/shared/mail"
)

// ObjectStore is the part of the S3 API the handler uses: event objects,
// claims (alerts/sent/) and storm windows (alerts/digest/). *s3.Client
// satisfies it.
type ObjectStore interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// SecretReader reads the SendGrid API key. *secretsmanager.Client
// satisfies it.
type SecretReader interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var (
	_ ObjectStore  = (*s3.Client)(nil)
	_ SecretReader = (*secretsmanager.Client)(nil)
)

// Handler turns alert inputs (S3 notifications for event objects, one
// direct alert.Event, SNS messages with CloudWatch alarms) into e-mails
// sent through SendGrid, each at most once per dedup_key (see claim.go)
// and folded into a digest during a storm (see digest.go). Set the fields,
// then call Handle; it is safe for concurrent use and keeps the API key
// cached across invocations.
type Handler struct {
	S3       ObjectStore
	Secrets  SecretReader
	Bucket   string // holds alerts/sent/ and alerts/digest/
	SecretID string // name or ARN of the SendGrid API key

	// Mail carries From, To, Endpoint, HTTPClient, MaxAttempts and
	// Backoff; its APIKey is ignored (the key comes from SecretID).
	Mail mail.SendGrid

	DigestThreshold int           // K: the (K+1)th event within DigestWindow is held for a digest; 0 turns digests off
	DigestWindow    time.Duration // sliding window per host
	DigestWait      time.Duration // how long a digest collects held events before it is sent

	AlarmLocale string         // locale of CloudWatch alarm mails and of digests without one (en)
	Location    *time.Location // time zone of alarm and digest mails (UTC)
	Lease       time.Duration  // claim lease when ctx has no deadline (5m)
	Log         *slog.Logger

	keyMu sync.Mutex
	key   string // cached SendGrid API key
}

// Result says what one invocation did; it is the function's response.
type Result struct {
	Sent       int `json:"sent"`       // events mailed on their own
	Duplicates int `json:"duplicates"` // already sent (or being sent) by an earlier delivery
	Held       int `json:"held"`       // folded into a digest
	Digests    int `json:"digests"`    // digest mails this invocation sent
	Ignored    int `json:"ignored"`    // records that are not alert events
	Missing    int `json:"missing"`    // event objects that no longer exist
}

// item is one alert event to deliver and where it came from.
type item struct {
	origin string // s3://bucket/key, sns:<message id>, direct
	ev     alert.Event
}

// Handle delivers every alert event in payload. Records are handled one
// by one: a bad record (unreadable JSON, an event missing required
// fields) does not stop the others, which are claimed and sent. Handle
// returns an error when any record failed — transiently (S3, Secrets
// Manager or SendGrid unreachable, 429/5xx after the retries the deadline
// allows) or permanently (a malformed event, a key SendGrid rejects even
// after re-reading the secret) — so that Lambda's retries, the on-failure
// destination and the Errors alarm see it. Retried invocations are safe:
// the claims make every event that was sent a duplicate.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (Result, error) {
	var res Result
	items, errs := h.collect(ctx, payload, &res)
	var held []heldItem
	for _, it := range items {
		hi, err := h.deliver(ctx, it, &res)
		if err != nil {
			errs = append(errs, err)
		}
		if hi != nil {
			held = append(held, *hi)
		}
	}
	if len(held) > 0 {
		errs = append(errs, h.awaitDigests(ctx, held, &res)...)
	}
	h.logger().Info("alert invocation done", "sent", res.Sent, "duplicates", res.Duplicates, "held", res.Held,
		"digests", res.Digests, "ignored", res.Ignored, "missing", res.Missing, "errors", len(errs))
	if len(errs) > 0 {
		return res, fmt.Errorf("alert: %d failed: %w", len(errs), errors.Join(errs...))
	}
	return res, nil
}

// deliver claims one event and sends it, or holds it for a digest
// (returned for awaitDigests).
func (h *Handler) deliver(ctx context.Context, it item, res *Result) (*heldItem, error) {
	ev := it.ev
	ref, state, err := h.acquire(ctx, ev, it.origin)
	if err != nil {
		return nil, fmt.Errorf("event %s (%s): %w", ev.DedupKey, it.origin, err)
	}
	switch state {
	case claimDone:
		res.Duplicates++
		h.logger().Info("duplicate event skipped", "dedup_key", ev.DedupKey, "origin", it.origin)
		return nil, nil
	case claimHeld:
		res.Held++
		return &heldItem{ev: ev, ref: ref}, nil
	}
	if h.DigestThreshold > 0 {
		hold, err := h.classify(ctx, ev)
		if err != nil {
			h.release(ctx, ref, err)
			return nil, fmt.Errorf("event %s (%s): %w", ev.DedupKey, it.origin, err)
		}
		if hold {
			if err := h.markHeld(ctx, ref); err != nil {
				// The digest window holds the event; a retry finds it there.
				return nil, fmt.Errorf("event %s (%s): %w", ev.DedupKey, it.origin, err)
			}
			res.Held++
			h.logger().Info("event held for a digest", "dedup_key", ev.DedupKey, "host", ev.Host)
			return &heldItem{ev: ev, ref: ref}, nil
		}
	}
	m := mail.Render(ev)
	if err := h.send(ctx, m, it.ev.To); err != nil {
		h.release(ctx, ref, err)
		return nil, fmt.Errorf("event %s (%s): %w", ev.DedupKey, it.origin, err)
	}
	res.Sent++
	h.logger().Info("alert mailed", "dedup_key", ev.DedupKey, "subject", m.Subject, "origin", it.origin)
	h.markSent(ctx, ref, "")
	return nil, nil
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Handler) location() *time.Location {
	if h.Location == nil {
		return time.UTC
	}
	return h.Location
}
