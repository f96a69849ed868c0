package cli

import (
	"context"
	"fmt"

	"backstop/probe/internal/check"
	"backstop/probe/internal/config"
)

// configCheck validates the file and builds every check (which parses its
// conditions), printing each problem with the field at fault.
func (a *app) configCheck(_ context.Context, args []string) int {
	fs := a.newFlags("config check", "config check")
	if code, done := a.parse(fs, args, ExitUsage); done {
		return code
	}
	cfg, err := a.loadConfig()
	if err != nil {
		a.errorf("config check", err)
		return ExitError
	}
	if _, err := check.Build(cfg.Checks); err != nil {
		a.errorf("config check", fmt.Errorf("config %s: %w", a.cfgPath, err))
		return ExitError
	}
	for _, w := range config.Warnings(cfg, a.cfgPath) {
		fmt.Fprintf(a.io.Stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(a.io.Stdout, "%s: ok (host %s, %d checks, alerts via %s)\n", a.cfgPath, cfg.Host, len(cfg.Checks), cfg.Alerts.Via)
	return ExitOK
}
