package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
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
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			le := &LockedError{Dir: dir}
			var info lockInfo
			if data, rerr := os.ReadFile(path); rerr == nil && json.Unmarshal(data, &info) == nil {
				le.PID, le.Op, le.Started = info.PID, info.Op, info.Started
			}
			return nil, le
		}
		return nil, fmt.Errorf("lock %s: flock: %w", path, err)
	}
	data, _ := json.Marshal(lockInfo{PID: os.Getpid(), Op: op, Started: time.Now()})
	if err := writeHolder(f, append(data, '\n')); err != nil {
		flock(f, syscall.LOCK_UN)
		f.Close()
		return nil, fmt.Errorf("lock %s: write holder: %w", path, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Truncate(0) // the next reader sees no stale holder
			flock(f, syscall.LOCK_UN)
			f.Close()
		})
	}, nil
}

func writeHolder(f *os.File, data []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(data, 0)
	return err
}

// flock retries on EINTR.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}
