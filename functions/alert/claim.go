package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
	"backstop/shared/alert"
)

// Exactly once, as far as S3 and SendGrid allow.
//
// Before an event is mailed, the handler claims alerts/sent/<sha256 of the
// dedup_key>.json with PutObject If-None-Match: *. Only the invocation
// whose write succeeds sends; the claim says "sending" and carries a lease
// that ends at the invocation's own deadline (+ leaseSkew), when Lambda has
// stopped it for certain. After SendGrid's 202 the claim becomes "sent"
// (If-Match on the ETag the claim was written with). A failed send marks
// it "failed" at once. Later deliveries of the same event (a duplicate S3
// notification, Lambda's retry of the invocation) find the claim and:
//   - "sent": skip, a duplicate;
//   - "failed", or "sending" past its lease: take it over (If-Match on its
//     ETag, so of two retries only one wins) and send;
//   - "sending" within its lease: poll it until it is sent (skip) or its
//     lease ends (take over); if the lease outlasts this invocation's own
//     deadline, fail transiently, for a later retry to decide;
//   - "held": the event went into a storm digest; wait for the digest.
//
// The window left: SendGrid has no idempotency key. If an invocation dies
// (or S3 refuses the "sent" write) after SendGrid accepted the mail but
// before the claim says "sent", a retry after the lease sends it again —
// at most once more per lease, and never while the first can still be
// running. The mailer's own retry after a lost reply has the same window.
// Claims are small; a lifecycle rule on alerts/ may expire them after the
// longest incident a dedup key can recur in (30 days is ample).

// Claim statuses.
const (
	statusSending = "sending"
	statusHeld    = "held"
	statusSent    = "sent"
	statusFailed  = "failed"
)

// leaseSkew covers clock skew between invocations and S3.
const leaseSkew = 30 * time.Second

