package outbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"backstop/shared/alert"
	"backstop/shared/atomicfile"
	"backstop/shared/mail"
)

// Sender delivers one event. An error matching mail.ErrPermanent means
// retrying the same event will not help; any other error is transient.
type Sender interface {
	Send(ctx context.Context, ev alert.Event) error
}

// Backoff bounds: the first retry waits FirstBackoff, each further one
// twice as long, at most MaxBackoff. Permanently failed events are retried
// every MaxBackoff.
const (
	FirstBackoff = 30 * time.Second
	MaxBackoff   = 15 * time.Minute
)

// Backoff returns the wait after the given number of failed attempts
// (1: 30s, 2: 1m, 3: 2m, 4: 4m, 5: 8m, then 15m).
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		return 0
	}
	d := FirstBackoff
	for i := 1; i < attempts; i++ {
		d *= 2
		if d >= MaxBackoff {
			return MaxBackoff
		}
	}
	return d
}

// Item is one queued event and its delivery record.
type Item struct {
	Event           alert.Event `json:"event"`
	Attempts        int         `json:"attempts"`
	NextTry         time.Time   `json:"next_try,omitzero"` // zero: due now
	LastError       string      `json:"last_error,omitempty"`
	FailedPermanent bool        `json:"failed_permanent,omitempty"` // the last attempt failed permanently
	file            string
}

// Report says what one Deliver call did.
type Report struct {
	Sent            int     // events delivered (and removed from the queue)
	Retrying        int     // transient failures (a transient failure ends the round)
	FailedPermanent int     // permanent failures, kept in the queue
	Pending         int     // events still queued afterwards
	Errors          []error // each failure, naming the event
}

// Outbox is an on-disk queue of alert events: Enqueue writes the event to
// disk before anything tries to deliver it, so nothing is lost while the
// mail service or the store is unreachable, and no event is ever dropped.
//
// Layout under dir: queue/<seq>-<hash>.json (one file per event, seq keeps
// the enqueue order, hash identifies the DedupKey) and sent.log (hashes of
// recently delivered DedupKeys, one a line).
//
// Its methods are safe for concurrent use within one process. It is not
// safe for two processes on the same dir: the probe holds its own lock.
type Outbox struct {
	dir string

	deliverMu sync.Mutex // one Deliver at a time

	mu     sync.Mutex // guards the fields below
	seq    uint64
	queued map[string]string // hash -> file name
	sent   map[string]bool   // hashes in sent.log
	log    []string          // sent.log in order
}

const (
	queueDir   = "queue"
	sentLog    = "sent.log"
	keepSent   = 1000 // hashes kept when sent.log is compacted
	maxSentLog = 2 * keepSent
)

// Open opens (creating, mode 0700) the outbox in dir and loads its queue
// and sent ledger. Temporary files left by a crash are removed.
func Open(dir string) (*Outbox, error) {
	q := filepath.Join(dir, queueDir)
	if err := os.MkdirAll(q, 0o700); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", dir, err)
	}
	o := &Outbox{dir: dir, queued: map[string]string{}, sent: map[string]bool{}}
	ents, err := os.ReadDir(q)
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			os.Remove(filepath.Join(q, name)) // an interrupted atomic write
			continue
		}
		seq, h, ok := parseName(name)
		if !ok {
			continue
		}
		o.queued[h] = name
		o.seq = max(o.seq, seq)
	}
	data, err := os.ReadFile(filepath.Join(dir, sentLog))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open outbox %s: %w", dir, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if h := sc.Text(); isHash(h) { // a torn last line is skipped
			o.sent[h] = true
			o.log = append(o.log, h)
		}
	}
	return o, nil
}

func hashKey(dedupKey string) string {
	h := sha256.Sum256([]byte(dedupKey))
	return hex.EncodeToString(h[:16])
}

func isHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// parseName reads "<16 digit seq>-<32 hex>.json".
func parseName(name string) (uint64, string, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok || len(base) != 16+1+32 || base[16] != '-' || !isHash(base[17:]) {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(base[:16], 10, 64)
	return seq, base[17:], err == nil
}

// Enqueue writes ev to the queue (atomically, fsynced) and returns once it
// is on disk. An event whose DedupKey is already queued or was delivered
// recently (it is in the sent ledger) is a no-op, so replaying the same
// events after a crash sends nothing twice.
func (o *Outbox) Enqueue(ev alert.Event) error {
	if ev.DedupKey == "" {
		return fmt.Errorf("enqueue %s/%s event for %s: no dedup key", ev.Check, ev.State, ev.Host)
	}
	h := hashKey(ev.DedupKey)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent[h] || o.queued[h] != "" {
		return nil
	}
	name := fmt.Sprintf("%016d-%s.json", o.seq+1, h)
	if err := o.write(&Item{Event: ev, file: name}); err != nil {
		return fmt.Errorf("enqueue %s: %w", ev.DedupKey, err)
	}
	o.seq++
	o.queued[h] = name
	return nil
}

func (o *Outbox) write(it *Item) error {
	data, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(o.dir, queueDir, it.file), append(data, '\n'), 0o600)
}

