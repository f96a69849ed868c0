package check

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"backstop/probe/internal/config"
)

// Entry is one configured check ready to run. Checkers keep state between
// rounds (the container check remembers restart counts), so the daemon builds
// entries once and reuses them.
type Entry struct {
	Config  config.Check
	Checker Checker
}

// Build makes an Entry for each config entry, in order. Errors name the
// check's position and field, like config errors do.
func Build(checks []config.Check) ([]Entry, error) {
	out := make([]Entry, 0, len(checks))
	for i, c := range checks {
		ch, err := New(c)
		if err != nil {
			return nil, fmt.Errorf("checks[%d]: %w", i, err)
		}
		out = append(out, Entry{Config: c, Checker: ch})
	}
	return out, nil
}

// Run runs the entries concurrently, each under its own timeout, and returns
// their results in entry order. A checker that panics or overruns its timeout
// by more than a grace period yields Unknown with the cause; Run itself never
// blocks past the longest timeout plus that grace. Cancelling ctx ends the
// round: unfinished checks come back Unknown ("cancelled").
func Run(ctx context.Context, entries []Entry) []Result {
	results := make([]Result, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runOne(ctx, e)
		}()
	}
	wg.Wait()
	return results
}

// grace is how long a checker may overrun its timeout before it is abandoned.
const grace = 2 * time.Second

func runOne(ctx context.Context, e Entry) Result {
	timeout := e.Config.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	done := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Result{Status: Unknown, Message: fmt.Sprintf("check crashed: %v (a bug; stack in the log)", p), Observed: map[string]any{"stack": string(debug.Stack())}}
			}
		}()
		done <- e.Checker.Check(cctx)
	}()
	var r Result
	select {
	case r = <-done:
	case <-time.After(timeout + grace):
		r = Result{Status: Unknown, Message: fmt.Sprintf("check did not return within its timeout (%s)", timeout)}
	case <-ctx.Done():
		r = Result{Status: Unknown, Message: "cancelled: " + context.Cause(ctx).Error()}
	}
	r.Name, r.Type = e.Config.Name, e.Config.Type
	if r.Latency == 0 {
		r.Latency = time.Since(start)
	}
	if r.At.IsZero() {
		r.At = start
	}
	if r.Message == "" {
		r.Message = r.Status.String()
	}
	return r
}

// MarshalJSON writes latency in milliseconds, the unit people read.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		LatencyMS float64 `json:"latency_ms"`
	}{plain(r), float64(r.Latency.Microseconds()) / 1000})
}