// claim is the JSON body of alerts/sent/<hash>.json.
type claim struct {
	DedupKey   string    `json:"dedup_key"`
	Status     string    `json:"status"`
	Origin     string    `json:"origin,omitempty"`
	Attempt    int       `json:"attempt"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
	Via        string    `json:"via,omitempty"`   // "digest" when sent in one
	Error      string    `json:"error,omitempty"` // why the last send failed
}

// claimRef is a claim this invocation owns: the object's key and the
// ETag of its last write, for If-Match.
type claimRef struct {
	key, etag string
	c         claim
}

type claimState int

const (
	claimOwned claimState = iota // send it
	claimDone                    // already sent: a duplicate
	claimHeld                    // in a digest: wait for it (ref owned)
)

func claimKey(dedupKey string) string {
	sum := sha256.Sum256([]byte(dedupKey))
	return "alerts/sent/" + hex.EncodeToString(sum[:]) + ".json"
}

// leaseUntil is when a claim written now stops protecting its writer.
func (h *Handler) leaseUntil(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl.Add(leaseSkew)
	}
	lease := h.Lease
	if lease <= 0 {
		lease = 5 * time.Minute
	}
	return time.Now().Add(lease)
}

// pollEvery is how often a claim or digest held by another invocation is
// read again.
const pollEvery = 500 * time.Millisecond

// acquire claims ev for this invocation (see the comment at the top).
func (h *Handler) acquire(ctx context.Context, ev alert.Event, origin string) (*claimRef, claimState, error) {
	key := claimKey(ev.DedupKey)
	c := claim{DedupKey: ev.DedupKey, Status: statusSending, Origin: origin, Attempt: 1, LeaseUntil: h.leaseUntil(ctx), UpdatedAt: time.Now().UTC()}
	etag, err := h.putJSON(ctx, key, c, "")
	if err == nil {
		return &claimRef{key: key, etag: etag, c: c}, claimOwned, nil
	}
	if !s3err.IsPreconditionFailed(err) {
		return nil, 0, fmt.Errorf("claim s3://%s/%s: %w", h.Bucket, key, err)
	}
	for {
		var cur claim
		curTag, err := h.getJSON(ctx, key, &cur)
		switch {
		case s3err.IsNotFound(err): // expired meanwhile: claim afresh
			if etag, err := h.putJSON(ctx, key, c, ""); err == nil {
				return &claimRef{key: key, etag: etag, c: c}, claimOwned, nil
			} else if !s3err.IsPreconditionFailed(err) {
				return nil, 0, fmt.Errorf("claim s3://%s/%s: %w", h.Bucket, key, err)
			}
			continue
		case err != nil:
			return nil, 0, fmt.Errorf("read claim s3://%s/%s: %w", h.Bucket, key, err)
		}
		now := time.Now()
		switch {
		case cur.Status == statusSent:
			return nil, claimDone, nil
		case cur.Status == statusHeld:
			return &claimRef{key: key, etag: curTag, c: cur}, claimHeld, nil
		case cur.Status == statusSending && cur.LeaseUntil.After(now):
			if dl, ok := ctx.Deadline(); ok && cur.LeaseUntil.After(dl) {
				return nil, 0, fmt.Errorf("claim s3://%s/%s: another invocation is sending it (lease until %s, after this invocation's deadline)",
					h.Bucket, key, cur.LeaseUntil.UTC().Format(time.RFC3339))
			}
			if err := sleep(ctx, min(pollEvery, cur.LeaseUntil.Sub(now))); err != nil {
				return nil, 0, fmt.Errorf("claim s3://%s/%s: waiting for another invocation: %w", h.Bucket, key, err)
			}
			continue
		}
		// failed, or sending past its lease: take it over.
		next := c
		next.Attempt = cur.Attempt + 1
		etag, err := h.putJSON(ctx, key, next, curTag)
		if err == nil {
			h.logger().Info("claim taken over", "dedup_key", ev.DedupKey, "was", cur.Status, "attempt", next.Attempt)
			return &claimRef{key: key, etag: etag, c: next}, claimOwned, nil
		}
		if !s3err.IsPreconditionFailed(err) {
			return nil, 0, fmt.Errorf("take over claim s3://%s/%s: %w", h.Bucket, key, err)
		}
	}
}

// update rewrites an owned claim with If-Match, keeping the new ETag.
func (h *Handler) update(ctx context.Context, ref *claimRef, edit func(*claim)) error {
	next := ref.c
	edit(&next)
	next.UpdatedAt = time.Now().UTC()
	etag, err := h.putJSON(ctx, ref.key, next, ref.etag)
	if err != nil {
		return fmt.Errorf("update claim s3://%s/%s to %s: %w", h.Bucket, ref.key, next.Status, err)
	}
	ref.etag, ref.c = etag, next
	return nil
}

// markSent records a sent mail. A failure is logged, not returned: the
// mail is out, and failing the invocation would make a retry more likely
// to send it again once the lease ends.
func (h *Handler) markSent(ctx context.Context, ref *claimRef, via string) {
	err := h.update(context.WithoutCancel(ctx), ref, func(c *claim) {
		c.Status, c.Via, c.LeaseUntil, c.Error = statusSent, via, time.Time{}, ""
	})
	if err != nil {
		h.logger().Error("mail sent but its claim could not be marked sent; a retry after the lease may send it again",
			"dedup_key", ref.c.DedupKey, "error", err.Error())
	}
}

// markHeld hands the event to a digest.
func (h *Handler) markHeld(ctx context.Context, ref *claimRef) error {
	return h.update(ctx, ref, func(c *claim) { c.Status = statusHeld })
}

// release marks a failed send so that a retry takes over at once; when
// that write fails too, the lease ends the claim later.
func (h *Handler) release(ctx context.Context, ref *claimRef, cause error) {
	err := h.update(context.WithoutCancel(ctx), ref, func(c *claim) {
		c.Status, c.LeaseUntil, c.Error = statusFailed, time.Time{}, cause.Error()
	})
	if err != nil {
		h.logger().Warn("could not release a claim; a retry takes it over after its lease", "dedup_key", ref.c.DedupKey, "error", err.Error())
	}
}

// putJSON writes v to key: with If-None-Match: * when ifMatch is empty,
// else with If-Match: ifMatch. It returns the new ETag.
func (h *Handler) putJSON(ctx context.Context, key string, v any, ifMatch string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:      aws.String(h.Bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := h.S3.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// getJSON reads key into v and returns its ETag.
func (h *Handler) getJSON(ctx context.Context, key string, v any) (string, error) {
	out, err := h.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("read s3://%s/%s: %w", h.Bucket, key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("decode s3://%s/%s: %w", h.Bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
