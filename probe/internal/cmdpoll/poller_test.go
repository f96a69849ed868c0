package cmdpoll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backstop/probe/internal/restore"
	"backstop/shared/alert"
	"backstop/shared/command"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

const host = "psyfit-prod"

var (
	key   = []byte("the shared command key, 32 bytes")
	start = time.Date(2025, 6, 1, 2, 3, 4, 0, time.UTC)
)

// eachStore runs fn against a directory store and a real S3 server
// (versitygw), each subtest under its own root or prefix.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("dir", func(t *testing.T) {
		st, err := store.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, st)
	})
	t.Run("s3", func(t *testing.T) {
		srv := testenv.S3(t)
		st, err := store.NewS3(context.Background(), store.S3Config{
			Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			PathStyle: true, Prefix: "t/" + regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "_"),
			MaxAttempts: 2, MaxBackoff: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		fn(t, st)
	})
}

// probe is one poller over a store with its own ledger, recording what
// it ran and raised.
type probe struct {
	*Poller
	mu     sync.Mutex
	ran    []command.Command
	events []alert.Event
	fail   error // what Run returns
	clock  atomic.Pointer[time.Time]
}

func newProbe(t *testing.T, st store.Store) *probe {
	p := &probe{}
	p.clock.Store(&start)
	p.Poller = &Poller{
		Store: st, Host: host, Key: key, LedgerPath: filepath.Join(t.TempDir(), "command-ledger.json"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return *p.clock.Load() },
		Alert: func(ev alert.Event) {
			p.mu.Lock()
			p.events = append(p.events, ev)
			p.mu.Unlock()
		},
		// Run stands for the restore engine here (the daemon's test runs
		// the real one): it records the call and answers like it.
		Run: func(ctx context.Context, c command.Command) (restore.Result, error) {
			p.mu.Lock()
			p.ran = append(p.ran, c)
			p.mu.Unlock()
			res := restore.Result{Txn: "20250601T020310Z-4e5f60", Snapshot: "20250531T020000Z-a1b2c3", DryRun: c.DryRun,
				Plan: []string{"db: restore app from the snapshot"}, DurationMS: 1200}
			if p.fail != nil {
				res.Steps = []restore.Step{{Step: "db", Status: "failed", Detail: p.fail.Error()}}
				res.Reverted = true
				return res, p.fail
			}
			res.Steps = []restore.Step{{Step: "db", Status: "ok", DurationMS: 900, Detail: "swapped in"}}
			return res, nil
		},
	}
	return p
}

func (p *probe) runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ran)
}

func (p *probe) takeEvents() []alert.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := p.events
	p.events = nil
	return ev
}

// newCommand is what the restore function issues at start.
func newCommand(id string) command.Command {
	return command.Command{ID: id, Host: host, Snapshot: "latest", Parts: []string{command.PartDB, command.PartData},
		Reason: "bad deploy 0042", RequestedBy: "ops@example.jp", IssuedAt: start, ExpiresAt: start.Add(command.TTL)}
}

// issue signs c with k and writes it as the restore function does.
func issue(t *testing.T, st store.Store, c command.Command, k []byte) {
	t.Helper()
	if err := command.Sign(&c, k); err != nil {
		t.Fatal(err)
	}
	data, err := command.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, st, command.Key(host, c.ID), data)
}

func putRaw(t *testing.T, st store.Store, key string, data []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(data), store.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, st store.Store, key string, v any) {
	t.Helper()
	rc, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", key, err)
	}
}

func poll(t *testing.T, p *probe, want int) {
	t.Helper()
	n, err := p.Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if n != want {
		t.Fatalf("Poll handled %d commands, want %d", n, want)
	}
}

func TestValidCommandRunsOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		p := newProbe(t, st)
		id := "20250601T020304Z-0a1b2c3d"
		issue(t, st, newCommand(id), key)
		poll(t, p, 1)
		if p.runs() != 1 || p.ran[0].ID != id || p.ran[0].Reason != "bad deploy 0042" || p.ran[0].Snapshot != "latest" {
			t.Fatalf("ran %+v", p.ran)
		}

		var status command.Status
		readJSON(t, st, command.StatusKey(host, id), &status)
		if status.State != command.StateSucceeded || status.Step != "done" || status.Txn != "20250601T020310Z-4e5f60" ||
			status.Message != "restore 20250601T020310Z-4e5f60 of snapshot 20250531T020000Z-a1b2c3 done; undo with: probe revert 20250601T020310Z-4e5f60" {
			t.Errorf("status %+v", status)
		}
		var res command.Result
		readJSON(t, st, command.ResultKey(host, id), &res)
		if res.State != command.StateSucceeded || res.Snapshot != "20250531T020000Z-a1b2c3" || len(res.Steps) != 1 ||
			res.Steps[0].Detail != "swapped in" || res.RequestedBy != "ops@example.jp" || strings.Join(res.Parts, ",") != "db,data" {
			t.Errorf("result %+v", res)
		}
		if _, err := st.Stat(context.Background(), command.ClaimKey(host, id)); err != nil {
			t.Errorf("claim object: %v", err)
		}
		ev := p.takeEvents()
		if len(ev) != 2 || ev[0].State != alert.Info || !strings.Contains(ev[0].Summary, "restore command "+id+" started") ||
			ev[1].State != alert.Info || ev[1].Summary != "restore command "+id+" succeeded" || ev[0].Source != "probe" ||
			ev[0].Host != host || ev[0].DedupKey == ev[1].DedupKey {
			t.Errorf("events %+v", ev)
		}

		// Listed again on the next polls: nothing more happens.
		poll(t, p, 0)
		poll(t, p, 0)
		if p.runs() != 1 || len(p.takeEvents()) != 0 {
			t.Errorf("second poll ran %d times in all, events %v", p.runs(), p.events)
		}
		if err := command.VerifyStatus(status, key); err != nil {
			t.Errorf("status signature: %v", err)
		}
		if err := command.VerifyResult(res, key); err != nil {
			t.Errorf("result signature: %v", err)
		}
		res.RequestedBy = "someone else"
		if err := command.VerifyResult(res, key); !errors.Is(err, command.ErrUnsigned) {
			t.Errorf("edited result verifies: %v", err)
		}
		// A second probe (its own ledger) sees a claim it did not write:
		// it leaves the command and says so.
		other := newProbe(t, st)
		poll(t, other, 1)
		if other.runs() != 0 {
			t.Error("a second probe ran a claimed command")
		}
		if ev := other.takeEvents(); len(ev) != 1 || !strings.Contains(ev[0].Summary, "claimed by someone else") {
			t.Errorf("second probe's events %+v", ev)
		}
	})
}

func TestFailedRestoreIsReported(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		p := newProbe(t, st)
		p.fail = errors.New("db: restore into scratch database: pg_restore: out of disk space")
		id := "20250601T020304Z-0000beef"
		c := newCommand(id)
		c.DryRun = false
		issue(t, st, c, key)
		poll(t, p, 1)
		var status command.Status
		readJSON(t, st, command.StatusKey(host, id), &status)
		var res command.Result
		readJSON(t, st, command.ResultKey(host, id), &res)
		want := "restore failed: db: restore into scratch database: pg_restore: out of disk space"
		if status.State != command.StateFailed || status.Message != want || res.State != command.StateFailed ||
			res.Message != want || !res.Reverted || res.Steps[0].Status != "failed" {
			t.Errorf("status %+v\nresult %+v", status, res)
		}
		ev := p.takeEvents()
		if len(ev) != 2 || ev[1].State != alert.Warn || ev[1].Summary != "restore command "+id+" failed" ||
			!strings.Contains(ev[1].Detail, "out of disk space") {
			t.Errorf("events %+v", ev)
		}
		poll(t, p, 0) // a failed command is not retried
		if p.runs() != 1 {
			t.Errorf("ran %d times", p.runs())
		}
	})
}

func TestDryRun(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe(t, st)
	id := "20250601T020304Z-00000d71"
	c := newCommand(id)
	c.DryRun = true
	issue(t, st, c, key)
	poll(t, p, 1)
	var res command.Result
	readJSON(t, st, command.ResultKey(host, id), &res)
	if !p.ran[0].DryRun || !res.DryRun || res.State != command.StateSucceeded ||
		res.Message != "dry run: snapshot 20250531T020000Z-a1b2c3 verified, nothing changed; the restore would do: db: restore app from the snapshot" {
		t.Errorf("result %+v", res)
	}
}

