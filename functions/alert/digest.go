package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"backstop/functions/internal/s3err"
	"backstop/shared/alert"
)

// Storms.
//
// Each host has a window object alerts/digest/<sha256 of the host>.json,
// always rewritten with If-Match on the ETag read (If-None-Match: * when
// it does not exist yet; 412 means re-read and redo), so concurrent
// invocations never lose a count or a held event. It keeps the arrival
// times of the host's last K events (a sliding window of DigestWindow)
// and the events held for a digest.
//
// An event that arrives when K events already arrived within the window
// is held instead of mailed: it is appended to the window object and its
// claim says "held". Every invocation holding events then makes sure
// they are mailed: if no digest leader is active it becomes the leader
// (written into the window object, with a lease to its deadline),
// collects for DigestWait (so one burst becomes one mail), sends one
// digest of everything held, and removes those events; an invocation
// that is not the leader polls until its events are gone from the held
// list (they were mailed) or the leader's lease ends (it takes over).
// An event appended while a leader is finishing is seen by the leader's
// conditional write (it re-reads and keeps it) or, once the leader is
// gone, makes its own invocation the next leader: no held event waits for
// an invocation that will never come. A sustained storm therefore gives
// one digest per DigestWait rather than one mail per event; a retried
// invocation whose claim says "held" waits for the digest the same way.

// digestWindow is the JSON body of alerts/digest/<hash>.json.
type digestWindow struct {
	Host   string      `json:"host"`
	Recent []time.Time `json:"recent"` // arrival times of the last K events, oldest first
	Held   []heldEvent `json:"held"`
	Leader *leader     `json:"leader,omitempty"`
}

type heldEvent struct {
	Event  alert.Event `json:"event"`
	HeldAt time.Time   `json:"held_at"`
}

type leader struct {
	ID    string    `json:"id"`
	Until time.Time `json:"until"`
}

// heldItem is an event this invocation holds, with its claim.
type heldItem struct {
	ev  alert.Event
	ref *claimRef
}

func digestKey(host string) string {
	sum := sha256.Sum256([]byte(host))
	return "alerts/digest/" + hex.EncodeToString(sum[:16]) + ".json"
}

// readWindow reads a host's window; etag is "" when there is none yet.
func (h *Handler) readWindow(ctx context.Context, host string) (digestWindow, string, error) {
	w := digestWindow{Host: host}
	etag, err := h.getJSON(ctx, digestKey(host), &w)
	if s3err.IsNotFound(err) {
		return digestWindow{Host: host}, "", nil
	}
	if err != nil {
		return w, "", fmt.Errorf("read storm window s3://%s/%s: %w", h.Bucket, digestKey(host), err)
	}
	return w, etag, nil
}

// changeWindow applies edit to the host's window and writes it
// conditionally, redoing both on a lost race. edit returns false to
// write nothing.
func (h *Handler) changeWindow(ctx context.Context, host string, edit func(*digestWindow) bool) error {
	for {
		w, etag, err := h.readWindow(ctx, host)
		if err != nil {
			return err
		}
		if !edit(&w) {
			return nil
		}
		_, err = h.putJSON(ctx, digestKey(host), w, etag)
		if err == nil {
			return nil
		}
		if !s3err.IsPreconditionFailed(err) {
			return fmt.Errorf("write storm window s3://%s/%s: %w", h.Bucket, digestKey(host), err)
		}
	}
}

// classify counts ev in its host's window and says whether it is held
// for a digest. An event already held (a retry) stays held.
func (h *Handler) classify(ctx context.Context, ev alert.Event) (bool, error) {
	var hold bool
	err := h.changeWindow(ctx, ev.Host, func(w *digestWindow) bool {
		if slices.ContainsFunc(w.Held, func(x heldEvent) bool { return x.Event.DedupKey == ev.DedupKey }) {
			hold = true
			return false
		}
		now := time.Now().UTC()
		w.Recent = slices.DeleteFunc(w.Recent, func(t time.Time) bool { return now.Sub(t) >= h.DigestWindow })
		hold = len(w.Recent) >= h.DigestThreshold
		w.Recent = append(w.Recent, now)
		if over := len(w.Recent) - h.DigestThreshold; over > 0 {
			w.Recent = w.Recent[over:]
		}
		if hold {
			w.Held = append(w.Held, heldEvent{Event: ev, HeldAt: now})
		}
		return true
	})
	return hold, err
}

