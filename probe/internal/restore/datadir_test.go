package restore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"backstop/shared/testenv"
)

const swapTxn = "20250102T030405Z-abc123"

// makeTestTree creates dir with the given files (name -> content).
func makeTestTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		writeTestFile(t, filepath.Join(dir, n), []byte(c), 0o644, time.Unix(1.5e9, 0))
	}
}

// dirNames is the sorted names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantListing(t *testing.T, dir string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// swapSetup makes a live data dir (mode 0751) and a staged restore beside
// it and returns them with their trees.
func swapSetup(t *testing.T) (live, staged string, oldTree, newTree map[string]string) {
	t.Helper()
	live = filepath.Join(t.TempDir(), "data")
	makeTestTree(t, live, map[string]string{"f": "old", "sub/g": "old g", "only-old": "x"})
	if err := os.Chmod(live, 0o751); err != nil {
		t.Fatal(err)
	}
	staged = StageDir(live, swapTxn)
	makeTestTree(t, staged, map[string]string{"f": "new", "sub/g": "new g", "only-new": "y"})
	if err := os.Chmod(staged, 0o700); err != nil {
		t.Fatal(err)
	}
	return live, staged, describeTree(t, live, ""), describeTree(t, staged, "")
}

// TestSwapRevert: swap, revert, revert again: each leaves exactly the
// expected directories with exactly their content.
func TestSwapRevert(t *testing.T) {
	live, staged, oldTree, newTree := swapSetup(t)
	parent := filepath.Dir(live)
	if got, want := staged, filepath.Join(parent, "data.restore-"+swapTxn); got != want {
		t.Fatalf("StageDir = %s, want %s", got, want)
	}

	if err := SwapDir(live, staged, swapTxn); err != nil {
		t.Fatalf("SwapDir: %v", err)
	}
	wantListing(t, parent, "data", "data.pre-"+swapTxn)
	diffTrees(t, "live after swap", newTree, describeTree(t, live, ""))
	diffTrees(t, "pre after swap", oldTree, describeTree(t, PreDir(live, swapTxn), ""))
	if fi, err := os.Stat(live); err != nil || fi.Mode().Perm() != 0o751 {
		t.Errorf("live after swap: %v, %v; want the old live's mode 0751", fi.Mode(), err)
	}

	if err := RevertDir(live, swapTxn); err != nil {
		t.Fatalf("RevertDir: %v", err)
	}
	wantListing(t, parent, "data", "data.failed-"+swapTxn)
	diffTrees(t, "live after revert", oldTree, describeTree(t, live, ""))
	diffTrees(t, "failed after revert", newTree, describeTree(t, FailedDir(live, swapTxn), ""))

	err := RevertDir(live, swapTxn)
	if want := "revert " + live + " txn " + swapTxn + ": " + ErrNotSwapped.Error(); !errors.Is(err, ErrNotSwapped) || err.Error() != want {
		t.Fatalf("second RevertDir = %v, want %q", err, want)
	}
	wantListing(t, parent, "data", "data.failed-"+swapTxn)
	diffTrees(t, "live after a second revert", oldTree, describeTree(t, live, ""))
}

// TestRevertWithoutSwap: nothing to revert, nothing touched.
func TestRevertWithoutSwap(t *testing.T) {
	live, _, oldTree, newTree := swapSetup(t)
	if err := RevertDir(live, swapTxn); !errors.Is(err, ErrNotSwapped) {
		t.Fatalf("RevertDir = %v, want ErrNotSwapped", err)
	}
	wantListing(t, filepath.Dir(live), "data", "data.restore-"+swapTxn)
	diffTrees(t, "live", oldTree, describeTree(t, live, ""))
	diffTrees(t, "staged", newTree, describeTree(t, StageDir(live, swapTxn), ""))
}

