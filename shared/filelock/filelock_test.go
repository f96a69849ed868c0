package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteHolder([]byte("pid 1\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrHeld) {
		t.Fatalf("second TryLock = %v, want ErrHeld", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "pid 1\n" {
		t.Errorf("holder note %q", data)
	}
	l.Unlock()
	l.Unlock() // idempotent
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Errorf("note %q left after Unlock", data)
	}
	l2, err := Lock(path)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l2.Unlock()
	if _, err := TryLock(filepath.Join(t.TempDir(), "missing", "x.lock")); err == nil || errors.Is(err, ErrHeld) {
		t.Errorf("TryLock in a missing dir = %v, want an open error", err)
	}
}
