package cmdpoll

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"backstop/shared/atomicfile"
)

// Ledger states of a command id.
const (
	seenClaiming = "claiming" // about to claim; never ran (a crash here is retried)
	seenClaimed  = "claimed"  // this probe claimed it: it ran, or runs
	seenLost     = "lost"     // another probe claimed it first
	seenRejected = "rejected" // verified and refused
	seenForeign  = "foreign"  // claimed by a claim this probe did not write; alerted, not run
)

// entry is what the ledger knows of one command id.
type entry struct {
	State  string    `json:"state"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"` // rejected: why
	Run    string    `json:"run,omitempty"`    // claiming/claimed: the run id written in the claim
	// Replayed is set once a replay of this id was alerted, so a command
	// object left in the store is not re-alerted every poll.
	Replayed bool `json:"replayed,omitempty"`
}

// ledger is the local record of every command id this probe has seen. It
// lives on the host, out of reach of the store's credentials, so a replayed
// id is refused even when its claim object was deleted.
type ledger struct {
	Version  int               `json:"version"`
	Commands map[string]*entry `json:"commands"`
}

// loadLedger reads path; a missing file is an empty ledger. A corrupt one
// is an error: the poller then runs nothing (fail closed).
func loadLedger(path string) (*ledger, error) {
	l := &ledger{Version: 1, Commands: map[string]*entry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read command ledger: %w", err)
	}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("read command ledger %s: %w (fix or remove it; no command runs until then)", path, err)
	}
	if l.Commands == nil {
		l.Commands = map[string]*entry{}
	}
	return l, nil
}

// save replaces the file atomically (temp file, fsync, rename).
func (l *ledger) save(path string) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode command ledger: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write command ledger: %w", err)
	}
	return nil
}

// prune drops the entries recorded before horizon. A command's lifetime
// is at most command.MaxLifetime, so a pruned id's command has expired and
// is refused as expired; the store's ledger (command.LedgerKey) still
// refuses one this host ran. Without pruning the file grows forever.
func (l *ledger) prune(horizon time.Time) {
	for id, e := range l.Commands {
		if e.At.Before(horizon) {
			delete(l.Commands, id)
		}
	}
}
