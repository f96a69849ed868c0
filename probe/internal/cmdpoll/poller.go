package cmdpoll

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"backstop/probe/internal/restore"
	"backstop/shared/alert"
	"backstop/shared/command"
	"backstop/shared/store"
)

// Poller finds the restore commands under <Host>/commands/ in Store and
// runs each valid one exactly once on this host.
//
// Guarantees: a command runs only after its signature (constant time), host,
// expiry, parts and id have been verified; only after this probe won the
// conditional write of <id>.claim (a second probe, or a second Poll, skips
// it); and never twice on this host: the ledger at LedgerPath records each
// id before its claim is attempted, so deleting the claim object (or
// re-uploading the command) cannot make it run again. A command that fails
// any check is never run: it is logged, alerted once with the reason, given
// a rejected <id>.status.json and recorded in the ledger, so later polls
// stay quiet about it.
//
// Cancelling ctx stops Poll between commands; a Run in progress gets ctx
// and decides itself (the restore engine reverts). A Poller is safe for
// concurrent use; Polls are serialised.
type Poller struct {
	Store store.Store
	Host  string
	Key   []byte // the HMAC key (command.LoadKey of commands.hmac_key_file)
	// TTL is the longest lifetime (expires_at - issued_at) accepted;
	// 0: command.TTL (15 min). A longer-lived command is rejected.
	TTL        time.Duration
	LedgerPath string // the local ledger of seen command ids, e.g. <state_dir>/command-ledger.json
	// Run executes a verified, claimed command: the restore engine.
	Run   func(ctx context.Context, c command.Command) (restore.Result, error)
	Alert func(alert.Event) // nil: no events
	Log   *slog.Logger      // nil: no logs
	Now   func() time.Time  // nil: time.Now
	// JunkEvery limits alerts about rejected command objects: all those
	// of a poll round make one alert, and at most one such alert is raised
	// per JunkEvery (the counts carry over). 0: DefaultJunkEvery; < 0: no limit.
	JunkEvery time.Duration

	mu   sync.Mutex
	junk junk
}

// claim is the content of <id>.claim: who took the command.
type claim struct {
	Host string    `json:"host"`
	PID  int       `json:"pid"`
	Run  string    `json:"run"` // random per claim; the ledger keeps it, so a claim this probe did not write shows
	At   time.Time `json:"at"`
}

// Poll looks at every command object under <Host>/commands/ once, oldest
// id first, and returns how many it acted on (ran or rejected). Commands
// already decided (claimed by anyone, or in the ledger) are skipped
// silently. The error reports what Poll could not do (list, read, write,
// the ledger); a command whose restore failed is not an error of Poll —
// its status and result say so. A corrupt ledger stops Poll before any
// command is looked at.
func (p *Poller) Poll(ctx context.Context) (handled int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	led, err := loadLedger(p.LedgerPath)
	if err != nil {
		return 0, err
	}
	led.prune(p.now().Add(-(command.MaxLifetime + command.ClockSkew)))
	prefix := command.Prefix(p.Host)
	objs, err := p.Store.List(ctx, prefix)
	if err != nil {
		return 0, fmt.Errorf("list commands %s in %s: %w", prefix, p.Store, err)
	}
	claims := map[string]bool{}
	for _, o := range objs {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, prefix), command.SuffixClaim); ok {
			claims[id] = true
		}
	}
	var errs []error
	for _, o := range objs {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		id, ok := command.CommandID(p.Host, o.Key)
		if !ok {
			continue
		}
		acted, err := p.handle(ctx, led, id, o, claims[id])
		if acted {
			handled++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("command %s: %w", id, err))
		}
	}
	every := p.JunkEvery
	if every == 0 {
		every = DefaultJunkEvery
	}
	if ev, ok := p.junk.flush(p.now(), every); ok {
		p.raise(ev)
	}
	return handled, errors.Join(errs...)
}