// TestRacingPollers: two probes with separate ledgers poll the same
// commands at once; each command runs exactly once between them.
func TestRacingPollers(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		const n = 6
		for i := range n {
			issue(t, st, newCommand(fmt.Sprintf("20250601T020304Z-%08x", i)), key)
		}
		a, b := newProbe(t, st), newProbe(t, st)
		var wg sync.WaitGroup
		ready := make(chan struct{})
		errs := make(chan error, 2)
		for _, p := range []*probe{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-ready
				_, err := p.Poll(context.Background())
				errs <- err
			}()
		}
		close(ready)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
		}
		poll(t, a, 0)
		poll(t, b, 0)
		seen := map[string]int{}
		for _, p := range []*probe{a, b} {
			for _, c := range p.ran {
				seen[c.ID]++
			}
		}
		if len(seen) != n {
			t.Errorf("%d of %d commands ran: %v", len(seen), n, seen)
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("command %s ran %d times", id, k)
			}
		}
		t.Logf("probe a ran %d, probe b ran %d", a.runs(), b.runs())
	})
}

// TestRejected: each bad command is never run, alerted once with its
// reason, and its status says rejected and why.
func TestRejected(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		cases := []struct {
			name   string
			id     string
			write  func(t *testing.T, id string) // puts the command object
			reason string
			msg    string // the status message and the event detail contain it
		}{
			{name: "forged signature", id: "20250601T020304Z-00000001", reason: command.ReasonForged, msg: "forged: signature does not match",
				write: func(t *testing.T, id string) {
					c := newCommand(id)
					command.Sign(&c, key)
					c.Parts = []string{command.PartDB, command.PartData, command.PartCode} // changed after signing
					data, _ := command.Encode(c)
					putRaw(t, st, command.Key(host, id), data)
				}},
			{name: "wrong key", id: "20250601T020304Z-00000002", reason: command.ReasonForged, msg: "forged: signature does not match",
				write: func(t *testing.T, id string) { issue(t, st, newCommand(id), []byte("not the key the probe holds....")) }},
			{name: "unsigned", id: "20250601T020304Z-00000003", reason: command.ReasonForged, msg: `signature "" is not 64 lowercase hex digits`,
				write: func(t *testing.T, id string) {
					data, _ := command.Encode(newCommand(id))
					putRaw(t, st, command.Key(host, id), data)
				}},
			{name: "expired", id: "20250601T020304Z-00000004", reason: command.ReasonExpired, msg: "expired: at 2025-06-01T01:18:04Z, 46m0s ago",
				write: func(t *testing.T, id string) {
					c := newCommand(id)
					c.IssuedAt, c.ExpiresAt = start.Add(-time.Hour), start.Add(-time.Hour+command.TTL)
					issue(t, st, c, key)
				}},
			{name: "other host", id: "20250601T020304Z-00000005", reason: command.ReasonWrongHost,
				msg: `wrong host: command is for host "psyfit-staging", this is "psyfit-prod"`,
				write: func(t *testing.T, id string) {
					c := newCommand(id)
					c.Host = "psyfit-staging"
					issue(t, st, c, key)
				}},
			{name: "malformed json", id: "20250601T020304Z-00000006", reason: command.ReasonMalformed, msg: "malformed: invalid character",
				write: func(t *testing.T, id string) {
					putRaw(t, st, command.Key(host, id), []byte(`{"id": "`+id+`", "host": "psyfit-prod", restore everything}`))
				}},
			{name: "unknown field", id: "20250601T020304Z-00000007", reason: command.ReasonMalformed, msg: `unknown field "shell"`,
				write: func(t *testing.T, id string) {
					data, _ := command.Encode(newCommand(id))
					putRaw(t, st, command.Key(host, id), bytes.Replace(data, []byte(`"dry_run"`), []byte(`"shell": "rm -rf /", "dry_run"`), 1))
				}},
			{name: "too big", id: "20250601T020304Z-00000008", reason: command.ReasonMalformed, msg: "more than the 16384 allowed",
				write: func(t *testing.T, id string) {
					c := newCommand(id)
					c.Reason = strings.Repeat("x", command.MaxSize)
					issue(t, st, c, key)
				}},
			{name: "id differs from key", id: "20250601T020304Z-00000009", reason: command.ReasonMalformed,
				msg: "the command's id 20250601T020304Z-ffffffff differs from its object key",
				write: func(t *testing.T, id string) {
					c := newCommand("20250601T020304Z-ffffffff")
					command.Sign(&c, key)
					data, _ := command.Encode(c)
					putRaw(t, st, command.Key(host, id), data)
				}},
			{name: "bad id in the key", id: "not-an-id", reason: command.ReasonMalformed, msg: `command id "not-an-id"`,
				write: func(t *testing.T, id string) {
					c := newCommand(id)
					command.Sign(&c, key)
					data, _ := command.Encode(c)
					putRaw(t, st, command.Key(host, id), data)
				}},
		}
		p := newProbe(t, st)
		p.JunkEvery = -1 // one poll per case: each its own alert
		p.clock.Store(&[]time.Time{start.Add(time.Minute)}[0])
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tc.write(t, tc.id)
				poll(t, p, 1)
				if p.runs() != 0 {
					t.Fatalf("a %s command ran", tc.name)
				}
				ev := p.takeEvents()
				if len(ev) != 1 {
					t.Fatalf("%d events, want 1: %+v", len(ev), ev)
				}
				if ev[0].State != alert.Warn || ev[0].Check != "command" || ev[0].IncidentID != tc.id ||
					ev[0].Summary != fmt.Sprintf("restore command %s rejected (%s), not run", tc.id, tc.reason) ||
					!strings.Contains(ev[0].Detail, tc.msg) {
					t.Errorf("event %+v\nwant detail with %q", ev[0], tc.msg)
				}
				var status command.Status
				readJSON(t, st, command.StatusKey(host, tc.id), &status)
				if status.State != command.StateRejected || status.Reason != tc.reason || !strings.Contains(status.Message, tc.msg) ||
					!strings.HasPrefix(status.Message, "rejected, not run: ") {
					t.Errorf("status %+v\nwant reason %s, message with %q", status, tc.reason, tc.msg)
				}
				if _, err := st.Stat(context.Background(), command.ClaimKey(host, tc.id)); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("a rejected command was claimed: %v", err)
				}
				// Not re-alerted on later polls.
				poll(t, p, 0)
				if ev := p.takeEvents(); len(ev) != 0 {
					t.Errorf("re-alerted: %+v", ev)
				}
			})
		}
	})
}