// TestRevertAfterCrash: a process killed between the swap's two renames
// (live missing, pre present), or between the revert's two renames, is
// recovered by RevertDir.
func TestRevertAfterCrash(t *testing.T) {
	t.Run("between the swap's renames", func(t *testing.T) {
		live, _, oldTree, _ := swapSetup(t)
		if err := os.Rename(live, PreDir(live, swapTxn)); err != nil {
			t.Fatal(err)
		}
		if err := RevertDir(live, swapTxn); err != nil {
			t.Fatalf("RevertDir: %v", err)
		}
		wantListing(t, filepath.Dir(live), "data", "data.restore-"+swapTxn)
		diffTrees(t, "live", oldTree, describeTree(t, live, ""))
	})
	t.Run("between the revert's renames", func(t *testing.T) {
		live, staged, oldTree, newTree := swapSetup(t)
		if err := SwapDir(live, staged, swapTxn); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(live, FailedDir(live, swapTxn)); err != nil {
			t.Fatal(err)
		}
		if err := RevertDir(live, swapTxn); err != nil {
			t.Fatalf("RevertDir: %v", err)
		}
		wantListing(t, filepath.Dir(live), "data", "data.failed-"+swapTxn)
		diffTrees(t, "live", oldTree, describeTree(t, live, ""))
		diffTrees(t, "failed", newTree, describeTree(t, FailedDir(live, swapTxn), ""))
	})
	t.Run("pre, live and failed all present", func(t *testing.T) {
		live, staged, _, _ := swapSetup(t)
		if err := SwapDir(live, staged, swapTxn); err != nil {
			t.Fatal(err)
		}
		makeTestTree(t, FailedDir(live, swapTxn), nil)
		before := describeTree(t, filepath.Dir(live), "")
		err := RevertDir(live, swapTxn)
		if err == nil || !strings.Contains(err.Error(), "both it and "+FailedDir(live, swapTxn)+" exist") {
			t.Fatalf("RevertDir = %v, want a refusal naming %s", err, FailedDir(live, swapTxn))
		}
		diffTrees(t, "parent", before, describeTree(t, filepath.Dir(live), ""))
	})
}