// handle decides one command object.
func (p *Poller) handle(ctx context.Context, led *ledger, id string, o store.Object, claimed bool) (bool, error) {
	if e := led.Commands[id]; e != nil {
		switch {
		case e.State == seenRejected || e.State == seenForeign || e.Replayed:
			return false, nil
		case e.State == seenClaiming && claimed:
			// The claim landed but this probe stopped before recording it,
			// or someone else wrote it: either way it never ran here.
			if c, err := p.readClaim(ctx, id); err != nil || c.Host != p.Host || c.Run != e.Run {
				return p.foreignClaim(ctx, led, id)
			}
			p.logger().Warn("command claimed but not run here; skipped", "id", id)
			e.State, e.At = seenLost, p.now().UTC()
			return false, led.save(p.LedgerPath)
		case e.State == seenClaiming:
			// never claimed: decide it afresh below
		case claimed:
			return false, nil // done, as recorded
		default:
			// Seen and claimed before, and now its claim is gone while
			// the command is (again) there: a replay.
			why := fmt.Sprintf("replayed: command id %s was already %s by this probe at %s; it never runs twice",
				id, e.State, e.At.Format(time.RFC3339))
			var c *command.Command
			if data, err := p.read(ctx, o); err == nil {
				if d, err := command.Decode(data); err == nil {
					c = &d
				}
			}
			e.Replayed = true
			return true, p.reject(ctx, led, id, c, command.ReasonReplayed, why, false)
		}
	} else if claimed {
		// A listing may still show a claim just deleted: only one that
		// is there is someone else's.
		if _, err := p.readClaim(ctx, id); !errors.Is(err, store.ErrNotFound) {
			return p.foreignClaim(ctx, led, id)
		}
	}

	if o.Size > command.MaxSize {
		return true, p.reject(ctx, led, id, nil, command.ReasonMalformed,
			fmt.Sprintf("malformed: %d bytes, more than the %d allowed", o.Size, command.MaxSize), true)
	}
	data, err := p.read(ctx, o)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // withdrawn since the listing
	}
	if err != nil {
		return false, err
	}
	c, err := command.Decode(data)
	if err != nil {
		return true, p.reject(ctx, led, id, nil, command.ReasonMalformed, err.Error(), true)
	}
	if err := command.Verify(c, p.Key, p.Host, p.now()); err != nil {
		reason := command.ReasonOf(err)
		if reason == "" {
			return false, err // our configuration (the key), not the command
		}
		return true, p.reject(ctx, led, id, &c, reason, err.Error(), true)
	}
	if life, ttl := c.ExpiresAt.Sub(c.IssuedAt), p.ttl(); life > ttl {
		return true, p.reject(ctx, led, id, &c, command.ReasonExpired,
			fmt.Sprintf("expired: lifetime %s (issued_at to expires_at) exceeds commands.ttl %s", life, ttl), true)
	}
	if c.ID != id {
		return true, p.reject(ctx, led, id, &c, command.ReasonMalformed,
			fmt.Sprintf("malformed: the command's id %s differs from its object key %s", c.ID, o.Key), true)
	}
	switch _, err := p.Store.Stat(ctx, command.LedgerKey(p.Host, id)); {
	case err == nil:
		return true, p.reject(ctx, led, id, &c, command.ReasonReplayed, storeReplay(p.Host, id), true)
	case !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("read store ledger %s: %w", command.LedgerKey(p.Host, id), err)
	}
	return p.claimAndRun(ctx, led, c)
}

func storeReplay(host, id string) string {
	return fmt.Sprintf("replayed: command id %s is in the store's ledger %s: this host already ran it (the local ledger was lost?); it never runs twice",
		id, command.LedgerKey(host, id))
}