// TestReplayedID: a command that ran is never run again on this host, even
// when its claim and status objects are deleted (the local ledger).
func TestReplayedID(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		p := newProbe(t, st)
		id := "20250601T020304Z-5e5e5e5e"
		issue(t, st, newCommand(id), key)
		poll(t, p, 1)
		p.takeEvents()
		for _, k := range []string{command.ClaimKey(host, id), command.StatusKey(host, id)} {
			if err := st.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		poll(t, p, 1)
		if p.runs() != 1 {
			t.Fatalf("replayed command ran: %d runs", p.runs())
		}
		ev := p.takeEvents()
		if len(ev) != 1 || ev[0].Summary != "restore command "+id+" rejected (replayed), not run" ||
			!strings.Contains(ev[0].Detail, "replayed: command id "+id+" was already claimed by this probe at 2025-06-01T02:03:04Z") {
			t.Fatalf("events %+v", ev)
		}
		var status command.Status
		readJSON(t, st, command.StatusKey(host, id), &status)
		if status.State != command.StateRejected || status.Reason != command.ReasonReplayed {
			t.Errorf("status %+v", status)
		}
		poll(t, p, 0)
		if p.runs() != 1 || len(p.takeEvents()) != 0 {
			t.Errorf("after the replay: %d runs, re-alerted", p.runs())
		}
	})
}

