package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"math/rand/v2"

	"github.com/jackc/pgx/v5"
)

// Report is what writeloop prints when it is stopped.
type Report struct {
	Attempts  int   `json:"attempts"`
	OK        int   `json:"ok"`
	Failures  int   `json:"failures"`
	RunningMS int64 `json:"running_ms"`
	// LongestFailureMS is the longest window of consecutive failed attempts.
	LongestFailureMS   int64     `json:"longest_failure_ms"`
	LongestFailureFrom time.Time `json:"longest_failure_from,omitzero"`
	LongestFailureTo   time.Time `json:"longest_failure_to,omitzero"`
	// LongestGapMS is the longest time between two committed inserts (the
	// first one counts from the start).
	LongestGapMS   int64          `json:"longest_gap_ms"`
	LongestGapFrom time.Time      `json:"longest_gap_from,omitzero"`
	LongestGapTo   time.Time      `json:"longest_gap_to,omitzero"`
	Errors         map[string]int `json:"errors,omitempty"`
}

func main() {
	sql := flag.String("sql", "INSERT INTO bench_writes DEFAULT VALUES", "the statement of one write; it must write a row")
	keys := flag.Int64("keys", 0, "when > 0, $1 of -sql is a random key in 1..keys")
	timeout := flag.Duration("timeout", time.Second, "bound of one attempt (connect, insert, close)")
	pause := flag.Duration("pause", 10*time.Millisecond, "pause between attempts")
	flag.Parse()
	dsn := os.Getenv("WRITELOOP_DSN")
	if dsn == "" {
		fmt.Fprintln(os.Stderr, "writeloop: WRITELOOP_DSN is not set")
		os.Exit(2)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "writeloop: WRITELOOP_DSN is not a valid connection string")
		os.Exit(2)
	}
	cfg.ConnectTimeout = 200 * time.Millisecond
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "backstop bench writeloop"

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep := loop(ctx, cfg, *sql, *keys, *timeout, *pause)
	json.NewEncoder(os.Stdout).Encode(rep)
}

func loop(ctx context.Context, cfg *pgx.ConnConfig, sql string, keys int64, timeout, pause time.Duration) Report {
	rep := Report{Errors: map[string]int{}}
	start := time.Now()
	lastCommit := start
	var failFrom time.Time // start of the current run of failures; zero = none
	announced := false
	for ctx.Err() == nil {
		t0 := time.Now()
		var args []any
		if keys > 0 {
			args = append(args, 1+rand.Int64N(keys))
		}
		err := attempt(ctx, cfg, sql, args, timeout)
		if ctx.Err() != nil {
			break // stopped mid-attempt: neither a success nor a failure
		}
		rep.Attempts++
		if err != nil {
			rep.Failures++
			if failFrom.IsZero() {
				failFrom = t0
			}
			msg := oneLine(err.Error())
			if _, ok := rep.Errors[msg]; ok || len(rep.Errors) < 20 {
				rep.Errors[msg]++
			}
		} else {
			rep.OK++
			now := time.Now()
			if !failFrom.IsZero() {
				rep.failure(failFrom, t0)
				failFrom = time.Time{}
			}
			if gap := now.Sub(lastCommit); gap.Milliseconds() > rep.LongestGapMS {
				rep.LongestGapMS, rep.LongestGapFrom, rep.LongestGapTo = gap.Milliseconds(), lastCommit, now
			}
			lastCommit = now
			if !announced {
				fmt.Fprintln(os.Stderr, "writeloop: first insert committed")
				announced = true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	end := time.Now()
	if !failFrom.IsZero() {
		rep.failure(failFrom, end)
	}
	if gap := end.Sub(lastCommit); gap.Milliseconds() > rep.LongestGapMS {
		rep.LongestGapMS, rep.LongestGapFrom, rep.LongestGapTo = gap.Milliseconds(), lastCommit, end
	}
	rep.RunningMS = end.Sub(start).Milliseconds()
	return rep
}

func (r *Report) failure(from, to time.Time) {
	if d := to.Sub(from).Milliseconds(); d > r.LongestFailureMS || r.LongestFailureFrom.IsZero() {
		r.LongestFailureMS, r.LongestFailureFrom, r.LongestFailureTo = d, from, to
	}
}

// attempt connects, runs sql (which must write a row) and closes, within
// timeout.
func attempt(ctx context.Context, cfg *pgx.ConnConfig, sql string, args []any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("write: no row written (%s)", tag)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}
