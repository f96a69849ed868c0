package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestTmpfsMountsAndFills(t *testing.T) {
	dir := Tmpfs(t, "4m")
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const tmpfsMagic = 0x01021994
	if st.Type != tmpfsMagic {
		t.Fatalf("%s has fs type %#x, want tmpfs", dir, st.Type)
	}
	if got := StatUsage(t, dir).SizeBytes; got != 4<<20 {
		t.Fatalf("size %d bytes, want %d", got, 4<<20)
	}
	for _, pct := range []float64{50, 85, 92.5} {
		Fill(t, dir, pct)
		got := StatUsage(t, dir).UsedPct
		if got < pct || got > pct+2 {
			t.Fatalf("after Fill(%v) used %.2f%%, want [%v, %v]", pct, got, pct, pct+2)
		}
	}
}

func TestTmpfsUnmountedAtCleanup(t *testing.T) {
	var dir string
	t.Run("mount", func(t *testing.T) {
		dir = Tmpfs(t, "1m")
		if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if dir == "" {
		return // skipped: not root
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		var st syscall.Statfs_t
		_ = syscall.Statfs(dir, &st)
		t.Fatalf("after cleanup %s: stat err %v (fs type %#x), want gone", dir, err, st.Type)
	}
}

func TestFillInodes(t *testing.T) {
	dir := TmpfsWith(t, TmpfsOpts{Size: "1m", Inodes: 40})
	FillInodes(t, dir, 95)
	if got := StatUsage(t, dir).InodesUsedPct; got < 95 {
		t.Fatalf("inodes used %.1f%%, want >= 95", got)
	}
}
