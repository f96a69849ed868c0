package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	code := flag.Int("code", envInt("EXIT_CODE", 1), "exit code")
	after := flag.Duration("after", envDuration("EXIT_AFTER", 0), "delay before exiting")
	flag.Parse()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("exiter: exiting with code %d after %s\n", *code, *after)
	select {
	case <-time.After(*after):
	case <-sig:
	}
	os.Exit(*code)
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}
