package snapshot

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// fillToENOSPC writes into dir until its filesystem refuses a single byte.
func fillToENOSPC(t *testing.T, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "fill-*")
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for len(buf) > 0 {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			buf = buf[:len(buf)/2]
		}
	}
	if u := testenv.StatUsage(t, dir); u.FreeBytes != 0 {
		t.Fatalf("fill %s: %d bytes still free", dir, u.FreeBytes)
	}
}

// TestLockFullDisk: with the backup filesystem at 100 % (a real tmpfs) the
// lock is still taken, still excludes a second holder, and the holder note
// that could not be written is a warning, not an error.
func TestLockFullDisk(t *testing.T) {
	mnt := testenv.Tmpfs(t, "1m")
	dir := filepath.Join(mnt, "backups")
	unlock, err := Lock(dir, "backup") // the lock file exists, as on any used install
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	fillToENOSPC(t, mnt)

	var logged bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	unlock, err = Lock(dir, "restore")
	if err != nil {
		t.Fatalf("Lock on a full disk = %v, want it held", err)
	}
	defer unlock()
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "no space left on device") {
		t.Errorf("log = %q, want a warning naming the full disk", logged.String())
	}
	_, err = Lock(dir, "drill")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock on a full disk = %v, want ErrLocked", err)
	}
	if want := "another backup or restore is running (lock " + filepath.Join(dir, LockFile) + ")"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// TestVerifyFullDisk: a backup on a filesystem that has since filled up
// can still be verified (the lock no longer needs a byte of space).
func TestVerifyFullDisk(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := smallDB(t, pg, "vfull")
	mnt := testenv.Tmpfs(t, "8m")
	e, _ := hostEngine(t, filepath.Join(mnt, "backups"), dsn, randomDataDir(t, 64<<10))
	res, err := e.Backup(t.Context(), Options{})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	fillToENOSPC(t, mnt)
	vr, err := e.Verify(t.Context(), res.Manifest.ID)
	if err != nil || !vr.OK {
		t.Fatalf("Verify on a full disk = %+v, %v; want the snapshot verified", vr, err)
	}
	if !strings.Contains(vr.NotRecorded, "no space left on device") {
		t.Errorf("NotRecorded = %q, want the full disk named", vr.NotRecorded)
	}
	snaps, err := e.List()
	if err != nil || len(snaps) != 1 || snaps[0].Status == manifest.StatusVerified {
		t.Fatalf("List = %+v, %v; want the one snapshot, its status unchanged", snaps, err)
	}
	// Once there is room again the mark is saved and the manifest agrees.
	os.Remove(filepath.Join(mnt, fillName(t, mnt)))
	if vr, err := e.Verify(t.Context(), res.Manifest.ID); err != nil || vr.NotRecorded != "" {
		t.Fatalf("Verify with room = %+v, %v; want verified and recorded", vr, err)
	}
}

func fillName(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "fill-*"))
	if len(m) != 1 {
		t.Fatalf("fill files in %s: %v", dir, m)
	}
	return filepath.Base(m[0])
}
