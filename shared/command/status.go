package command

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Object keys under a host's prefix, relative to the store's root:
//
//	<host>/commands/<id>.json          the signed command (restore function, If-None-Match: *)
//	<host>/commands/<id>.claim         the probe that runs it (If-None-Match: *: one probe wins)
//	<host>/commands/<id>.status.json   the latest Status, rewritten at each step
//	<host>/commands/<id>.result.json   the Result, written once at the end
const (
	SuffixCommand = ".json"
	SuffixClaim   = ".claim"
	SuffixStatus  = ".status.json"
	SuffixResult  = ".result.json"
)

// Prefix is where host's commands live: "<host>/commands/".
func Prefix(host string) string { return host + "/commands/" }

// Key is the command object of id: "<host>/commands/<id>.json".
func Key(host, id string) string { return Prefix(host) + id + SuffixCommand }

// ClaimKey is "<host>/commands/<id>.claim".
func ClaimKey(host, id string) string { return Prefix(host) + id + SuffixClaim }

// StatusKey is "<host>/commands/<id>.status.json".
func StatusKey(host, id string) string { return Prefix(host) + id + SuffixStatus }

// ResultKey is "<host>/commands/<id>.result.json".
func ResultKey(host, id string) string { return Prefix(host) + id + SuffixResult }

// LedgerKey is the store's ledger entry of a command id this host ran:
// written once, before the run, outside commands/ so that listing commands
// does not grow with it. A rebuilt host whose local ledger is gone still
// refuses an id it finds here.
func LedgerKey(host, id string) string { return host + "/command-ledger/" + id }

// CommandID returns the id part of a command object key under host's
// prefix ("h/commands/X.json" -> "X", true), and false for the probe's
// own objects (.claim, .status.json, .result.json) and anything else. The
// id is not validated: a badly named command is still a command to reject.
func CommandID(host, key string) (string, bool) {
	name, ok := strings.CutPrefix(key, Prefix(host))
	if !ok || strings.Contains(name, "/") || !strings.HasSuffix(name, SuffixCommand) ||
		strings.HasSuffix(name, SuffixStatus) || strings.HasSuffix(name, SuffixResult) {
		return "", false
	}
	id := strings.TrimSuffix(name, SuffixCommand)
	return id, id != ""
}

// State is where a command stands.
type State string

const (
	StateClaimed   State = "claimed"   // this probe won the claim; nothing changed yet
	StateRunning   State = "running"   // the restore engine runs
	StateSucceeded State = "succeeded" // done; Result has the details
	StateFailed    State = "failed"    // the restore failed (and was reverted, see Result)
	StateRejected  State = "rejected"  // never run: forged, expired, replayed, wrong host or malformed
)

// Done reports whether s is final.
func (s State) Done() bool {
	return s == StateSucceeded || s == StateFailed || s == StateRejected
}

// Status is <id>.status.json: the probe rewrites it at each step, so the
// restore function's status action shows the latest.
type Status struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	State    State     `json:"state"`
	Step     string    `json:"step,omitempty"`     // claimed | restore | done | the check that rejected it
	Message  string    `json:"message"`            // for people: what happens or happened, the reason of a rejection
	Reason   string    `json:"reason,omitempty"`   // rejected: forged | expired | replayed | wrong-host | malformed
	At       time.Time `json:"at"`                 // when this status was written
	Snapshot string    `json:"snapshot,omitempty"` // as requested, then as resolved
	Txn      string    `json:"txn,omitempty"`      // the restore transaction (probe revert TXN)
	DryRun   bool      `json:"dry_run,omitempty"`
	Probe    string    `json:"probe,omitempty"` // which probe wrote it: "<host> pid <n>"
	// Signature is the HMAC under the command key (SignStatus): the
	// restore function ignores a status that does not verify.
	Signature string `json:"signature,omitempty"`
}

// Step is one step of a restore as the result reports it.
type Step struct {
	Step       string `json:"step"`
	Status     string `json:"status"` // ok | failed | reverted
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
}

// Result is <id>.result.json, written once when the command is done.
type Result struct {
	ID            string    `json:"id"`
	Host          string    `json:"host"`
	State         State     `json:"state"` // succeeded | failed
	Message       string    `json:"message"`
	Snapshot      string    `json:"snapshot"` // the resolved snapshot id ("" when resolving failed)
	Parts         []string  `json:"parts"`
	DryRun        bool      `json:"dry_run"`
	Reason        string    `json:"reason"`
	RequestedBy   string    `json:"requested_by"`
	Txn           string    `json:"txn,omitempty"`
	PreSnapshot   string    `json:"pre_snapshot,omitempty"`
	Plan          []string  `json:"plan"`
	Steps         []Step    `json:"steps"`
	Reverted      bool      `json:"reverted"`
	UnavailableMS int64     `json:"db_unavailable_ms,omitempty"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at"`
	DurationMS    int64     `json:"duration_ms"`
	// Signature is the HMAC under the command key (SignResult): the
	// restore function ignores a result that does not verify.
	Signature string `json:"signature,omitempty"`
}

// Rejection reasons (Status.Reason), one per sentinel plus replay.
const (
	ReasonForged    = "forged"
	ReasonExpired   = "expired"
	ReasonReplayed  = "replayed"
	ReasonWrongHost = "wrong-host"
	ReasonMalformed = "malformed"
)

// ReasonOf names the rejection reason of a Verify or Decode error
// ("" when err matches no sentinel).
func ReasonOf(err error) string {
	switch {
	case errors.Is(err, ErrForged):
		return ReasonForged
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrWrongHost):
		return ReasonWrongHost
	case errors.Is(err, ErrMalformed):
		return ReasonMalformed
	}
	return ""
}

// String is a one-line summary of the command for logs and mails.
func (c Command) String() string {
	mode := ""
	if c.DryRun {
		mode = " (dry run)"
	}
	return fmt.Sprintf("restore %s of snapshot %s on %s%s, requested by %s: %s",
		strings.Join(c.Parts, ","), c.Snapshot, c.Host, mode, c.RequestedBy, c.Reason)
}
