package cli

import (
	"context"
	"io"
	"log/slog"
	"os"

	"backstop/probe/internal/daemon"
)

func (a *app) run(ctx context.Context, args []string) int {
	fs := a.newFlags("run", "run [--debug]")
	debug := fs.Bool("debug", false, "log every check result, not only problems")
	if code, done := a.parse(fs, args, ExitUsage); done {
		return code
	}
	cfg, err := a.loadConfig()
	if err != nil {
		a.errorf("run", err)
		return ExitError
	}
	log := newLogger(a.io.Stderr, *debug)
	d, err := daemon.New(cfg, log, Version)
	if err != nil {
		a.errorf("run", err)
		return ExitError
	}
	if err := d.Run(ctx); err != nil {
		a.errorf("run", err)
		return ExitError
	}
	return ExitOK
}

// newLogger logs text for a person at a terminal and JSON otherwise
// (journald, docker logs, files).
func newLogger(w io.Writer, debug bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts))
		}
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