// TestLedgerFailsClosed: an unreadable ledger runs nothing and says why.
func TestLedgerFailsClosed(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe(t, st)
	issue(t, st, newCommand("20250601T020304Z-0a1b2c3d"), key)
	os.WriteFile(p.LedgerPath, []byte("{not json"), 0o600)
	n, err := p.Poll(context.Background())
	if err == nil || n != 0 || p.runs() != 0 || !strings.Contains(err.Error(), "read command ledger "+p.LedgerPath) {
		t.Fatalf("Poll with a corrupt ledger = %d, %v (runs %d)", n, err, p.runs())
	}
}

// TestInterruptedClaim: an id recorded as being claimed whose claim never
// landed (a crash in between) is claimed and run on the next poll; one whose
// claim landed is never run here.
func TestInterruptedClaim(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe(t, st)
	a, b := "20250601T020304Z-0000000a", "20250601T020304Z-0000000b"
	issue(t, st, newCommand(a), key)
	issue(t, st, newCommand(b), key)
	putRaw(t, st, command.ClaimKey(host, b), []byte(`{"host":"`+host+`","pid":1,"run":"00ff00ff00ff00ff"}`))
	led := &ledger{Version: 1, Commands: map[string]*entry{a: {State: seenClaiming, At: start}, b: {State: seenClaiming, At: start, Run: "00ff00ff00ff00ff"}}}
	if err := led.save(p.LedgerPath); err != nil {
		t.Fatal(err)
	}
	poll(t, p, 1)
	if p.runs() != 1 || p.ran[0].ID != a {
		t.Fatalf("ran %+v", p.ran)
	}
	got, _ := loadLedger(p.LedgerPath)
	if got.Commands[a].State != seenClaimed || got.Commands[b].State != seenLost {
		t.Errorf("ledger %+v %+v", got.Commands[a], got.Commands[b])
	}
}

// TestForeignClaim: a claim written before the probe polls (by a bucket
// writer, not this probe) does not silence the command: it is not run, but
// it is logged and alerted once, with what the claim says.
func TestForeignClaim(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		p := newProbe(t, st)
		cases := []struct{ id, claim string }{
			{"20250601T020304Z-0000f001", `{"host":"` + host + `","pid":4242,"run":"deadbeefdeadbeef","at":"2025-06-01T02:03:00Z"}`},
			{"20250601T020304Z-0000f002", `not even json`},
		}
		for _, c := range cases {
			issue(t, st, newCommand(c.id), key)
			putRaw(t, st, command.ClaimKey(host, c.id), []byte(c.claim))
		}
		poll(t, p, 2)
		if p.runs() != 0 {
			t.Fatalf("ran %+v", p.ran)
		}
		ev := p.takeEvents()
		if len(ev) != 2 {
			t.Fatalf("events %+v", ev)
		}
		for i, c := range cases {
			if ev[i].State != alert.Warn || ev[i].Summary != "restore command "+c.id+" was claimed by someone else ("+command.ClaimKey(host, c.id)+"); not run" {
				t.Errorf("event %d %+v", i, ev[i])
			}
		}
		if !strings.Contains(ev[0].Detail, `pid 4242 run "deadbeefdeadbeef"`) || !strings.Contains(ev[1].Detail, "the claim says: unreadable") {
			t.Errorf("details %q / %q", ev[0].Detail, ev[1].Detail)
		}
		poll(t, p, 0)
		if len(p.takeEvents()) != 0 {
			t.Error("a foreign claim alerted twice")
		}
	})
}

// TestLongLivedCommandRefused: a correctly signed command whose lifetime
// exceeds the TTL (15 min by default, commands.ttl) is rejected, never run.
func TestLongLivedCommandRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		p := newProbe(t, st)
		long, ok := "20250601T020304Z-00000211", "20250601T020304Z-00000212"
		c := newCommand(long)
		c.ExpiresAt = start.Add(2 * time.Hour)
		issue(t, st, c, key)
		poll(t, p, 1)
		var status command.Status
		readJSON(t, st, command.StatusKey(host, long), &status)
		if p.runs() != 0 || status.State != command.StateRejected || status.Reason != command.ReasonExpired ||
			!strings.Contains(status.Message, "lifetime 2h0m0s (issued_at to expires_at) exceeds commands.ttl 15m0s") {
			t.Fatalf("runs %d status %+v", p.runs(), status)
		}
		// A configured TTL admits what it allows.
		p.TTL = 3 * time.Hour
		c = newCommand(ok)
		c.ExpiresAt = start.Add(2 * time.Hour)
		issue(t, st, c, key)
		poll(t, p, 1)
		if p.runs() != 1 || p.ran[0].ID != ok {
			t.Fatalf("ran %+v", p.ran)
		}
	})
}

