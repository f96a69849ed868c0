package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"backstop/probe/internal/config"
	"backstop/probe/internal/restore"
	"backstop/probe/internal/snapshot"
)

func (a *app) restorer(ctx context.Context, cmd string) (*config.Config, *restore.Restorer, *collector, int) {
	cfg, e, col, code := a.snapshotEngine(ctx, cmd)
	if code != ExitOK {
		return nil, nil, nil, code
	}
	r, err := restore.FromConfig(ctx, cfg, e, newLogger(a.io.Stderr, false))
	if err != nil {
		a.errorf(cmd, err)
		return nil, nil, nil, ExitError
	}
	r.Alert = col.add
	return cfg, r, col, ExitOK
}

// parseFlags parses fs and returns (code, true) when the command is done.
func (a *app) parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, true
		}
		return ExitUsage, true
	}
	return 0, false
}

func (a *app) restore(ctx context.Context, args []string) int {
	fs := a.newFlags("restore", "restore (--latest | --snapshot ID) [--only db,data,code] [--dry-run] [--reason TEXT] [--yes] [--allow-unsigned] [--json]")
	latest := fs.Bool("latest", false, "restore the newest snapshot")
	id := fs.String("snapshot", "", "restore this snapshot")
	only := fs.String("only", "", "restore only these parts (db, data, code)")
	dry := fs.Bool("dry-run", false, "verify and print the plan; change nothing")
	reason := fs.String("reason", "", "why (kept in the rollback log and the alert)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	allowUnsigned := allowUnsignedFlag(fs)
	if code, done := a.parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 || *latest == (*id != "") {
		fmt.Fprintln(a.io.Stderr, "probe restore: give --latest or --snapshot ID (one of them)")
		return ExitUsage
	}
	req := restore.Request{Snapshot: *id, DryRun: *dry, Reason: *reason, Trigger: "manual", RequestedBy: "cli"}
	if *latest {
		req.Snapshot = "latest"
	}
	if *only != "" {
		req.Parts = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			if p = strings.TrimSpace(p); p != "" {
				req.Parts[p] = true
			}
		}
	}
	if !*dry && !*yes && !isTerminalReader(a.io.Stdin) {
		fmt.Fprintln(a.io.Stderr, "probe restore: not on a terminal and no --yes: refusing (run with --dry-run to see the plan, --yes to go ahead)")
		return ExitUsage
	}
	cfg, r, col, code := a.restorer(ctx, "restore")
	if code != ExitOK {
		return code
	}
	r.Snap.AllowUnsigned = *allowUnsigned
	defer a.flushEvents(context.WithoutCancel(ctx), "restore", cfg, col)
	if !*dry && !*yes {
		plan := req
		plan.DryRun = true
		res, err := r.Restore(ctx, plan)
		if err != nil {
			return a.exitFor("restore", err)
		}
		printPlan(a, res)
		fmt.Fprint(a.io.Stdout, "Restore now? Type yes to go ahead: ")
		line, _ := bufio.NewReader(a.io.Stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			fmt.Fprintln(a.io.Stdout, "not restored")
			return ExitError
		}
		req.Snapshot = res.Snapshot // what was shown is what is restored
	}
	res, err := r.Restore(ctx, req)
	if *asJSON {
		writeJSONValue(a.io.Stdout, res)
	} else if *dry {
		printPlan(a, res)
	} else {
		printSteps(a, res)
	}
	if err != nil {
		return a.exitFor("restore", err)
	}
	return ExitOK
}

func printPlan(a *app, res restore.Result) {
	fmt.Fprintf(a.io.Stdout, "Plan for restoring snapshot %s:\n", res.Snapshot)
	for i, p := range res.Plan {
		fmt.Fprintf(a.io.Stdout, "  %d. %s\n", i+1, p)
	}
}