// claimAndRun records the id, claims it with a conditional write and, when
// this probe won, runs it with status and result objects and events.
func (p *Poller) claimAndRun(ctx context.Context, led *ledger, c command.Command) (bool, error) {
	log := p.logger().With("id", c.ID)
	run := newRun()
	led.Commands[c.ID] = &entry{State: seenClaiming, At: p.now().UTC(), Run: run}
	if err := led.save(p.LedgerPath); err != nil {
		return false, err
	}
	body, _ := json.Marshal(claim{Host: p.Host, PID: os.Getpid(), Run: run, At: p.now().UTC()})
	_, err := p.Store.Put(ctx, command.ClaimKey(p.Host, c.ID), bytes.NewReader(body),
		store.PutOptions{IfNoneMatch: true, Size: int64(len(body)), ContentType: "application/json"})
	switch {
	case errors.Is(err, store.ErrExists):
		// Someone wrote the claim between the listing and now.
		return p.foreignClaim(ctx, led, c.ID)
	case err != nil:
		delete(led.Commands, c.ID) // not claimed: the next poll tries again
		return false, errors.Join(fmt.Errorf("claim: %w", err), led.save(p.LedgerPath))
	}
	led.Commands[c.ID] = &entry{State: seenClaimed, At: p.now().UTC(), Run: run}
	err = led.save(p.LedgerPath)
	if err == nil {
		err = p.recordInStore(ctx, c.ID, body)
	}
	if errors.Is(err, store.ErrExists) {
		return true, p.reject(ctx, led, c.ID, &c, command.ReasonReplayed, storeReplay(p.Host, c.ID), true)
	}
	if err != nil {
		// Claimed, but without the record a deleted claim could let it run
		// again: do not run it.
		p.writeStatus(ctx, command.Status{ID: c.ID, State: command.StateFailed, Step: "claimed", Snapshot: c.Snapshot,
			DryRun: c.DryRun, Message: "not run: the probe could not record it in its ledger: " + err.Error()})
		return true, err
	}

	log.Warn("restore command accepted", "command", c.String())
	p.writeStatus(ctx, command.Status{ID: c.ID, State: command.StateClaimed, Step: "claimed", Snapshot: c.Snapshot,
		DryRun: c.DryRun, Message: "claimed: " + c.String()})
	p.raise(alert.Event{Check: "command", State: alert.Info, IncidentID: c.ID,
		Summary:  fmt.Sprintf("restore command %s started (%s of snapshot %s%s)", c.ID, strings.Join(c.Parts, ","), c.Snapshot, dryText(c.DryRun)),
		Detail:   c.String(),
		DedupKey: p.dedup(c.ID, "start")})
	p.writeStatus(ctx, command.Status{ID: c.ID, State: command.StateRunning, Step: "restore", Snapshot: c.Snapshot,
		DryRun: c.DryRun, Message: "running: " + c.String()})

	started := p.now().UTC()
	res, runErr := p.Run(ctx, c)
	out := command.Result{
		ID: c.ID, Host: p.Host, State: command.StateSucceeded, Snapshot: res.Snapshot, Parts: c.Parts,
		DryRun: c.DryRun, Reason: c.Reason, RequestedBy: c.RequestedBy, Txn: res.Txn, PreSnapshot: res.PreSnapshot,
		Plan: res.Plan, Reverted: res.Reverted, UnavailableMS: res.UnavailableMS,
		StartedAt: started, FinishedAt: p.now().UTC(), DurationMS: res.DurationMS,
	}
	if out.Plan == nil {
		out.Plan = []string{}
	}
	out.Steps = []command.Step{}
	for _, s := range res.Steps {
		out.Steps = append(out.Steps, command.Step{Step: s.Step, Status: s.Status, DurationMS: s.DurationMS, Detail: s.Detail})
	}
	state := alert.Info
	switch {
	case runErr != nil:
		out.State, state = command.StateFailed, alert.Warn
		out.Message = "restore failed: " + runErr.Error()
		log.Error("restore command failed", "txn", res.Txn, "err", runErr)
	case c.DryRun:
		out.Message = fmt.Sprintf("dry run: snapshot %s verified, nothing changed; the restore would do: %s",
			res.Snapshot, strings.Join(res.Plan, "; "))
		log.Info("restore command done (dry run)", "snapshot", res.Snapshot)
	default:
		out.Message = fmt.Sprintf("restore %s of snapshot %s done; undo with: probe revert %s", res.Txn, res.Snapshot, res.Txn)
		log.Info("restore command done", "txn", res.Txn, "snapshot", res.Snapshot)
	}

	var errs []error
	if err := command.SignResult(&out, p.Key); err != nil {
		errs = append(errs, err)
	} else if b, err := json.MarshalIndent(out, "", "  "); err != nil {
		errs = append(errs, fmt.Errorf("encode result: %w", err))
	} else if err := p.put(context.WithoutCancel(ctx), command.ResultKey(p.Host, c.ID), append(b, '\n')); err != nil {
		errs = append(errs, err)
	}
	p.writeStatus(context.WithoutCancel(ctx), command.Status{ID: c.ID, State: out.State, Step: "done", Snapshot: res.Snapshot,
		Txn: res.Txn, DryRun: c.DryRun, Message: out.Message})
	p.raise(alert.Event{Check: "command", State: state, IncidentID: c.ID,
		Summary:  fmt.Sprintf("restore command %s %s", c.ID, out.State),
		Detail:   out.Message + "\n" + c.String(),
		DedupKey: p.dedup(c.ID, string(out.State))})
	return true, errors.Join(errs...)
}

// reject refuses a command: log, rejected status, ledger, and an event
// gathered into the round's one rejection alert (junk).
// c is the decoded command when there is one. newEntry records a fresh
// ledger entry (a replay keeps the entry of the run it replays).
func (p *Poller) reject(ctx context.Context, led *ledger, id string, c *command.Command, reason, why string, newEntry bool) error {
	attrs := []any{"id", id, "reason", reason, "why", why}
	detail := why
	st := command.Status{ID: id, State: command.StateRejected, Step: "verify", Reason: reason, Message: "rejected, not run: " + why}
	if c != nil {
		attrs = append(attrs, "command", c.String())
		detail += "\nthe command asked for: " + c.String()
		st.Snapshot, st.DryRun = c.Snapshot, c.DryRun
	}
	p.logger().Warn("restore command rejected", attrs...)
	p.writeStatus(ctx, st)
	p.junk.add(alert.Event{Check: "command", State: alert.Warn, IncidentID: id,
		Summary:  fmt.Sprintf("restore command %s rejected (%s), not run", id, reason),
		Detail:   detail,
		DedupKey: p.dedup(id, "rejected-"+reason)}, reason)
	if newEntry {
		led.Commands[id] = &entry{State: seenRejected, At: p.now().UTC(), Reason: reason}
	}
	return led.save(p.LedgerPath)
}

