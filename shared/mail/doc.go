// Package mail renders alert events as e-mails (English or Japanese) and
// sends them through SendGrid with bounded, deadline-aware retries.
package mail