// TestRebuiltHostRefusesExecutedCommand: a host rebuilt without its local
// ledger, finding a command it already ran (its claim deleted), refuses it
// from the store's ledger.
func TestRebuiltHostRefusesExecutedCommand(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		id := "20250601T020304Z-0000abcd"
		issue(t, st, newCommand(id), key)
		first := newProbe(t, st)
		poll(t, first, 1)
		if err := st.Delete(context.Background(), command.ClaimKey(host, id)); err != nil {
			t.Fatal(err)
		}
		rebuilt := newProbe(t, st) // empty local ledger
		poll(t, rebuilt, 1)
		var status command.Status
		readJSON(t, st, command.StatusKey(host, id), &status)
		if rebuilt.runs() != 0 || status.State != command.StateRejected || status.Reason != command.ReasonReplayed ||
			!strings.Contains(status.Message, "is in the store's ledger "+command.LedgerKey(host, id)) {
			t.Fatalf("runs %d status %+v", rebuilt.runs(), status)
		}
		poll(t, rebuilt, 0)
	})
}

// TestLedgerPruned: entries older than the longest command lifetime are
// dropped from the local ledger; recent ones stay.
func TestLedgerPruned(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe(t, st)
	old, recent := "20250501T020304Z-00000001", "20250601T010304Z-00000002"
	led := &ledger{Version: 1, Commands: map[string]*entry{
		old:    {State: seenClaimed, At: start.Add(-command.MaxLifetime - time.Hour)},
		recent: {State: seenClaimed, At: start.Add(-time.Hour)},
	}}
	if err := led.save(p.LedgerPath); err != nil {
		t.Fatal(err)
	}
	id := "20250601T020304Z-00000003"
	issue(t, st, newCommand(id), key)
	poll(t, p, 1)
	got, err := loadLedger(p.LedgerPath)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commands[old] != nil || got.Commands[recent] == nil || got.Commands[id] == nil {
		t.Errorf("ledger after prune: %v", got.Commands)
	}
}

// TestJunkFlood: 50 junk command objects in one round make one combined
// alert with the counts and the first ids; more junk within JunkEvery is
// held back and reported, counted, in the next alert after it.
func TestJunkFlood(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		p := newProbe(t, st)
		for i := range 50 {
			id := fmt.Sprintf("20250601T020304Z-%08x", 0x100+i)
			if i%2 == 0 {
				putRaw(t, st, command.Key(host, id), []byte("junk"))
			} else {
				issue(t, st, newCommand(id), []byte("not the key the probe holds...."))
			}
		}
		poll(t, p, 50)
		ev := p.takeEvents()
		if len(ev) != 1 || ev[0].State != alert.Warn ||
			ev[0].Summary != "50 restore command objects rejected (forged 25, malformed 25), none run" ||
			!strings.Contains(ev[0].Detail, "first: 20250601T020304Z-00000100, 20250601T020304Z-00000101, 20250601T020304Z-00000102, 20250601T020304Z-00000103, 20250601T020304Z-00000104 and 45 more") {
			t.Fatalf("events %+v", ev)
		}
		// Two more within the limit: held back.
		for _, id := range []string{"20250601T020304Z-00000200", "20250601T020304Z-00000201"} {
			putRaw(t, st, command.Key(host, id), []byte("junk"))
		}
		poll(t, p, 2)
		if ev := p.takeEvents(); len(ev) != 0 {
			t.Fatalf("alerted within JunkEvery: %+v", ev)
		}
		later := start.Add(DefaultJunkEvery)
		p.clock.Store(&later)
		poll(t, p, 0)
		if ev := p.takeEvents(); len(ev) != 1 || ev[0].Summary != "2 restore command objects rejected (malformed 2), none run" {
			t.Fatalf("events after the limit %+v", ev)
		}
	})
}
