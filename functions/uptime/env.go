package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// envSettings is what the environment says beside the handler's Config.
type envSettings struct {
	PathStyle bool // S3_PATH_STYLE=true: path-style S3 addressing (S3-compatible servers)
}

// configFromEnv reads the function's environment:
//
//	STATE_BUCKET   bucket of uptime/state.json and uptime/events/ (required)
//	STATE_KEY      default uptime/state.json
//	EVENTS_PREFIX  default uptime/events/
//	TARGETS        inline targets JSON (the template parameter), or else
//	TARGETS_KEY    the targets object, e.g. uptime/targets.json, in
//	TARGETS_BUCKET (default STATE_BUCKET)
//	CONCURRENCY    checks in flight, default 128
//	RETRY_PAUSE    pause before the retry of a failure, default 2s ("0s": none)
//	RESERVE        time kept back from the checks to save the state, default 3s
//	INTERVAL       the schedule's rate, default 1m
//	S3_PATH_STYLE  true for path-style addressing (the S3 endpoint itself
//	               comes from the SDK's AWS_ENDPOINT_URL_S3)
func configFromEnv(getenv func(string) string) (Config, envSettings, error) {
	var env envSettings
	cfg := Config{
		StateBucket:   strings.TrimSpace(getenv("STATE_BUCKET")),
		StateKey:      strings.TrimSpace(getenv("STATE_KEY")),
		EventsPrefix:  strings.TrimSpace(getenv("EVENTS_PREFIX")),
		TargetsBucket: strings.TrimSpace(getenv("TARGETS_BUCKET")),
		TargetsKey:    strings.TrimSpace(getenv("TARGETS_KEY")),
	}
	if cfg.StateBucket == "" {
		return cfg, env, fmt.Errorf("STATE_BUCKET: required")
	}
	if inline := strings.TrimSpace(getenv("TARGETS")); inline != "" {
		if cfg.TargetsKey != "" {
			return cfg, env, fmt.Errorf("TARGETS and TARGETS_KEY: set one, not both")
		}
		cfg.TargetsInline = []byte(inline)
	} else if cfg.TargetsKey == "" {
		return cfg, env, fmt.Errorf("TARGETS or TARGETS_KEY: one is required")
	}
	if cfg.TargetsBucket == "" {
		cfg.TargetsBucket = cfg.StateBucket
	}
	if s := strings.TrimSpace(getenv("CONCURRENCY")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1024 {
			return cfg, env, fmt.Errorf("CONCURRENCY: must be 1..1024, not %q", s)
		}
		cfg.Concurrency = n
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
		zero time.Duration // what "0s" means
	}{
		{"RETRY_PAUSE", &cfg.RetryPause, -1},
		{"RESERVE", &cfg.Reserve, 0},
		{"INTERVAL", &cfg.Interval, 0},
	} {
		s := strings.TrimSpace(getenv(d.name))
		if s == "" {
			continue
		}
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return cfg, env, fmt.Errorf("%s: not a duration (like 2s, 1m): %q", d.name, s)
		}
		if v == 0 {
			v = d.zero
		}
		*d.to = v
	}
	if s := strings.TrimSpace(getenv("S3_PATH_STYLE")); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return cfg, env, fmt.Errorf("S3_PATH_STYLE: want true or false, not %q", s)
		}
		env.PathStyle = b
	}
	return cfg, env, nil
}
