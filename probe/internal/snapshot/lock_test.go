package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const lockHelperEnv = "BACKSTOP_LOCK_HELPER_DIR"

// TestLockHelperProcess is not a test: run by TestLockHeldByAnotherProcess
// as a child, it takes the lock, says so and waits to be killed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockHelperEnv)
	if dir == "" {
		return
	}
	if _, err := Lock(dir, "restore"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute) // killed long before
	os.Exit(0)
}

func TestLockInOneProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups") // created by Lock
	unlock, err := Lock(dir, "backup")
	if err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, LockFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", fi, err)
	}

	// A second Lock opens its own descriptor: flock conflicts even within
	// one process.
	_, err = Lock(dir, "drill")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || le.Op != "backup" || time.Since(le.Started) > time.Minute {
		t.Fatalf("holder = %+v, want pid %d op backup started just now", le, os.Getpid())
	}
	want := fmt.Sprintf("another backup is running (pid %d, started %s)", os.Getpid(), le.Started.Local().Format("15:04:05"))
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	unlock()
	unlock() // idempotent
	unlock2, err := Lock(dir, "restore")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	defer unlock2()
	data, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if !strings.Contains(string(data), `"op":"restore"`) {
		t.Errorf("lock file %q does not name the new holder", data)
	}
}

func TestLockedErrorMessage(t *testing.T) {
	today := time.Now().Truncate(time.Second)
	old := time.Date(2024, 12, 31, 2, 0, 3, 0, time.Local)
	for _, tc := range []struct {
		name string
		err  LockedError
		want string
	}{
		{"today", LockedError{PID: 1234, Op: "backup", Started: today}, "another backup is running (pid 1234, started " + today.Format("15:04:05") + ")"},
		{"another day", LockedError{PID: 99, Op: "restore", Started: old}, "another restore is running (pid 99, started 2024-12-31 02:00:03)"},
		{"holder not written yet", LockedError{Dir: "/var/backups/psyfit"}, "another backup or restore is running (lock /var/backups/psyfit/.lock)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

func TestLockHeldByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	_, err = Lock(dir, "backup")
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("Lock while the child holds it = %v, want a LockedError", err)
	}
	if le.PID != cmd.Process.Pid || le.Op != "restore" {
		t.Fatalf("holder %+v, want pid %d op restore", le, cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("another restore is running (pid %d, started ", cmd.Process.Pid)) {
		t.Errorf("message %q does not name the child", err)
	}

	// kill -9: no unlock runs, the kernel releases the lock.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	unlock, err := Lock(dir, "backup")
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	unlock()
}

func TestLockErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Lock(filepath.Join(file, "sub"), "backup")
	if err == nil || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "lock "+filepath.Join(file, "sub")) {
		t.Fatalf("Lock under a file = %v, want a plain error naming the dir", err)
	}
}
