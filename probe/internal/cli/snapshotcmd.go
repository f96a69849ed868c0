package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"backstop/probe/internal/config"
	"backstop/probe/internal/daemon"
	"backstop/probe/internal/snapshot"
	"backstop/shared/alert"
	"backstop/shared/manifest"
)

// ExitLocked is the exit code of a command refused because another backup,
// restore or drill holds the lock (EX_TEMPFAIL: try again later).
const ExitLocked = 75

// snapshotEngine loads the config and builds the engine; events it raises
// are collected for queueing when the command ends.
type collector struct {
	mu     sync.Mutex
	events []alert.Event
}

func (c *collector) add(ev alert.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

func (a *app) snapshotEngine(ctx context.Context, cmd string) (*config.Config, *snapshot.Engine, *collector, int) {
	cfg, err := a.loadConfig()
	if err != nil {
		a.errorf(cmd, err)
		return nil, nil, nil, ExitError
	}
	log := newLogger(a.io.Stderr, false)
	e, err := snapshot.FromConfig(ctx, cfg, log)
	if err != nil {
		a.errorf(cmd, err)
		return nil, nil, nil, ExitError
	}
	col := &collector{}
	e.Alert = col.add
	return cfg, e, col, ExitOK
}

// flushEvents queues what the command raised (and delivers it when no
// daemon runs); a delivery problem is reported, the events stay queued.
func (a *app) flushEvents(ctx context.Context, cmd string, cfg *config.Config, col *collector) {
	if col == nil || len(col.events) == 0 {
		return
	}
	if err := daemon.QueueAndDeliver(ctx, cfg, col.events); err != nil {
		fmt.Fprintf(a.io.Stderr, "probe %s: alert queued in %s/outbox but not delivered yet: %v\n", cmd, cfg.StateDir, err)
	}
}

func (a *app) exitFor(cmd string, err error) int {
	a.errorf(cmd, err)
	if errors.Is(err, snapshot.ErrLocked) {
		return ExitLocked
	}
	return ExitError
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (a *app) backup(ctx context.Context, args []string) int {
	fs := a.newFlags("backup", "backup [--notes TEXT] [--no-upload] [--json]")
	notes := fs.String("notes", "", "a note kept in the manifest")
	noUpload := fs.Bool("no-upload", false, "keep the snapshot local (probe push uploads it later)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, done := a.parse(fs, args, ExitUsage); done {
		return code
	}
	cfg, e, col, code := a.snapshotEngine(ctx, "backup")
	if code != ExitOK {
		return code
	}
	defer a.flushEvents(context.WithoutCancel(ctx), "backup", cfg, col)
	if !*asJSON && isTerminal(a.io.Stderr) {
		e.Progress = a.io.Stderr
	}
	res, err := e.Backup(ctx, snapshot.Options{Trigger: manifest.TriggerManual, Notes: *notes, Upload: !*noUpload})
	if err != nil {
		return a.exitFor("backup", err)
	}
	if *asJSON {
		writeJSONValue(a.io.Stdout, struct {
			snapshot.Result
			DurationMS int64 `json:"duration_ms"`
		}{res, res.Duration.Milliseconds()})
	} else {
		fmt.Fprintln(a.io.Stdout, res.Manifest.ID)
		if res.UploadErr != "" {
			fmt.Fprintf(a.io.Stderr, "probe backup: snapshot %s is complete locally, but the upload failed: %s\n  it is queued: probe push (or the running daemon) uploads it later\n", res.Manifest.ID, res.UploadErr)
		}
	}
	return ExitOK
}

func (a *app) list(ctx context.Context, args []string) int {
	fs := a.newFlags("list", "list [--json] [--remote]")
	asJSON := fs.Bool("json", false, "print the snapshots as JSON")
	remote := fs.Bool("remote", false, "list the snapshots in the store instead of the local ones")
	if code, done := a.parse(fs, args, ExitUsage); done {
		return code
	}
	cfg, e, _, code := a.snapshotEngine(ctx, "list")
	if code != ExitOK {
		return code
	}
	var snaps []manifest.Manifest
	var err error
	if *remote {
		snaps, err = e.ListRemote(ctx)
	} else {
		snaps, err = e.List()
	}
	if err != nil {
		a.errorf("list", err)
		return ExitError
	}
	if snaps == nil {
		snaps = []manifest.Manifest{}
	}
	if *asJSON {
		writeJSONValue(a.io.Stdout, snaps)
		return ExitOK
	}
	if len(snaps) == 0 {
		fmt.Fprintf(a.io.Stdout, "no snapshots in %s\n", map[bool]string{false: cfg.Backup.Dir, true: "the store"}[*remote])
		return ExitOK
	}
	loc, err := time.LoadLocation(cfg.Timezone)
	if err != nil {
		loc = time.Local
	}
	tw := tabwriter.NewWriter(a.io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tTRIGGER\tSTATUS\tDB\tDATA\tREVISION\tMIGRATION\tOFF-SITE")
	for _, m := range snaps {
		db, data, mig := "-", "-", "-"
		if m.DB != nil {
			db = snapshot.HumanSize(m.DB.Size)
			if m.DB.Migration.Tool != "none" && m.DB.Migration.Tool != "" {
				mig = m.DB.Migration.Tool + " " + m.DB.Migration.Revision
			}
		}
		if m.Data != nil {
			data = snapshot.HumanSize(m.Data.Size)
		}
		rev := m.App.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev == "" {
			rev = "-"
		}
		off := "no"
		if m.Offsite != nil {
			off = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.CreatedAt.In(loc).Format("2006-01-02 15:04 MST"),
			m.Trigger, m.Status, db, data, rev, mig, off)
	}
	tw.Flush()
	return ExitOK
}

func (a *app) verify(ctx context.Context, args []string) int {
	fs := a.newFlags("verify", "verify [ID | --all] [--json]")
	all := fs.Bool("all", false, "verify every snapshot")
	asJSON := fs.Bool("json", false, "print the verdicts as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 1 || (*all && fs.NArg() == 1) {
		fmt.Fprintln(a.io.Stderr, "probe verify: give one snapshot ID or --all")
		return ExitUsage
	}
	_, e, _, code := a.snapshotEngine(ctx, "verify")
	if code != ExitOK {
		return code
	}
	var results []snapshot.VerifyResult
	var err error
	switch {
	case *all:
		results, err = e.VerifyAll(ctx)
	default:
		id := fs.Arg(0)
		if id == "" {
			snaps, lerr := e.List()
			if lerr != nil || len(snaps) == 0 {
				a.errorf("verify", errors.New("no snapshots to verify"))
				return ExitError
			}
			id = snaps[0].ID
		}
		var r snapshot.VerifyResult
		r, err = e.Verify(ctx, id)
		if r.Files != nil {
			results = append(results, r)
		}
	}
	if *asJSON {
		writeJSONValue(a.io.Stdout, results)
	} else {
		for _, r := range results {
			verdict := "OK"
			if !r.OK {
				verdict = "FAILED"
			}
			fmt.Fprintf(a.io.Stdout, "%s  %s\n", r.ID, verdict)
			if r.NotRecorded != "" {
				fmt.Fprintf(a.io.Stdout, "  (verified, but not recorded: %s)\n", r.NotRecorded)
			}
			for _, f := range r.Files {
				switch {
				case !f.OK:
					fmt.Fprintf(a.io.Stdout, "  %-14s CORRUPT: %s\n", f.File, f.Problem)
				case f.Note != "":
					fmt.Fprintf(a.io.Stdout, "  %-14s ok (%s)\n", f.File, f.Note)
				default:
					fmt.Fprintf(a.io.Stdout, "  %-14s ok\n", f.File)
				}
			}
		}
	}
	if err != nil {
		return a.exitFor("verify", err)
	}
	return ExitOK
}

func (a *app) push(ctx context.Context, args []string) int {
	fs := a.newFlags("push", "push [ID]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(a.io.Stderr, "probe push: at most one snapshot ID")
		return ExitUsage
	}
	_, e, _, code := a.snapshotEngine(ctx, "push")
	if code != ExitOK {
		return code
	}
	pushed, err := e.Push(ctx, fs.Arg(0))
	for _, id := range pushed {
		fmt.Fprintf(a.io.Stdout, "%s uploaded to %s\n", id, e.Store)
	}
	if err != nil {
		return a.exitFor("push", err)
	}
	if len(pushed) == 0 {
		fmt.Fprintln(a.io.Stdout, "nothing to upload: every snapshot is off-site")
	}
	return ExitOK
}

func writeJSONValue(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func isTerminalReader(r any) bool {
	w, ok := r.(io.Writer)
	if !ok {
		if f, ok := r.(interface{ Stat() (os.FileInfo, error) }); ok {
			fi, err := f.Stat()
			return err == nil && fi.Mode()&os.ModeCharDevice != 0
		}
		return false
	}
	return isTerminal(w)
}
