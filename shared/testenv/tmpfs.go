package testenv

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TmpfsOpts sizes a test tmpfs. Size is tmpfs's size= ("4m", "512k");
// Inodes, when > 0, is nr_inodes= (the root directory takes one).
type TmpfsOpts struct {
	Size   string
	Inodes int
}

// Tmpfs mounts a tmpfs of the given size ("4m") on a fresh temp dir and
// returns its path; it is lazily unmounted (MNT_DETACH) when the test ends.
// Mounting needs root (CAP_SYS_ADMIN): without it the test goes through
// Need (fails in CI, skips locally).
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	return TmpfsWith(t, TmpfsOpts{Size: size})
}

// TmpfsWith is Tmpfs with an inode limit as well, for inode-exhaustion tests.
func TmpfsWith(t testing.TB, o TmpfsOpts) string {
	t.Helper()
	dir := t.TempDir()
	data := "mode=0755"
	if o.Size != "" {
		data += ",size=" + o.Size
	}
	if o.Inodes > 0 {
		data += fmt.Sprintf(",nr_inodes=%d", o.Inodes)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, data); err != nil {
		err = fmt.Errorf("mount tmpfs %s on %s: %w", data, dir, err)
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			Need(t, "tmpfs", err, "run as root")
		}
		t.Fatal(err)
	}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// Usage is a filesystem's usage as df computes it from statfs.
type Usage struct {
	UsedPct       float64 // (blocks-bfree) / (blocks-bfree+bavail) * 100
	InodesUsedPct float64 // (files-ffree) / files * 100; 0 when files == 0
	FreeBytes     uint64  // bavail * frsize
	SizeBytes     uint64  // blocks * frsize
}

// StatUsage reads dir's filesystem usage with statfs.
func StatUsage(t testing.TB, dir string) Usage {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	u := Usage{FreeBytes: st.Bavail * bs, SizeBytes: st.Blocks * bs}
	used := st.Blocks - st.Bfree
	if d := used + st.Bavail; d > 0 {
		u.UsedPct = float64(used) / float64(d) * 100
	}
	if st.Files > 0 {
		u.InodesUsedPct = float64(st.Files-st.Ffree) / float64(st.Files) * 100
	}
	return u
}

// Fill writes a file into dir so that its filesystem's used % (as df
// computes it) is at least percent. It fails the test when that cannot be
// reached. Use it on a Tmpfs: it fills whatever filesystem dir is on.
func Fill(t testing.TB, dir string, percent float64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	bs := int64(st.Frsize)
	if bs == 0 {
		bs = int64(st.Bsize)
	}
	used := int64(st.Blocks - st.Bfree)
	total := used + int64(st.Bavail) // unchanged by writing: each block moves from avail to used
	need := int64(math.Ceil(percent/100*float64(total))) - used
	if need <= 0 {
		return
	}
	f, err := os.CreateTemp(dir, "fill-*")
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	buf := make([]byte, bs)
	for i := range buf {
		buf[i] = byte(i) | 1
	}
	write := func(blocks int64) {
		for ; blocks > 0; blocks-- {
			if _, err := f.Write(buf); err != nil {
				t.Fatalf("fill %s to %.1f%%: %v", dir, percent, err)
			}
		}
	}
	write(need)
	// The filesystem may count metadata too; top up until statfs agrees.
	for range 64 {
		if StatUsage(t, dir).UsedPct >= percent {
			return
		}
		write(1)
	}
	t.Fatalf("fill %s: used %.1f%%, could not reach %.1f%%", dir, StatUsage(t, dir).UsedPct, percent)
}

// FillInodes creates empty files in dir until its filesystem's inode use
// is at least percent (mount a TmpfsWith a small Inodes to make it cheap).
func FillInodes(t testing.TB, dir string, percent float64) {
	t.Helper()
	sub, err := os.MkdirTemp(dir, "inodes-*")
	if err != nil {
		t.Fatalf("fill inodes %s: %v", dir, err)
	}
	for i := 0; StatUsage(t, dir).InodesUsedPct < percent; i++ {
		if i > 1_000_000 {
			t.Fatalf("fill inodes %s: still below %.1f%% after %d files", dir, percent, i)
		}
		p := filepath.Join(sub, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatalf("fill inodes %s to %.1f%%: %v", dir, percent, err)
		}
	}
}
