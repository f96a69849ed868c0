package check

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

func newDiskCheck(t *testing.T, c config.Check) Checker {
	t.Helper()
	c.Name, c.Type = "disk", "disk"
	ch, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return ch
}

// wantSpace is the message part for dir, computed from statfs in testenv
// (df's formula), independently of the check.
func wantSpace(t *testing.T, dir, level string) (string, testenv.Usage) {
	u := testenv.StatUsage(t, dir)
	return fmt.Sprintf("%s %.1f%% used%s, %s free", dir, u.UsedPct, level, wantBytes(u.FreeBytes)), u
}

func wantBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func TestDiskBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 324 << 10: "324.0 KiB",
		4 << 20: "4.0 MiB", 3328599654: "3.1 GiB", 5 << 40: "5.0 TiB",
	} {
		if got := diskBytes(n); got != want {
			t.Errorf("diskBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDiskEmptyTmpfs(t *testing.T) {
	dir := testenv.Tmpfs(t, "4m")
	r := newDiskCheck(t, config.Check{Paths: []string{dir}}).Check(context.Background())
	if r.Status != OK || r.Message != dir+" 0.0% used, 4.0 MiB free" || r.Value != "0.0%" {
		t.Fatalf("got %v %q value %q, want ok %q value 0.0%%", r.Status, r.Message, r.Value, dir+" 0.0% used, 4.0 MiB free")
	}
	obs := r.Observed["paths"].(map[string]any)[dir].(map[string]any)
	if obs["size_bytes"] != uint64(4<<20) || obs["free_bytes"] != uint64(4<<20) || obs["used_pct"] != 0.0 {
		t.Fatalf("observed %v, want size=free=%d used_pct=0", obs, 4<<20)
	}
	if ip, ok := obs["inodes_used_pct"].(float64); !ok || ip <= 0 || ip > 1 {
		t.Fatalf("inodes_used_pct %v, want a small share (the root dir)", obs["inodes_used_pct"])
	}
}

func TestDiskThresholds(t *testing.T) {
	cases := []struct {
		name           string
		fill           float64
		warn, critical float64
		want           Status
		level          string
	}{
		{"below default warn", 60, 0, 0, OK, ""},
		{"past default warn", 82, 0, 0, Warn, " (warn ≥ 80%)"},
		{"past default critical", 92, 0, 0, Critical, " (critical ≥ 90%)"},
		{"custom warn", 55, 50, 70, Warn, " (warn ≥ 50%)"},
		{"custom critical", 72, 50, 70, Critical, " (critical ≥ 70%)"},
		{"raised thresholds keep 92% ok", 92, 95, 98, OK, ""},
		{"fractional threshold", 86, 85.5, 99, Warn, " (warn ≥ 85.5%)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.Tmpfs(t, "4m")
			testenv.Fill(t, dir, tc.fill)
			r := newDiskCheck(t, config.Check{Paths: []string{dir}, Warn: tc.warn, Critical: tc.critical}).Check(context.Background())
			want, u := wantSpace(t, dir, tc.level)
			if r.Status != tc.want || r.Message != want {
				t.Fatalf("got %v %q, want %v %q", r.Status, r.Message, tc.want, want)
			}
			if wantV := fmt.Sprintf("%.1f%%", u.UsedPct); r.Value != wantV {
				t.Fatalf("value %q, want %q", r.Value, wantV)
			}
			obs := r.Observed["paths"].(map[string]any)[dir].(map[string]any)
			if got := obs["used_pct"].(float64); math.Abs(got-u.UsedPct) > 1e-9 || obs["free_bytes"] != u.FreeBytes {
				t.Fatalf("observed %v, want used_pct %v free_bytes %d", obs, u.UsedPct, u.FreeBytes)
			}
		})
	}
}

func TestDiskInodesExhausted(t *testing.T) {
	dir := testenv.TmpfsWith(t, testenv.TmpfsOpts{Size: "4m", Inodes: 50})
	testenv.FillInodes(t, dir, 100)
	r := newDiskCheck(t, config.Check{Paths: []string{dir}}).Check(context.Background())
	space, _ := wantSpace(t, dir, "")
	want := space + ", inodes 100.0% used (critical ≥ 90%)"
	if r.Status != Critical || r.Message != want {
		t.Fatalf("got %v %q, want critical %q", r.Status, r.Message, want)
	}
	obs := r.Observed["paths"].(map[string]any)[dir].(map[string]any)
	if obs["inodes_used_pct"] != 100.0 {
		t.Fatalf("inodes_used_pct %v, want 100", obs["inodes_used_pct"])
	}
}

func TestDiskInodesWarn(t *testing.T) {
	dir := testenv.TmpfsWith(t, testenv.TmpfsOpts{Size: "4m", Inodes: 100})
	testenv.FillInodes(t, dir, 85)
	u := testenv.StatUsage(t, dir)
	r := newDiskCheck(t, config.Check{Paths: []string{dir}}).Check(context.Background())
	want := fmt.Sprintf("%s %.1f%% used, %s free, inodes %.1f%% used (warn ≥ 80%%)", dir, u.UsedPct, wantBytes(u.FreeBytes), u.InodesUsedPct)
	if r.Status != Warn || r.Message != want {
		t.Fatalf("got %v %q, want warn %q", r.Status, r.Message, want)
	}
}

func TestDiskMissingPath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	r := newDiskCheck(t, config.Check{Paths: []string{missing}}).Check(context.Background())
	want := "statfs " + missing + ": no such file or directory"
	if r.Status != Unknown || r.Message != want || r.Value != "" {
		t.Fatalf("got %v %q value %q, want unknown %q", r.Status, r.Message, r.Value, want)
	}
}