// TestSwapRefused: every refusal names the cause and changes nothing.
func TestSwapRefused(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, live, staged string) (string, string, string) // live, staged, swapTxn to use
		want  string
	}{
		{"pre-restore dir exists", func(t *testing.T, live, staged string) (string, string, string) {
			makeTestTree(t, PreDir(live, swapTxn), nil)
			return live, staged, swapTxn
		}, "data.pre-" + swapTxn + " already exists"},
		{"staged missing", func(t *testing.T, live, staged string) (string, string, string) {
			return live, staged + "x", swapTxn
		}, "staged directory: lstat "},
		{"staged is a file", func(t *testing.T, live, staged string) (string, string, string) {
			writeTestFile(t, staged+"f", []byte("x"), 0o644, time.Unix(1e9, 0))
			return live, staged + "f", swapTxn
		}, "is not a directory"},
		{"live missing", func(t *testing.T, live, staged string) (string, string, string) {
			return live + "-nope", staged, swapTxn
		}, "data-nope: no such file or directory"},
		{"live is a symbolic link", func(t *testing.T, live, staged string) (string, string, string) {
			l := live + "-link"
			if err := os.Symlink(live, l); err != nil {
				t.Fatal(err)
			}
			return l, staged, swapTxn
		}, "data-link is a symbolic link: configure the directory it points to"},
		{"live is a mount point", func(t *testing.T, live, staged string) (string, string, string) {
			return testenv.Tmpfs(t, "1m"), staged, swapTxn
		}, "is a mount point: it cannot be swapped by rename"},
		{"staged on another filesystem", func(t *testing.T, live, staged string) (string, string, string) {
			return live, testenv.Tmpfs(t, "1m"), swapTxn
		}, "is on another filesystem: rename cannot swap them"},
		{"txn with a slash", func(t *testing.T, live, staged string) (string, string, string) {
			return live, staged, "../x"
		}, `txn id "../x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			live, staged, _, _ := swapSetup(t)
			l, s, x := tc.setup(t, live, staged)
			before := describeTree(t, filepath.Dir(live), "")
			err := SwapDir(l, s, x)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SwapDir = %v, want an error containing %q", err, tc.want)
			}
			diffTrees(t, "parent", before, describeTree(t, filepath.Dir(live), ""))
		})
	}
}

// TestSwapSecondRenameFails: when the restored directory cannot be moved
// in (here it is immutable, chattr +i), the live directory is put back.
func TestSwapSecondRenameFails(t *testing.T) {
	live, staged, oldTree, _ := swapSetup(t)
	if err := os.Chmod(staged, 0o751); err != nil { // as live: nothing for SwapDir to chmod
		t.Fatal(err)
	}
	out, err := exec.Command("chattr", "+i", staged).CombinedOutput()
	if err != nil {
		testenv.Need(t, "chattr +i (root on ext4)", errors.New(strings.TrimSpace(string(out))), "run as root on a filesystem with immutable files")
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", staged).Run() })
	err = SwapDir(live, staged, swapTxn)
	if err == nil || !strings.Contains(err.Error(), "move "+staged+" in: rename ") || !strings.Contains(err.Error(), "operation not permitted (live directory put back)") {
		t.Fatalf("SwapDir = %v, want a failed move-in with the live directory put back", err)
	}
	wantListing(t, filepath.Dir(live), "data", "data.restore-"+swapTxn)
	diffTrees(t, "live", oldTree, describeTree(t, live, ""))
}

// TestPruneDirs: leftover staging dirs go, pre-states beyond keep go
// oldest first (by when they were made, not by name), the active swapTxn's
// never, and unrelated names are left alone.
func TestPruneDirs(t *testing.T) {
	// made in this order; names sort the other way round
	made := []string{"data.pre-t9", "data.failed-t8", "data.pre-t7", "data.failed-t7", "data.restore-t4", "data.restore-t5", "data.pre-t5"}
	unrelated := []string{"data", "database.pre-t1", "data.pre-", "other", "data.bak"}
	cases := []struct {
		name    string
		keep    int
		active  string
		removed []string
	}{
		{"keep 2 with an active swapTxn", 2, "t5", []string{"data.restore-t4", "data.pre-t9", "data.failed-t8"}},
		{"keep 3", 3, "t5", []string{"data.restore-t4", "data.pre-t9"}},
		{"keep 0 keeps the active", 0, "t5", []string{"data.restore-t4", "data.pre-t9", "data.failed-t8", "data.pre-t7", "data.failed-t7"}},
		{"keep 1 without an active swapTxn", 1, "", []string{"data.restore-t4", "data.restore-t5", "data.pre-t9", "data.failed-t8", "data.pre-t7", "data.failed-t7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			for _, n := range unrelated {
				makeTestTree(t, filepath.Join(parent, n), map[string]string{"x": n})
			}
			for _, n := range made {
				makeTestTree(t, filepath.Join(parent, n), map[string]string{"x": n})
				time.Sleep(20 * time.Millisecond) // distinct change times, whatever the clock's grain
			}
			live := filepath.Join(parent, "data")
			got, err := PruneDirs(live, tc.keep, tc.active)
			if err != nil {
				t.Fatalf("PruneDirs: %v", err)
			}
			var want []string
			for _, n := range tc.removed {
				want = append(want, filepath.Join(parent, n))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("removed %q, want %q", got, want)
			}
			var left []string
			for _, n := range append(slices.Clone(unrelated), made...) {
				if !slices.Contains(tc.removed, n) {
					left = append(left, n)
				}
			}
			wantListing(t, parent, left...)
		})
	}

	t.Run("live missing", func(t *testing.T) {
		parent := t.TempDir()
		makeTestTree(t, filepath.Join(parent, "data.pre-t1"), map[string]string{"x": "only copy"})
		_, err := PruneDirs(filepath.Join(parent, "data"), 0, "")
		if err == nil || !strings.Contains(err.Error(), "(revert first)") {
			t.Fatalf("PruneDirs = %v, want a refusal saying to revert first", err)
		}
		wantListing(t, parent, "data.pre-t1")
	})
}
