package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"backstop/probe/internal/config"
)

// Exit codes of every command but check (which uses 0-3, see checkcmd.go).
const (
	ExitOK    = 0
	ExitError = 1 // the command failed; the message says why
	ExitUsage = 2 // bad flags or arguments
)

// Version is set at build time (-ldflags "-X backstop/probe/internal/cli.Version=...").
var Version = "dev"

// IO is what a command may touch of its process.
type IO struct {
	Stdin          io.Reader // nil: no input (a restore without --yes refuses)
	Stdout, Stderr io.Writer
	Env            config.Env
}

const defaultConfig = "/etc/backstop/probe.yaml"

const usage = `probe — backstop's host agent: checks the app, its containers, disk, TLS,
PostgreSQL and Redis, raises alerts, and takes verified snapshots off-site.

Usage:
  probe [--config FILE] check [--json] [--only NAME,...]   one round of checks
  probe [--config FILE] run [--debug]                        daemon: scheduled checks, alerts, /metrics
  probe [--config FILE] config check                         validate the config file
  probe [--config FILE] backup [--notes TEXT] [--no-upload] [--json]   take a snapshot; print its id
  probe [--config FILE] list [--json] [--remote]             snapshots, newest first
  probe [--config FILE] verify [ID | --all] [--json]         checksums and archive structure
  probe [--config FILE] push [ID]                            upload snapshots not yet off-site
  probe [--config FILE] restore (--latest | --snapshot ID) [--only db,data,code] [--dry-run] [--reason TEXT] [--yes] [--allow-unsigned] [--json]
  probe [--config FILE] revert TXN                           undo a restore from its pre-restore state
  probe [--config FILE] canary [--timeout 90s] [--interval 10s]   after a deploy: wait for readiness, roll back if it never comes
  probe [--config FILE] drill [--snapshot ID] [--allow-unsigned]   restore into a scratch database, validate, drop
  probe keygen --signing [--out FILE]                        make an Ed25519 snapshot signing key (0600); print its public key
  probe version | --version

--config defaults to $BACKSTOP_CONFIG, else ` + defaultConfig + `.

Exit codes: check: 0 ok, 1 warning, 2 critical, 3 unknown (also for a bad
config or bad flags). Other commands: 0 done, 1 failed, 2 bad usage,
75 another backup or restore holds the lock (try again later). canary: 0
ready, 1 not ready (rolled back, or only alerted when rollback is off).
Run 'probe COMMAND --help' for a command's flags.
`

// Main runs the probe with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdio IO) int {
	if stdio.Env == nil {
		stdio.Env = func(string) (string, bool) { return "", false }
	}
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stdio.Stderr)
	fs.Usage = func() { fmt.Fprint(stdio.Stderr, usage) }
	cfgPath := fs.String("config", "", "config file")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdio.Stdout, usage)
			return ExitOK
		}
		return ExitUsage
	}
	if *cfgPath == "" {
		if v, ok := stdio.Env("BACKSTOP_CONFIG"); ok && v != "" {
			*cfgPath = v
		} else {
			*cfgPath = defaultConfig
		}
	}
	rest := fs.Args()
	if *showVersion {
		rest = []string{"version"}
	}
	if len(rest) == 0 {
		fmt.Fprint(stdio.Stderr, usage)
		return ExitUsage
	}
	a := &app{io: stdio, cfgPath: *cfgPath}
	switch rest[0] {
	case "check":
		return a.check(ctx, rest[1:])
	case "run":
		return a.run(ctx, rest[1:])
	case "backup":
		return a.backup(ctx, rest[1:])
	case "list":
		return a.list(ctx, rest[1:])
	case "verify":
		return a.verify(ctx, rest[1:])
	case "push":
		return a.push(ctx, rest[1:])
	case "restore":
		return a.restore(ctx, rest[1:])
	case "revert":
		return a.revert(ctx, rest[1:])
	case "canary":
		return a.canary(ctx, rest[1:])
	case "drill":
		return a.drill(ctx, rest[1:])
	case "keygen":
		return a.keygen(ctx, rest[1:])
	case "config":
		if len(rest) < 2 || rest[1] != "check" {
			fmt.Fprintln(stdio.Stderr, "probe config: the only subcommand is 'check' (probe config check)")
			return ExitUsage
		}
		return a.configCheck(ctx, rest[2:])
	case "version":
		fmt.Fprintf(stdio.Stdout, "probe %s\n", Version)
		return ExitOK
	case "help":
		fmt.Fprint(stdio.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(stdio.Stderr, "probe: unknown command %q\n\n%s", rest[0], usage)
		return ExitUsage
	}
}

type app struct {
	io      IO
	cfgPath string
}

func (a *app) loadConfig() (*config.Config, error) {
	return config.Load(a.cfgPath, a.io.Env)
}

// errorf prints one line for the operator, "probe <cmd>: <message>".
func (a *app) errorf(cmd string, err error) {
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		// every problem on its own line, indented under the command
		msg = "\n  " + strings.ReplaceAll(msg, "\n", "\n  ")
	}
	fmt.Fprintf(a.io.Stderr, "probe %s: %s\n", cmd, msg)
}

// newFlags is a FlagSet whose -h prints the command's own usage and flags.
func (a *app) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("probe "+name, flag.ContinueOnError)
	fs.SetOutput(a.io.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.io.Stderr, "Usage: probe [--config FILE] %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; done says whether the command should return code now.
func (a *app) parse(fs *flag.FlagSet, args []string, usageCode int) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, true
		}
		return usageCode, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(a.io.Stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return usageCode, true
	}
	return 0, false
}
