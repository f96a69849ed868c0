package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/probe/internal/snapshot"
	"backstop/shared/alert"
	"backstop/shared/atomicfile"
	"backstop/shared/clip"
	"backstop/shared/manifest"
)

// Parts a restore may touch.
const (
	PartDB   = "db"
	PartData = "data"
	PartCode = "code"
)

// Request is one restore.
type Request struct {
	Snapshot    string          // id, or "" / "latest"
	Parts       map[string]bool // nil = every part the snapshot and config have
	DryRun      bool
	Reason      string
	Trigger     string // manual | canary | command
	RequestedBy string
	// VerifiedOnly resolves "latest" among verified snapshots only.
	VerifiedOnly bool
}

// Step is what one step of a restore did.
type Step struct {
	Step       string `json:"step"`
	Status     string `json:"status"` // ok | failed | reverted
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
}

// Result is the outcome of a restore.
type Result struct {
	Txn           string   `json:"txn"`
	Snapshot      string   `json:"snapshot"`
	PreSnapshot   string   `json:"pre_snapshot,omitempty"`
	Plan          []string `json:"plan"`
	Steps         []Step   `json:"steps"`
	DryRun        bool     `json:"dry_run"`
	Reverted      bool     `json:"reverted"`
	UnavailableMS int64    `json:"db_unavailable_ms,omitempty"`
	DurationMS    int64    `json:"duration_ms"`
}

// Restorer puts snapshots back on the host.
type Restorer struct {
	Snap          *snapshot.Engine // the lock, catalog, verify, fetch and pre-restore snapshot
	DB            *DB              // nil: no database configured
	DataDir       string           // "": no data directory configured
	Code          Code             // NoCode() when rollback.code.strategy is none
	ReadyURL      string
	ReadyHost     string // Host header for ReadyURL (kamal-proxy routes by host); "" = the URL's
	ReadyTimeout  time.Duration
	ReadyInterval time.Duration
	RollbackLog   string
	StateDir      string // txn records for probe revert
	KeepPre       int
	Log           *slog.Logger
	Alert         func(alert.Event)
	HTTP          *http.Client
}

// record is what `probe revert TXN` needs of a restore, kept in
// <StateDir>/restores/<txn>.json and updated after every step.
type record struct {
	Txn      string    `json:"txn"`
	Snapshot string    `json:"snapshot"`
	At       time.Time `json:"at"`
	Done     []string  `json:"done"` // steps whose change may be in place, in order
	State    string    `json:"state"`
	DataDir  string    `json:"data_dir,omitempty"`
}

