package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"

	"backstop/probe/internal/config"
)

func init() { register("disk", newDisk) }

const (
	defaultDiskWarn     = 80
	defaultDiskCritical = 90
)

// DiskCheck watches the space and inode use of the filesystems holding
// Paths, as df computes them from statfs.
type DiskCheck struct {
	name     string
	paths    []string
	warn     float64 // used % at which the check warns
	critical float64 // used % at which it is critical
}

var _ Checker = (*DiskCheck)(nil)

func newDisk(c config.Check) (Checker, error) {
	if len(c.Paths) == 0 {
		return nil, errors.New("paths: at least one path is required")
	}
	for i, p := range c.Paths {
		if strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("paths[%d]: empty path", i)
		}
	}
	d := &DiskCheck{name: c.Name, paths: c.Paths, warn: c.Warn, critical: c.Critical}
	if d.warn == 0 {
		d.warn = defaultDiskWarn
	}
	if d.critical == 0 {
		d.critical = defaultDiskCritical
	}
	if d.warn < 0 || d.warn > 100 {
		return nil, fmt.Errorf("warn: must be 1..100, got %g", c.Warn)
	}
	if d.critical < 0 || d.critical > 100 {
		return nil, fmt.Errorf("critical: must be 1..100, got %g", c.Critical)
	}
	if d.warn > d.critical {
		return nil, fmt.Errorf("warn: %g is above critical %g", d.warn, d.critical)
	}
	return d, nil
}

// diskUsage is one filesystem's usage; inodesPct < 0 when it reports no inodes.
type diskUsage struct {
	usedPct   float64
	inodesPct float64
	free      uint64
	size      uint64
}

// Check statfs'es every path. The status is the worst over paths (space and
// inodes alike); Value is the highest space used %. A path that cannot be
// stat'ed (missing, or statfs still blocked when ctx ends — a hung network
// mount) makes the check Unknown with the cause.
func (d *DiskCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: d.name, Type: "disk", Status: OK, At: start}
	perPath := make(map[string]any, len(d.paths))
	msgs := make([]string, 0, len(d.paths))
	highest := -1.0
	for _, p := range d.paths {
		u, err := diskStat(ctx, p)
		if err != nil {
			res.Status = diskWorse(res.Status, Unknown)
			msgs = append(msgs, err.Error())
			continue
		}
		obs := map[string]any{
			"used_pct":   u.usedPct,
			"free_bytes": u.free,
			"size_bytes": u.size,
		}
		if u.inodesPct >= 0 {
			obs["inodes_used_pct"] = u.inodesPct
		}
		perPath[p] = obs
		highest = math.Max(highest, u.usedPct)

		st, level := d.grade(u.usedPct)
		res.Status = diskWorse(res.Status, st)
		msg := fmt.Sprintf("%s %.1f%% used%s, %s free", p, u.usedPct, level, diskBytes(u.free))
		if u.inodesPct >= 0 {
			if ist, ilevel := d.grade(u.inodesPct); ist != OK {
				res.Status = diskWorse(res.Status, ist)
				msg += fmt.Sprintf(", inodes %.1f%% used%s", u.inodesPct, ilevel)
			}
		}
		msgs = append(msgs, msg)
	}
	if highest >= 0 {
		res.Value = fmt.Sprintf("%.1f%%", highest)
	}
	res.Message = strings.Join(msgs, "; ")
	res.Observed = map[string]any{"paths": perPath}
	res.Latency = time.Since(start)
	return res
}

// grade compares a used % (as shown, to one decimal) with the thresholds
// and says which one it crossed: " (critical ≥ 90%)".
func (d *DiskCheck) grade(pct float64) (Status, string) {
	shown := math.Round(pct*10) / 10
	switch {
	case shown >= d.critical:
		return Critical, fmt.Sprintf(" (critical ≥ %g%%)", d.critical)
	case shown >= d.warn:
		return Warn, fmt.Sprintf(" (warn ≥ %g%%)", d.warn)
	}
	return OK, ""
}

// diskStat runs statfs on path and computes df's figures. statfs on a dead
// network mount can block for minutes, so it runs aside and ctx bounds the
// wait (the blocked goroutine ends when the kernel gives up).
func diskStat(ctx context.Context, path string) (diskUsage, error) {
	type answer struct {
		st  syscall.Statfs_t
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		var a answer
		a.err = syscall.Statfs(path, &a.st)
		ch <- a
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return diskUsage{}, fmt.Errorf("statfs %s: %w", path, ctx.Err())
	}
	if a.err != nil {
		return diskUsage{}, fmt.Errorf("statfs %s: %w", path, a.err)
	}
	st := a.st
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	u := diskUsage{inodesPct: -1, free: st.Bavail * bs, size: st.Blocks * bs}
	used := st.Blocks - st.Bfree
	if total := used + st.Bavail; total > 0 {
		u.usedPct = float64(used) / float64(total) * 100
	}
	if st.Files > 0 {
		u.inodesPct = float64(st.Files-st.Ffree) / float64(st.Files) * 100
	}
	return u, nil
}

// diskWorse returns the more severe of a and b, ranked as a round is (rank).
func diskWorse(a, b Status) Status {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// diskBytes formats n in binary units with one decimal: "3.1 GiB".
func diskBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}