func TestDiskWorstOverPaths(t *testing.T) {
	okDir := testenv.Tmpfs(t, "4m")
	fullDir := testenv.Tmpfs(t, "4m")
	testenv.Fill(t, fullDir, 95)
	missing := filepath.Join(t.TempDir(), "gone")
	r := newDiskCheck(t, config.Check{Paths: []string{okDir, missing, fullDir}}).Check(context.Background())
	full, fu := wantSpace(t, fullDir, " (critical ≥ 90%)")
	want := strings.Join([]string{
		okDir + " 0.0% used, 4.0 MiB free",
		"statfs " + missing + ": no such file or directory",
		full,
	}, "; ")
	// critical outranks unknown, as in a round.
	if r.Status != Critical || r.Message != want {
		t.Fatalf("got %v %q, want critical %q", r.Status, r.Message, want)
	}
	if wantV := fmt.Sprintf("%.1f%%", fu.UsedPct); r.Value != wantV {
		t.Fatalf("value %q, want the highest %q", r.Value, wantV)
	}
	if n := len(r.Observed["paths"].(map[string]any)); n != 2 {
		t.Fatalf("observed %d paths, want the 2 that could be stat'ed", n)
	}
}

func TestDiskCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	r := newDiskCheck(t, config.Check{Paths: []string{dir}}).Check(ctx)
	// statfs of a local dir may win the race with the cancelled ctx; either
	// way the result is not a silent OK with no message.
	if r.Status == Unknown {
		if want := "statfs " + dir + ": context canceled"; r.Message != want {
			t.Fatalf("message %q, want %q", r.Message, want)
		}
	} else if !strings.HasPrefix(r.Message, dir+" ") {
		t.Fatalf("got %v %q", r.Status, r.Message)
	}
}

func TestDiskConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		c    config.Check
		want string
	}{
		{"no paths", config.Check{}, `check "disk": paths: at least one path is required`},
		{"empty path", config.Check{Paths: []string{"/", " "}}, `check "disk": paths[1]: empty path`},
		{"warn above 100", config.Check{Paths: []string{"/"}, Warn: 150, Critical: 160}, `check "disk": warn: must be 1..100, got 150`},
		{"negative critical", config.Check{Paths: []string{"/"}, Critical: -1}, `check "disk": critical: must be 1..100, got -1`},
		{"warn above critical", config.Check{Paths: []string{"/"}, Warn: 95, Critical: 90}, `check "disk": warn: 95 is above critical 90`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name, tc.c.Type = "disk", "disk"
			_, err := New(tc.c)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
