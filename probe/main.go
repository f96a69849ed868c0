// Command probe is backstop's host agent: local checks, alerts, and (in
// later releases) snapshots, restores and canary rollback.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // a static binary still knows Asia/Tokyo on a bare host

	"backstop/probe/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Env: os.LookupEnv})
	stop()
	os.Exit(code)
}
