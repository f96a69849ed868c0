package main

import (
	"cmp"
	"slices"
	"time"
)

// GFS is a grandfather-father-son retention policy: for the Daily most
// recent days that have snapshots keep the newest of each day, and likewise
// for Weekly ISO weeks and Monthly calendar months (UTC). A snapshot kept by
// any rule is kept.
type GFS struct {
	Daily, Weekly, Monthly int
}

// DefaultGFS is the vault's policy: 14 daily, 8 weekly, 12 monthly.
var DefaultGFS = GFS{Daily: 14, Weekly: 8, Monthly: 12}

// Keep says, for each snapshot time, whether the policy keeps it. It is
// pure: the answer depends on the set of times alone, not on their order
// or on the clock, so a missed run prunes nothing a later run would keep.
// The newest snapshot is always kept; a period with no snapshot does not
// count against its rule (backups that stop never empty the vault). Equal
// times: the later index counts as newer.
func (p GFS) Keep(times []time.Time) []bool {
	keep := make([]bool, len(times))
	if len(times) == 0 {
		return keep
	}
	order := make([]int, len(times))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { // newest first
		if c := times[b].Compare(times[a]); c != 0 {
			return c
		}
		return cmp.Compare(b, a)
	})
	keep[order[0]] = true
	for _, rule := range []struct {
		n      int
		period func(time.Time) int
	}{
		{p.Daily, func(t time.Time) int { y, m, d := t.UTC().Date(); return y*10000 + int(m)*100 + d }},
		{p.Weekly, func(t time.Time) int { y, w := t.UTC().ISOWeek(); return y*100 + w }},
		{p.Monthly, func(t time.Time) int { y, m, _ := t.UTC().Date(); return y*100 + int(m) }},
	} {
		seen := 0
		last, started := 0, false
		for _, i := range order {
			k := rule.period(times[i])
			if started && k == last {
				continue // an older snapshot of a period already counted
			}
			if seen == rule.n {
				break
			}
			seen++
			last, started = k, true
			keep[i] = true
		}
	}
	return keep
}