// Items returns the queued events with their delivery records, oldest
// first. A file that cannot be read is reported in the error and skipped.
func (o *Outbox) Items() ([]Item, error) {
	o.mu.Lock()
	names := make([]string, 0, len(o.queued))
	for _, n := range o.queued {
		names = append(names, n)
	}
	o.mu.Unlock()
	sort.Strings(names)
	var items []Item
	var errs []error
	for _, n := range names {
		p := filepath.Join(o.dir, queueDir, n)
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered meanwhile
		}
		var it Item
		if err == nil {
			err = json.Unmarshal(data, &it)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read outbox item %s: %w", p, err))
			continue
		}
		it.file = n
		items = append(items, it)
	}
	return items, errors.Join(errs...)
}

// Pending returns the queued events, oldest first (for status and metrics).
func (o *Outbox) Pending() ([]alert.Event, error) {
	items, err := o.Items()
	evs := make([]alert.Event, 0, len(items))
	for _, it := range items {
		evs = append(evs, it.Event)
	}
	return evs, err
}

// Deliver sends the due events in enqueue order. On success the event's
// DedupKey goes into the sent ledger (fsynced) and then its file is
// removed. On a transient failure the event stays with Attempts, NextTry
// (now + Backoff) and LastError, and the round ends: later events wait
// behind it so that one check's events keep their order. On a permanent
// failure (mail.ErrPermanent) the event stays too, marked FailedPermanent
// for the operator, retried every MaxBackoff, and the round goes on.
//
// The remaining window for a duplicate: a crash after the sender succeeded
// but before the ledger line reached the disk (microseconds) sends that
// event again on the next Deliver. The returned error is an I/O failure of
// the outbox itself; delivery failures are in the Report.
func (o *Outbox) Deliver(ctx context.Context, s Sender, now time.Time) (Report, error) {
	o.deliverMu.Lock()
	defer o.deliverMu.Unlock()
	var rep Report
	items, err := o.Items()
	if err != nil {
		rep.Errors = append(rep.Errors, err)
	}
	var ioErrs []error
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		h := hashKey(it.Event.DedupKey)
		if o.isSent(h) { // sent before a crash, not yet removed
			if err := o.remove(h, it.file); err != nil {
				ioErrs = append(ioErrs, err)
			}
			continue
		}
		if it.NextTry.After(now) {
			if it.FailedPermanent {
				continue
			}
			break
		}
		err := s.Send(ctx, it.Event)
		if err == nil {
			rep.Sent++
			if err := o.markSent(h); err != nil {
				ioErrs = append(ioErrs, err)
			}
			if err := o.remove(h, it.file); err != nil {
				ioErrs = append(ioErrs, err)
			}
			continue
		}
		it.Attempts++
		it.LastError = err.Error()
		it.FailedPermanent = errors.Is(err, mail.ErrPermanent)
		wait := Backoff(it.Attempts)
		if it.FailedPermanent {
			wait = MaxBackoff
		}
		it.NextTry = now.Add(wait)
		rep.Errors = append(rep.Errors, fmt.Errorf("deliver %s (attempt %d): %w", it.Event.DedupKey, it.Attempts, err))
		if werr := o.write(&it); werr != nil {
			ioErrs = append(ioErrs, fmt.Errorf("record attempt of %s: %w", it.Event.DedupKey, werr))
		}
		if !it.FailedPermanent {
			rep.Retrying++
			break
		}
		rep.FailedPermanent++
	}
	o.mu.Lock()
	rep.Pending = len(o.queued)
	o.mu.Unlock()
	return rep, errors.Join(ioErrs...)
}

func (o *Outbox) isSent(h string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent[h]
}

// markSent appends h to the sent ledger and fsyncs it; past maxSentLog
// lines the ledger is rewritten atomically with the newest keepSent.
func (o *Outbox) markSent(h string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := filepath.Join(o.dir, sentLog)
	o.sent[h] = true
	o.log = append(o.log, h)
	if len(o.log) > maxSentLog {
		for _, old := range o.log[:len(o.log)-keepSent] {
			delete(o.sent, old)
		}
		o.log = append([]string(nil), o.log[len(o.log)-keepSent:]...)
		if err := atomicfile.Write(p, []byte(strings.Join(o.log, "\n")+"\n"), 0o600); err != nil {
			return fmt.Errorf("compact sent ledger: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record sent %s: %w", p, err)
	}
	_, err = f.WriteString(h + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record sent %s: %w", p, err)
	}
	if len(o.log) == 1 { // the ledger was just created
		return atomicfile.SyncDir(o.dir)
	}
	return nil
}

func (o *Outbox) remove(h, name string) error {
	q := filepath.Join(o.dir, queueDir)
	if err := os.Remove(filepath.Join(q, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove delivered %s: %w", name, err)
	}
	o.mu.Lock()
	delete(o.queued, h)
	o.mu.Unlock()
	return atomicfile.SyncDir(q)
}
