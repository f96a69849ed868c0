// Package alert defines the alert event contract and the per-check state
// machine (thresholds, incidents, reminders) that the probe and the uptime
// function share.
package alert
