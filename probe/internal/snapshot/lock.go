package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"backstop/shared/filelock"
)

// LockFile is the name of the lock file in the backup directory.
const LockFile = ".lock"

// ErrLocked is matched (errors.Is) by the error Lock returns while another
// process (or another Lock in this one) holds the lock.
var ErrLocked = errors.New("backup directory is locked")

// LockedError says who holds the lock, as far as its file tells: the
// holder writes its pid, operation and start time after taking the lock, so
// a reader racing with that write may see them empty.
type LockedError struct {
	Dir     string
	PID     int
	Op      string // backup, restore, drill, verify, push, ...
	Started time.Time
}

func (e *LockedError) Error() string {
	op := e.Op
	if op == "" {
		op = "backup or restore"
	}
	if e.PID == 0 {
		return fmt.Sprintf("another %s is running (lock %s)", op, filepath.Join(e.Dir, LockFile))
	}
	started := e.Started.Local()
	layout := "15:04:05"
	if y, m, d := started.Date(); y != time.Now().Year() || m != time.Now().Month() || d != time.Now().Day() {
		layout = "2006-01-02 15:04:05"
	}
	return fmt.Sprintf("another %s is running (pid %d, started %s)", op, e.PID, started.Format(layout))
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

type lockInfo struct {
	PID     int       `json:"pid"`
	Op      string    `json:"op"`
	Started time.Time `json:"started"`
}

// Lock takes the one lock of the backup directory dir (created 0700 if
// missing) for op, so that backups, restores, drills and other writers of
// the directory never overlap. It does not wait: if the lock is held it
// returns a *LockedError (errors.Is ErrLocked) naming the holder.
//
// The lock is flock(2) LOCK_EX on dir/.lock, held by an open descriptor
// (close-on-exec, so child processes such as pg_dump do not inherit it).
// The kernel drops it when the holder exits or is killed, so a lock left
// by a dead process is simply taken over; there is no stale-lock cleanup.
// The file is never removed (removing it would let two processes lock two
// different files); its content, the holder's pid/op/start, is only for
// the message. unlock releases the lock and may be called more than once.
func Lock(dir, op string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	l, err := filelock.TryLock(path)
	if errors.Is(err, filelock.ErrHeld) {
		le := &LockedError{Dir: dir}
		var info lockInfo
		if data, rerr := os.ReadFile(path); rerr == nil && json.Unmarshal(data, &info) == nil {
			le.PID, le.Op, le.Started = info.PID, info.Op, info.Started
		}
		return nil, le
	}
	if err != nil {
		return nil, err
	}
	// The holder note is only for the message above: once the flock is
	// held, failing to write it (a full backup disk) must not stop the
	// restore or revert that the full disk makes urgent.
	data, _ := json.Marshal(lockInfo{PID: os.Getpid(), Op: op, Started: time.Now()})
	if err := l.WriteHolder(append(data, '\n')); err != nil {
		slog.Warn("lock held, but its holder note was not written; continuing", "op", op, "err", err)
	}
	return l.Unlock, nil
}