// recordInStore writes the store's ledger entry of id once (If-None-Match):
// store.ErrExists means this host ran id before.
func (p *Poller) recordInStore(ctx context.Context, id string, body []byte) error {
	key := command.LedgerKey(p.Host, id)
	_, err := p.Store.Put(ctx, key, bytes.NewReader(body),
		store.PutOptions{IfNoneMatch: true, Size: int64(len(body)), ContentType: "application/json"})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("write store ledger %s: %w", key, err)
	}
	return err
}

func (p *Poller) ttl() time.Duration {
	if p.TTL > 0 {
		return p.TTL
	}
	return command.TTL
}

// foreignClaim handles a claim this probe did not write: with one probe
// per host, that is a bucket writer silencing a genuine command. The
// command is not run (the claim cannot tell a forger from a second probe),
// but it is logged and alerted once, and recorded in the ledger so later
// polls stay quiet about it.
func (p *Poller) foreignClaim(ctx context.Context, led *ledger, id string) (bool, error) {
	who := "unreadable"
	if c, err := p.readClaim(ctx, id); err == nil {
		who = fmt.Sprintf("host %q pid %d run %q at %s", c.Host, c.PID, c.Run, c.At.UTC().Format(time.RFC3339))
	}
	key := command.ClaimKey(p.Host, id)
	p.logger().Warn("restore command claimed by a claim this probe did not write; not run", "id", id, "claim", key, "claimed_by", who)
	p.raise(alert.Event{Check: "command", State: alert.Warn, IncidentID: id,
		Summary: fmt.Sprintf("restore command %s was claimed by someone else (%s); not run", id, key),
		Detail: fmt.Sprintf("the claim says: %s. This probe did not write it. If no other probe serves host %s, "+
			"someone with write access to the bucket is blocking the command: check the bucket's access log, then issue a new command.", who, p.Host),
		DedupKey: p.dedup(id, "foreign-claim")})
	led.Commands[id] = &entry{State: seenForeign, At: p.now().UTC()}
	return true, led.save(p.LedgerPath)
}

// readClaim reads and decodes <id>.claim.
func (p *Poller) readClaim(ctx context.Context, id string) (claim, error) {
	var c claim
	data, err := p.read(ctx, store.Object{Key: command.ClaimKey(p.Host, id)})
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("decode %s: %w", command.ClaimKey(p.Host, id), err)
	}
	return c, nil
}

// newRun is a random run id for a claim.
func newRun() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// read returns the command object, refusing more than command.MaxSize bytes.
func (p *Poller) read(ctx context.Context, o store.Object) ([]byte, error) {
	rc, _, err := p.Store.Get(ctx, o.Key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.Key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, command.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.Key, err)
	}
	return data, nil // Decode refuses what is over the limit
}

func (p *Poller) writeStatus(ctx context.Context, st command.Status) {
	st.Host, st.At, st.Probe = p.Host, p.now().UTC(), fmt.Sprintf("%s pid %d", p.Host, os.Getpid())
	if err := command.SignStatus(&st, p.Key); err != nil {
		p.logger().Warn("sign command status", "id", st.ID, "err", err)
		return
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := p.put(ctx, command.StatusKey(p.Host, st.ID), append(b, '\n')); err != nil {
		p.logger().Warn("write command status", "id", st.ID, "state", st.State, "err", err)
	}
}

func (p *Poller) put(ctx context.Context, key string, data []byte) error {
	_, err := p.Store.Put(ctx, key, bytes.NewReader(data), store.PutOptions{Size: int64(len(data)), ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func (p *Poller) raise(ev alert.Event) {
	if p.Alert == nil {
		return
	}
	ev.Source, ev.Host, ev.At = "probe", p.Host, p.now().UTC()
	p.Alert(ev)
}

func (p *Poller) dedup(id, what string) string {
	return fmt.Sprintf("probe:%s:command:%s:%s", p.Host, id, what)
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Poller) logger() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

func dryText(dry bool) string {
	if dry {
		return ", dry run"
	}
	return ""
}