// awaitDigests makes sure every held item is mailed in a digest, leading
// one where no other invocation does, and marks their claims sent.
func (h *Handler) awaitDigests(ctx context.Context, items []heldItem, res *Result) []error {
	byHost := map[string][]heldItem{}
	var hosts []string
	for _, it := range items {
		if _, ok := byHost[it.ev.Host]; !ok {
			hosts = append(hosts, it.ev.Host)
		}
		byHost[it.ev.Host] = append(byHost[it.ev.Host], it)
	}
	var errs []error
	for _, host := range hosts {
		if err := h.awaitDigest(ctx, host, byHost[host], res); err != nil {
			errs = append(errs, fmt.Errorf("digest for %s: %w", host, err))
			continue
		}
		for _, it := range byHost[host] {
			h.markSent(ctx, it.ref, "digest")
		}
	}
	return errs
}

func (h *Handler) awaitDigest(ctx context.Context, host string, mine []heldItem, res *Result) error {
	id := rand.Text()
	var collectUntil time.Time // set while this invocation leads
	for {
		w, etag, err := h.readWindow(ctx, host)
		if err != nil {
			return err
		}
		pending := 0
		for _, it := range mine {
			if slices.ContainsFunc(w.Held, func(x heldEvent) bool { return x.Event.DedupKey == it.ev.DedupKey }) {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		now := time.Now()
		leading := w.Leader != nil && w.Leader.ID == id
		switch {
		case !leading && w.Leader != nil && w.Leader.Until.After(now):
			if dl, ok := ctx.Deadline(); ok && now.Add(pollEvery).After(dl) {
				return fmt.Errorf("%d held events not yet mailed by the digest leader (lease until %s)", pending, w.Leader.Until.UTC().Format(time.RFC3339))
			}
			if err := sleep(ctx, pollEvery); err != nil {
				return fmt.Errorf("waiting for the digest: %w", err)
			}
		case !leading:
			w.Leader = &leader{ID: id, Until: h.leaseUntil(ctx)}
			if _, err := h.putJSON(ctx, digestKey(host), w, etag); err != nil {
				if s3err.IsPreconditionFailed(err) {
					continue
				}
				return fmt.Errorf("lead the digest in s3://%s/%s: %w", h.Bucket, digestKey(host), err)
			}
			collectUntil = now.Add(h.DigestWait)
			if dl, ok := ctx.Deadline(); ok {
				// Leave time to send (and retry a 429) before the deadline.
				if last := dl.Add(-20 * time.Second); last.Before(collectUntil) {
					collectUntil = last
				}
			}
			h.logger().Info("leading a storm digest", "host", host, "collect_for", time.Until(collectUntil).Round(time.Millisecond).String())
		case now.Before(collectUntil):
			if err := sleep(ctx, collectUntil.Sub(now)); err != nil {
				return fmt.Errorf("collecting the digest: %w", err)
			}
		default:
			if err := h.flushDigest(ctx, host, id, w.Held, res); err != nil {
				return err
			}
		}
	}
}

// flushDigest mails held as one digest and removes them from the window,
// giving up the lead.
func (h *Handler) flushDigest(ctx context.Context, host, id string, held []heldEvent, res *Result) error {
	m := renderDigest(host, held, h.AlarmLocale, h.location())
	sendErr := h.send(ctx, m, nil) // a digest goes to the configured recipients
	if sendErr == nil {
		res.Digests++
		h.logger().Info("digest mailed", "host", host, "events", len(held), "subject", m.Subject)
	}
	err := h.changeWindow(context.WithoutCancel(ctx), host, func(w *digestWindow) bool {
		if sendErr == nil {
			w.Held = slices.DeleteFunc(w.Held, func(x heldEvent) bool {
				return slices.ContainsFunc(held, func(y heldEvent) bool { return y.Event.DedupKey == x.Event.DedupKey })
			})
		}
		if w.Leader != nil && w.Leader.ID == id {
			w.Leader = nil
		}
		return true
	})
	switch {
	case sendErr != nil:
		return fmt.Errorf("send digest of %d events: %w", len(held), sendErr)
	case err != nil:
		h.logger().Error("digest sent but the window could not record it; a later leader may send it again", "host", host, "error", err.Error())
		return err
	}
	return nil
}
