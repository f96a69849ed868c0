// Package daemon is `probe run`: check rounds on gocron schedules, the alert
// state machine and outbox, the heartbeat, and /metrics and /healthz.
package daemon
