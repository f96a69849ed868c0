package filelock

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// ErrHeld is returned (wrapped) by TryLock while another descriptor, in
// this process or another, holds the lock.
var ErrHeld = errors.New("lock held")

// File is a held lock. The kernel drops it when the holder exits or is
// killed, so a lock left by a dead process is simply taken over.
type File struct {
	f    *os.File
	once sync.Once
}

// TryLock takes an exclusive flock on path (created 0600 if missing)
// without waiting; while it is held elsewhere it returns an error matching
// ErrHeld. The descriptor is close-on-exec, so children (pg_dump) do not
// inherit the lock. The file is never removed: removing it would let two
// processes lock two different files.
func TryLock(path string) (*File, error) {
	return lock(path, syscall.LOCK_EX|syscall.LOCK_NB)
}

// Lock is TryLock that waits for the lock.
func Lock(path string) (*File, error) {
	return lock(path, syscall.LOCK_EX)
}

func lock(path string, how int) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("lock %s: flock: %w", path, err)
	}
	return &File{f: f}, nil
}

// WriteHolder replaces the file's content with note (who holds the lock,
// for the message a waiting process prints). Its error never affects the
// lock, which is already held: callers report it as a warning, so a full
// disk cannot stop a restore.
func (l *File) WriteHolder(note []byte) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write lock holder %s: %w", l.f.Name(), err)
	}
	if _, err := l.f.WriteAt(note, 0); err != nil {
		l.f.Truncate(0) // no half-written note
		return fmt.Errorf("write lock holder %s: %w", l.f.Name(), err)
	}
	return nil
}

// Unlock empties the holder note and releases the lock; it may be called
// more than once.
func (l *File) Unlock() {
	l.once.Do(func() {
		l.f.Truncate(0) // the next reader sees no stale holder
		flock(l.f, syscall.LOCK_UN)
		l.f.Close()
	})
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