// NewTxn returns a restore transaction id: YYYYMMDDTHHMMSSZ-<6 hex>.
func NewTxn(now time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Restore runs one restore transaction: resolve and fetch the snapshot,
// verify every checksum before touching anything (DryRun stops here with
// the plan), take a pre-restore snapshot, then db, data, code and ready.
// A failure at any step reverts the steps done, in reverse order, and the
// error says what failed; the live database and data directory are then
// wholly the old ones.
func (r *Restorer) Restore(ctx context.Context, req Request) (res Result, err error) {
	start := time.Now()
	res.Txn = NewTxn(start)
	res.DryRun = req.DryRun
	defer func() { res.DurationMS = time.Since(start).Milliseconds() }()

	unlock, err := snapshot.Lock(r.Snap.Dir, "restore")
	if err != nil {
		return res, err
	}
	defer unlock()

	id, err := r.Snap.Resolve(ctx, req.Snapshot, req.VerifiedOnly)
	if err != nil {
		return res, err
	}
	res.Snapshot = id
	m, err := r.Snap.FetchLocked(ctx, id)
	if err != nil {
		return res, err
	}
	if m.Host != "" && m.Host != r.Snap.Host {
		return res, fmt.Errorf("snapshot %s was taken on %s, this host is %s", id, m.Host, r.Snap.Host)
	}
	if _, err := r.Snap.VerifyLocked(ctx, id); err != nil {
		return res, fmt.Errorf("refusing to restore: %w", err)
	}
	parts, err := r.parts(req.Parts, m)
	if err != nil {
		return res, err
	}
	res.Plan, err = r.plan(ctx, m, parts, res.Txn)
	if err != nil {
		return res, err
	}
	if req.DryRun {
		return res, nil
	}

	r.logLine("ROLLBACK id=%s step=start status=start snapshot=%s reason=%q parts=%s", res.Txn, id, req.Reason, strings.Join(keys(parts), ","))
	r.raise(alert.Event{Check: "restore", State: alert.Info, Summary: fmt.Sprintf("restore %s of snapshot %s started", res.Txn, id),
		Detail: strings.Join(res.Plan, "\n") + "\nreason: " + req.Reason, IncidentID: res.Txn,
		DedupKey: fmt.Sprintf("restore:%s:restore:%s:start", r.Snap.Host, res.Txn)})

	rec := &record{Txn: res.Txn, Snapshot: id, At: start.UTC(), State: "running", DataDir: r.DataDir}
	if err := r.saveRecord(rec); err != nil {
		return res, err
	}
	// The pre-restore snapshot copies what this restore does not keep by
	// rename: the database and the data dir it restores stay whole as
	// <db>_pre_<txn> and <dir>.pre-<txn> (a dump of them would only cost
	// time). It is skipped when nothing is left to copy.
	preOpts := snapshot.Options{Trigger: manifest.TriggerPreRestore, SkipRetention: true,
		Notes: "before restore " + res.Txn + " of " + id, SkipDB: parts[PartDB], SkipData: parts[PartData]}
	if (r.Snap.DSN != "" && !preOpts.SkipDB) || (r.Snap.DataDir != "" && !preOpts.SkipData) {
		pre, err := r.Snap.BackupLocked(ctx, preOpts)
		if err != nil {
			return res, fmt.Errorf("pre-restore snapshot: %w", err)
		}
		res.PreSnapshot = pre.Manifest.ID
	}

	fail := func(step string, t0 time.Time, cause error) error {
		res.Steps = append(res.Steps, Step{Step: step, Status: "failed", DurationMS: time.Since(t0).Milliseconds(), Detail: cause.Error()})
		r.logLine("ROLLBACK id=%s step=%s status=failed duration_ms=%d snapshot=%s reason=%q", res.Txn, step, time.Since(t0).Milliseconds(), id, clip.Line(cause.Error(), 300))
		rerr := r.revert(context.WithoutCancel(ctx), rec, &res)
		res.Reverted = rerr == nil
		rec.State = "reverted"
		if rerr != nil {
			rec.State = "revert-failed"
		}
		r.saveRecord(rec)
		summary := fmt.Sprintf("restore %s failed at %s and was reverted", res.Txn, step)
		if rerr != nil {
			summary = fmt.Sprintf("restore %s failed at %s and the revert failed too: run probe revert %s", res.Txn, step, res.Txn)
		}
		r.raise(alert.Event{Check: "restore", State: alert.Down, Summary: summary, Detail: cause.Error(),
			IncidentID: res.Txn, DedupKey: fmt.Sprintf("restore:%s:restore:%s:failed", r.Snap.Host, res.Txn)})
		if rerr != nil {
			return fmt.Errorf("%s: %w; revert: %v", step, cause, rerr)
		}
		return fmt.Errorf("%s: %w (reverted: the live state is the old one)", step, cause)
	}
	step := func(name string, fn func() (string, error)) error {
		t0 := time.Now()
		r.logLine("ROLLBACK id=%s step=%s status=start snapshot=%s", res.Txn, name, id)
		detail, err := fn()
		if err != nil {
			return fail(name, t0, err)
		}
		res.Steps = append(res.Steps, Step{Step: name, Status: "ok", DurationMS: time.Since(t0).Milliseconds(), Detail: detail})
		r.logLine("ROLLBACK id=%s step=%s status=ok duration_ms=%d snapshot=%s", res.Txn, name, time.Since(t0).Milliseconds(), id)
		return nil
	}

	if parts[PartDB] {
		if err := step(PartDB, func() (string, error) {
			f, err := os.Open(filepath.Join(r.Snap.Dir, id, m.DB.File))
			if err != nil {
				return "", err
			}
			defer f.Close()
			// recorded before it starts: Revert drops a scratch DB left by a crash
			rec.Done = append(rec.Done, PartDB)
			r.saveRecord(rec)
			if err := r.DB.Restore(ctx, res.Txn, f, m); err != nil {
				return "", err
			}
			unavailable, err := r.DB.Swap(ctx, res.Txn)
			res.UnavailableMS = unavailable.Milliseconds()
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("swapped in; writes unavailable for %s", unavailable.Round(time.Millisecond)), nil
		}); err != nil {
			return res, err
		}
	}
	if parts[PartData] {
		if err := step(PartData, func() (string, error) {
			f, err := os.Open(filepath.Join(r.Snap.Dir, id, m.Data.File))
			if err != nil {
				return "", err
			}
			defer f.Close()
			rec.Done = append(rec.Done, PartData)
			r.saveRecord(rec)
			staged := StageDir(r.DataDir, res.Txn)
			st, err := Extract(ctx, f, staged) // removes what it made on error
			if err != nil {
				return "", err
			}
			if err := SwapDir(r.DataDir, staged, res.Txn); err != nil {
				os.RemoveAll(staged)
				return "", err
			}
			return fmt.Sprintf("%d entries swapped in", st.Entries), nil
		}); err != nil {
			return res, err
		}
	}
	if parts[PartCode] {
		if err := step(PartCode, func() (string, error) {
			rec.Done = append(rec.Done, PartCode)
			r.saveRecord(rec)
			if err := r.Code.Apply(ctx, m, res.Txn); err != nil {
				return "", err
			}
			return "revision " + m.App.Revision, nil
		}); err != nil {
			return res, err
		}
	}
	if err := step("ready", func() (string, error) { return r.ready(ctx) }); err != nil {
		return res, err
	}
	rec.State = "done"
	r.saveRecord(rec)
	r.prune(ctx, res.Txn)
	r.logLine("ROLLBACK id=%s step=end status=ok duration_ms=%d snapshot=%s", res.Txn, time.Since(start).Milliseconds(), id)
	r.raise(alert.Event{Check: "restore", State: alert.Info,
		Summary: fmt.Sprintf("restore %s of snapshot %s done in %s", res.Txn, id, time.Since(start).Round(time.Second)),
		Detail:  stepsText(res.Steps) + "\nundo with: probe revert " + res.Txn, IncidentID: res.Txn,
		DedupKey: fmt.Sprintf("restore:%s:restore:%s:done", r.Snap.Host, res.Txn)})
	return res, nil
}

// Revert undoes restore txn from its record: code, data, then db.
func (r *Restorer) Revert(ctx context.Context, txn string) (Result, error) {
	res := Result{Txn: txn}
	unlock, err := snapshot.Lock(r.Snap.Dir, "revert")
	if err != nil {
		return res, err
	}
	defer unlock()
	rec, err := r.loadRecord(txn)
	if err != nil {
		return res, err
	}
	res.Snapshot = rec.Snapshot
	if rec.State == "reverted" {
		return res, fmt.Errorf("restore %s was already reverted", txn)
	}
	r.logLine("ROLLBACK id=%s step=revert status=start snapshot=%s", txn, rec.Snapshot)
	err = r.revert(ctx, rec, &res)
	rec.State = "reverted"
	if err != nil {
		rec.State = "revert-failed"
	}
	r.saveRecord(rec)
	res.Reverted = err == nil
	return res, err
}

// revert undoes the recorded steps in reverse order; every undo is
// idempotent (and copes with a step that never finished), so a revert
// after a crash at any point converges.
func (r *Restorer) revert(ctx context.Context, rec *record, res *Result) error {
	var errs []error
	for i := len(rec.Done) - 1; i >= 0; i-- {
		t0 := time.Now()
		var err error
		name := rec.Done[i]
		switch name {
		case PartCode:
			err = r.Code.Revert(ctx, rec.Txn)
		case PartData:
			err = RevertDir(r.dataDir(rec), rec.Txn)
			if errors.Is(err, ErrNotSwapped) {
				err = nil // the step failed (or was cut short) before its swap: live is the old one
			}
			os.RemoveAll(StageDir(r.dataDir(rec), rec.Txn))
		case PartDB:
			if r.DB == nil {
				continue
			}
			err = r.DB.Revert(ctx, rec.Txn)
		default:
			continue
		}
		status := "reverted"
		if err != nil {
			status = "failed"
			errs = append(errs, fmt.Errorf("revert %s: %w", name, err))
		}
		res.Steps = append(res.Steps, Step{Step: name, Status: status, DurationMS: time.Since(t0).Milliseconds(), Detail: errString(err)})
		r.logLine("ROLLBACK id=%s step=%s status=%s duration_ms=%d snapshot=%s", rec.Txn, name, status, time.Since(t0).Milliseconds(), rec.Snapshot)
	}
	return errors.Join(errs...)
}

func (r *Restorer) dataDir(rec *record) string {
	if rec.DataDir != "" {
		return rec.DataDir
	}
	return r.DataDir
}

// parts decides what to restore: the request's parts (validated), or every
// part the snapshot holds and the config can put back.
func (r *Restorer) parts(want map[string]bool, m manifest.Manifest) (map[string]bool, error) {
	have := map[string]bool{
		PartDB:   m.DB != nil && r.DB != nil,
		PartData: m.Data != nil && r.DataDir != "",
		PartCode: r.Code != nil && !isNoCode(r.Code) && (m.App.Image != "" || m.App.Revision != ""),
	}
	if len(want) == 0 {
		out := map[string]bool{}
		for p, ok := range have {
			if ok {
				out[p] = true
			}
		}
		if len(out) == 0 {
			return nil, errors.New("nothing to restore: the snapshot and the config share no part")
		}
		return out, nil
	}
	for p := range want {
		switch {
		case p != PartDB && p != PartData && p != PartCode:
			return nil, fmt.Errorf("--only: unknown part %q (db, data, code)", p)
		case !have[p]:
			return nil, fmt.Errorf("--only %s: %s", p, whyNot(p, m, r))
		}
	}
	return want, nil
}

func whyNot(p string, m manifest.Manifest, r *Restorer) string {
	switch p {
	case PartDB:
		if m.DB == nil {
			return "the snapshot has no database dump"
		}
		return "no database configured (backup.database.dsn)"
	case PartData:
		if m.Data == nil {
			return "the snapshot has no data archive"
		}
		return "no data directory configured (backup.data_dir)"
	default:
		if r.Code == nil || isNoCode(r.Code) {
			return "rollback.code.strategy is none"
		}
		return "the snapshot records no app revision or image"
	}
}

func (r *Restorer) plan(ctx context.Context, m manifest.Manifest, parts map[string]bool, txn string) ([]string, error) {
	plan := []string{fmt.Sprintf("snapshot %s taken %s (%s), checksums verified", m.ID, m.CreatedAt.Format(time.RFC3339), m.Trigger),
		"keep the current state: what is restored stays whole beside it (renamed), the rest goes into a pre-restore snapshot"}
	if parts[PartDB] {
		plan = append(plan, fmt.Sprintf("db: restore %s into %s, validate %d tables and migration %s %s, then swap it in by rename (the current one kept as %s)",
			m.DB.File, r.DB.Scratch(txn), len(m.DB.Tables), m.DB.Migration.Tool, m.DB.Migration.Revision, r.DB.Pre(txn)))
	}
	if parts[PartData] {
		plan = append(plan, fmt.Sprintf("data: extract %s into %s, then swap it in (the current one kept as %s.pre-%s)",
			m.Data.File, StageDir(r.DataDir, txn), r.DataDir, txn))
	}
	if parts[PartCode] {
		p, err := r.Code.Plan(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("code: %w", err)
		}
		plan = append(plan, "code: "+p)
	}
	if r.ReadyURL != "" {
		plan = append(plan, fmt.Sprintf("ready: poll %s every %s for up to %s; on failure revert everything", r.ReadyURL, r.ReadyInterval, r.ReadyTimeout))
	}
	return plan, nil
}

// ready checks the restored database answers and polls the ready URL
// until it answers 200.
func (r *Restorer) ready(ctx context.Context) (string, error) {
	if r.DB != nil {
		conn, err := pgx.Connect(ctx, r.DB.DSN)
		if err != nil {
			return "", fmt.Errorf("database after restore: %w", err)
		}
		err = conn.Ping(ctx)
		conn.Close(ctx)
		if err != nil {
			return "", fmt.Errorf("database after restore: %w", err)
		}
	}
	if r.ReadyURL == "" {
		return "no ready_url configured; the database answers", nil
	}
	return PollReady(ctx, r.httpClient(), r.ReadyURL, r.ReadyHost, r.ReadyTimeout, r.ReadyInterval)
}

// PollReady asks url (with Host header host, when set) every interval
// until it answers 200 or timeout passes.
func PollReady(ctx context.Context, hc *http.Client, url, host string, timeout, interval time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, min(interval, 10*time.Second))
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return "", fmt.Errorf("ready url: %w", err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return fmt.Sprintf("%s answered 200 after %d attempts", url, attempt), nil
			}
			last = fmt.Sprintf("HTTP %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		cancel()
		if time.Now().Add(interval).After(deadline) {
			return "", fmt.Errorf("%s not ready after %s (%d attempts; last: %s)", url, timeout, attempt, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(interval):
		}
	}
}

func (r *Restorer) httpClient() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// prune drops pre-states beyond KeepPre; problems are logged, not fatal.
func (r *Restorer) prune(ctx context.Context, txn string) {
	keep := r.KeepPre
	if keep <= 0 {
		keep = 2
	}
	if r.DB != nil {
		if dropped, err := r.DB.Prune(ctx, keep, txn); err != nil {
			r.log().Warn("prune old database pre-states", "err", err)
		} else if len(dropped) > 0 {
			r.log().Info("pruned old database pre-states", "dropped", dropped)
		}
	}
	if r.DataDir != "" {
		if removed, err := PruneDirs(r.DataDir, keep, txn); err != nil {
			r.log().Warn("prune old data dir pre-states", "err", err)
		} else if len(removed) > 0 {
			r.log().Info("pruned old data dir pre-states", "removed", removed)
		}
	}
}

func (r *Restorer) recordPath(txn string) string {
	return filepath.Join(r.StateDir, "restores", txn+".json")
}

func (r *Restorer) saveRecord(rec *record) error {
	if err := os.MkdirAll(filepath.Join(r.StateDir, "restores"), 0o700); err != nil {
		return fmt.Errorf("restore record: %w", err)
	}
	data, _ := json.MarshalIndent(rec, "", "  ")
	return atomicfile.Write(r.recordPath(rec.Txn), data, 0o600)
}

func (r *Restorer) loadRecord(txn string) (*record, error) {
	if strings.ContainsAny(txn, "/\\") || txn == "" {
		return nil, fmt.Errorf("not a restore id: %q", txn)
	}
	data, err := os.ReadFile(r.recordPath(txn))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no restore %s on this host (records are in %s)", txn, filepath.Join(r.StateDir, "restores"))
		}
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("restore record %s: %w", txn, err)
	}
	return &rec, nil
}

func (r *Restorer) raise(ev alert.Event) {
	if r.Alert == nil {
		return
	}
	ev.Source, ev.Host, ev.At = "restore", r.Snap.Host, time.Now().UTC()
	r.Alert(ev)
}

func (r *Restorer) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r.Log
}

// logLine appends one `ROLLBACK id=... step=... status=...` line.
func (r *Restorer) logLine(format string, args ...any) {
	if r.RollbackLog == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(r.RollbackLog), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(r.RollbackLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.log().Warn("rollback log", "err", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func keys(m map[string]bool) []string {
	var out []string
	for _, p := range []string{PartDB, PartData, PartCode} {
		if m[p] {
			out = append(out, p)
		}
	}
	return out
}

func stepsText(steps []Step) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%-6s %-8s %6d ms  %s\n", s.Step, s.Status, s.DurationMS, s.Detail)
	}
	return b.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