func printSteps(a *app, res restore.Result) {
	for _, s := range res.Steps {
		fmt.Fprintf(a.io.Stdout, "  %-6s %-9s %7s  %s\n", s.Step, strings.ToUpper(s.Status), (time.Duration(s.DurationMS) * time.Millisecond).String(), s.Detail)
	}
	if res.Txn != "" && !res.Reverted && len(res.Steps) > 0 {
		pre := ""
		if res.PreSnapshot != "" {
			pre = " (pre-restore snapshot " + res.PreSnapshot + ")"
		}
		fmt.Fprintf(a.io.Stdout, "restore %s of snapshot %s done in %s%s; undo with: probe revert %s\n",
			res.Txn, res.Snapshot, time.Duration(res.DurationMS)*time.Millisecond, pre, res.Txn)
	}
}

func (a *app) revert(ctx context.Context, args []string) int {
	fs := a.newFlags("revert", "revert TXN [--json]")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, done := a.parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(a.io.Stderr, "probe revert: give the restore's id (TXN), as its output and the rollback log show")
		return ExitUsage
	}
	cfg, r, col, code := a.restorer(ctx, "revert")
	if code != ExitOK {
		return code
	}
	defer a.flushEvents(context.WithoutCancel(ctx), "revert", cfg, col)
	res, err := r.Revert(ctx, fs.Arg(0))
	if *asJSON {
		writeJSONValue(a.io.Stdout, res)
	} else {
		printSteps(a, res)
	}
	if err != nil {
		return a.exitFor("revert", err)
	}
	fmt.Fprintf(a.io.Stdout, "restore %s reverted\n", res.Txn)
	return ExitOK
}

func (a *app) canary(ctx context.Context, args []string) int {
	fs := a.newFlags("canary", "canary [--timeout 90s] [--interval 10s] [--json]")
	timeout := fs.Duration("timeout", 0, "how long to wait for readiness (default rollback.timeout, ROLLBACK_READY_TIMEOUT_SEC)")
	interval := fs.Duration("interval", 0, "how often to ask (default rollback.interval, ROLLBACK_READY_INTERVAL_SEC)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, done := a.parseFlags(fs, args); done {
		return code
	}
	cfg, r, col, code := a.restorer(ctx, "canary")
	if code != ExitOK {
		return code
	}
	defer a.flushEvents(context.WithoutCancel(ctx), "canary", cfg, col)
	if *timeout == 0 {
		*timeout = cfg.Rollback.Timeout.D()
	}
	if *interval == 0 {
		*interval = cfg.Rollback.Interval.D()
	}
	res, err := r.Canary(ctx, *timeout, *interval, *cfg.Rollback.Canary)
	if *asJSON {
		writeJSONValue(a.io.Stdout, res)
	} else {
		fmt.Fprintln(a.io.Stdout, res.Detail)
		if res.Restore != nil {
			printSteps(a, *res.Restore)
		}
	}
	if err != nil {
		if errors.Is(err, snapshot.ErrLocked) {
			return a.exitFor("canary", err)
		}
		a.errorf("canary", err)
		return ExitError
	}
	return ExitOK
}

func (a *app) drill(ctx context.Context, args []string) int {
	fs := a.newFlags("drill", "drill [--snapshot ID] [--allow-unsigned] [--json]")
	id := fs.String("snapshot", "", "the snapshot to drill (default the newest)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	allowUnsigned := allowUnsignedFlag(fs)
	if code, done := a.parseFlags(fs, args); done {
		return code
	}
	cfg, r, col, code := a.restorer(ctx, "drill")
	if code != ExitOK {
		return code
	}
	r.Snap.AllowUnsigned = *allowUnsigned
	defer a.flushEvents(context.WithoutCancel(ctx), "drill", cfg, col)
	res, err := r.Drill(ctx, *id)
	if *asJSON {
		writeJSONValue(a.io.Stdout, res)
	} else if err == nil {
		fmt.Fprintf(a.io.Stdout, "drill of %s passed in %s: restored into %s, validated, dropped\n", res.Snapshot, time.Duration(res.DurationMS)*time.Millisecond, res.Database)
	}
	if err != nil {
		return a.exitFor("drill", err)
	}
	return ExitOK
}
