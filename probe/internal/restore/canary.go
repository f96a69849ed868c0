package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"backstop/probe/internal/snapshot"
	"backstop/shared/alert"
	"backstop/shared/clip"
	"backstop/shared/manifest"
)

// CanaryResult is what `probe canary` found and did.
type CanaryResult struct {
	Ready      bool    `json:"ready"`
	Detail     string  `json:"detail"`
	RolledBack bool    `json:"rolled_back"`
	Restore    *Result `json:"restore,omitempty"`
}

// Canary polls the ready URL for timeout every interval after a deploy.
// Ready: the newest verified snapshot's manifest records the ready check.
// Never ready: with rollback enabled, the newest verified snapshot (taken
// before the deploy) is restored (reason readyz_fail); disabled, only an
// alert is raised. The error is non-nil whenever the app was not ready.
func (r *Restorer) Canary(ctx context.Context, timeout, interval time.Duration, rollback bool) (CanaryResult, error) {
	var res CanaryResult
	if r.ReadyURL == "" {
		return res, errors.New("rollback.ready_url is not set: the canary has nothing to poll")
	}
	detail, err := PollReady(ctx, r.httpClient(), r.ReadyURL, r.ReadyHost, timeout, interval)
	if err == nil {
		res.Ready, res.Detail = true, detail
		if rerr := r.recordReady(ctx); rerr != nil {
			r.log().Warn("record ready check", "err", rerr)
		}
		return res, nil
	}
	res.Detail = err.Error()
	r.logLine("ROLLBACK id=canary step=ready status=failed reason=readyz_fail detail=%q", clip.Line(err.Error(), 300))
	if !rollback {
		r.raise(alert.Event{Check: "canary", State: alert.Down, Summary: "deploy not ready; automatic rollback is disabled (ROLLBACK_CANARY_ENABLED=false)",
			Detail: err.Error(), IncidentID: NewTxn(time.Now()), DedupKey: fmt.Sprintf("restore:%s:canary:%d:failed", r.Snap.Host, time.Now().Unix())})
		return res, fmt.Errorf("not ready, rollback disabled: %w", err)
	}
	rr, rerr := r.Restore(ctx, Request{Snapshot: "latest", VerifiedOnly: true, Reason: "readyz_fail", Trigger: "canary", RequestedBy: "canary"})
	res.Restore = &rr
	if rerr != nil {
		return res, fmt.Errorf("not ready (%v), and the automatic restore failed: %w", err, rerr)
	}
	res.RolledBack = true
	return res, fmt.Errorf("not ready; rolled back to snapshot %s (restore %s)", rr.Snapshot, rr.Txn)
}

// recordReady writes ready_check{at, ok} into the newest verified
// snapshot's manifest and the catalog.
func (r *Restorer) recordReady(ctx context.Context) error {
	unlock, err := snapshot.Lock(r.Snap.Dir, "canary")
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(r.Snap.Dir, manifest.ManifestFile)
	cat, err := manifest.LoadCatalog(path)
	if err != nil {
		return err
	}
	m, ok := cat.Newest(func(m manifest.Manifest) bool { return m.Status == manifest.StatusVerified })
	if !ok {
		return errors.New("no verified snapshot to record the ready check in")
	}
	m.ReadyCheck = &manifest.ReadyCheck{At: time.Now().UTC(), OK: true}
	if err := r.Snap.WriteManifest(m.ID, m); err != nil {
		return err
	}
	if err := cat.Upsert(m); err != nil {
		return err
	}
	return cat.Save(path)
}

// DrillResult is the outcome of a restore drill.
type DrillResult struct {
	Snapshot   string `json:"snapshot"`
	Database   string `json:"database"`
	OK         bool   `json:"ok"`
	Detail     string `json:"detail,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// Drill restores a snapshot (default the newest) into a scratch database
// only — never touching the live one — validates it against the manifest
// (tables, row counts, migration revision), drops it and reports the
// outcome as an event.
func (r *Restorer) Drill(ctx context.Context, id string) (DrillResult, error) {
	start := time.Now()
	var res DrillResult
	if r.DB == nil {
		return res, errors.New("no database configured: nothing to drill")
	}
	unlock, err := snapshot.Lock(r.Snap.Dir, "drill")
	if err != nil {
		return res, err
	}
	defer unlock()
	if id, err = r.Snap.Resolve(ctx, id, false); err != nil {
		return res, err
	}
	res.Snapshot = id
	m, err := r.Snap.FetchLocked(ctx, id)
	if err == nil {
		_, err = r.Snap.VerifyLocked(ctx, id)
	}
	if err == nil && m.DB == nil {
		err = fmt.Errorf("snapshot %s has no database dump", id)
	}
	if err == nil {
		txn := "drill-" + NewTxn(start)
		res.Database = r.DB.Scratch(txn)
		var f *os.File
		if f, err = os.Open(filepath.Join(r.Snap.Dir, id, m.DB.File)); err == nil {
			err = r.DB.Restore(ctx, txn, f, m) // validates against the manifest
			f.Close()
		}
		if derr := r.DB.Revert(context.WithoutCancel(ctx), txn); derr != nil && err == nil {
			err = fmt.Errorf("drop drill database: %w", derr)
		}
	}
	res.DurationMS = time.Since(start).Milliseconds()
	res.OK = err == nil
	state, summary := alert.Info, fmt.Sprintf("restore drill of %s passed in %s", id, time.Since(start).Round(time.Second))
	if err != nil {
		res.Detail = err.Error()
		state, summary = alert.Warn, fmt.Sprintf("restore drill of %s FAILED: %s", id, clip.Line(err.Error(), 300))
	}
	r.logLine("DRILL snapshot=%s status=%s duration_ms=%d", id, map[bool]string{true: "ok", false: "failed"}[res.OK], res.DurationMS)
	r.raise(alert.Event{Check: "drill", State: state, Summary: summary, Detail: res.Detail, IncidentID: id,
		DedupKey: fmt.Sprintf("restore:%s:drill:%s:%d", r.Snap.Host, id, start.Unix())})
	return res, err
}
