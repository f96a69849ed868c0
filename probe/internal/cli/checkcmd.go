package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"backstop/probe/internal/check"
	"backstop/probe/internal/config"
	"backstop/shared/clip"
)

func (a *app) check(ctx context.Context, args []string) int {
	fs := a.newFlags("check", "check [--json] [--only NAME,...]")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	only := fs.String("only", "", "run only these checks (comma-separated names)")
	if code, done := a.parse(fs, args, int(check.Unknown)); done {
		return code
	}
	cfg, err := a.loadConfig()
	if err != nil {
		a.errorf("check", err)
		return int(check.Unknown)
	}
	checks, err := selectChecks(cfg.Checks, *only)
	if err != nil {
		a.errorf("check", err)
		return int(check.Unknown)
	}
	entries, err := check.Build(checks)
	if err != nil {
		a.errorf("check", err)
		return int(check.Unknown)
	}
	results := check.Run(ctx, entries)
	worst := check.Worst(results)
	if *asJSON {
		writeJSON(a.io.Stdout, cfg.Host, worst, results)
	} else {
		writeTable(a.io.Stdout, results)
		fmt.Fprintf(a.io.Stdout, "\n%s: %s (%d checks)\n", cfg.Host, strings.ToUpper(worst.String()), len(results))
	}
	return int(worst)
}

// selectChecks keeps the named checks, in config order; an unknown name is
// an error listing the names there are.
func selectChecks(all []config.Check, only string) ([]config.Check, error) {
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	byName := map[string]bool{}
	var names []string
	for _, c := range all {
		byName[c.Name] = true
		names = append(names, c.Name)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !byName[n] {
			return nil, fmt.Errorf("--only: no check named %q (have %s)", n, strings.Join(names, ", "))
		}
		want[n] = true
	}
	var out []config.Check
	for _, c := range all {
		if want[c.Name] {
			out = append(out, c)
		}
	}
	return out, nil
}

// Report is the --json document of `probe check`.
type Report struct {
	Host     string         `json:"host"`
	Status   check.Status   `json:"status"`
	ExitCode int            `json:"exit_code"`
	At       time.Time      `json:"at"`
	Checks   []check.Result `json:"checks"`
}

func writeJSON(w io.Writer, host string, worst check.Status, results []check.Result) {
	for i := range results {
		delete(results[i].Observed, "stack") // bug detail belongs in the log, not in scripts' input
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(Report{Host: host, Status: worst, ExitCode: int(worst), At: time.Now().UTC(), Checks: results})
}

func writeTable(w io.Writer, results []check.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tVALUE\tLATENCY\tMESSAGE")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, strings.ToUpper(r.Status.String()), r.Value, fmtLatency(r.Latency), clip.Line(r.Message, 160))
	}
	tw.Flush()
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
}
