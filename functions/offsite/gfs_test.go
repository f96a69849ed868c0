package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

// randomHistory is n snapshot times over the last ~two years: mostly one
// a night, with gaps and some days with several.
func randomHistory(rng *rand.Rand, n int) []time.Time {
	start := time.Date(2024, 1, 1, 2, 0, 0, 0, time.UTC)
	var ts []time.Time
	at := start
	for len(ts) < n {
		switch rng.IntN(10) {
		case 0: // a gap of up to 40 days
			at = at.Add(time.Duration(rng.IntN(40*24)) * time.Hour)
		case 1: // another snapshot the same day (a deploy)
			at = at.Add(time.Duration(1+rng.IntN(300)) * time.Minute)
		default:
			at = at.Add(24*time.Hour + time.Duration(rng.IntN(120)-60)*time.Minute)
		}
		ts = append(ts, at)
	}
	rng.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	return ts
}

func TestGFSProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 2025))
	policies := []GFS{DefaultGFS, {Daily: 1}, {Weekly: 2, Monthly: 1}, {}, {Daily: 3, Weekly: 3, Monthly: 3}}
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	week := func(t time.Time) string {
		y, w := t.UTC().ISOWeek()
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Format("2006") + "-" + string(rune('A'+w))
	}
	month := func(t time.Time) string { return t.UTC().Format("2006-01") }

	for round := range 400 {
		p := policies[round%len(policies)]
		ts := randomHistory(rng, 1+rng.IntN(200))
		keep := p.Keep(ts)

		newest := 0
		for i := range ts {
			if ts[i].After(ts[newest]) || ts[i].Equal(ts[newest]) && i > newest {
				newest = i
			}
		}
		if !keep[newest] {
			t.Fatalf("round %d %+v: the newest snapshot %v is not kept", round, p, ts[newest])
		}
		kept := 0
		keptDay := map[string]bool{}
		for i, k := range keep {
			if !k {
				continue
			}
			kept++
			// A kept snapshot is the newest of its day: at most one a day.
			if keptDay[day(ts[i])] {
				t.Fatalf("round %d %+v: two snapshots kept on %s", round, p, day(ts[i]))
			}
			keptDay[day(ts[i])] = true
			for j := range ts {
				if day(ts[j]) == day(ts[i]) && ts[j].After(ts[i]) {
					t.Fatalf("round %d %+v: kept %v though %v is newer the same day", round, p, ts[i], ts[j])
				}
			}
		}
		if limit := max(1, p.Daily+p.Weekly+p.Monthly); kept > limit {
			t.Fatalf("round %d %+v: kept %d, more than %d", round, p, kept, limit)
		}
		// Each rule: the newest snapshot of each of its n most recent
		// periods (with snapshots) is kept.
		for _, rule := range []struct {
			n      int
			period func(time.Time) string
		}{{p.Daily, day}, {p.Weekly, week}, {p.Monthly, month}} {
			newestOf := map[string]int{}
			for i, t := range ts {
				k := rule.period(t)
				if j, ok := newestOf[k]; !ok || t.After(ts[j]) || t.Equal(ts[j]) && i > j {
					newestOf[k] = i
				}
			}
			var order []int
			for _, i := range newestOf {
				order = append(order, i)
			}
			sortNewestFirst(ts, order)
			for _, i := range order[:min(rule.n, len(order))] {
				if !keep[i] {
					t.Fatalf("round %d %+v: %v is the newest of its period %s, one of the %d most recent, and not kept", round, p, ts[i], rule.period(ts[i]), rule.n)
				}
			}
		}
		// Stable: applying the policy to what it kept keeps all of it, so
		// a later run never prunes what an earlier one kept on its own.
		var rest []time.Time
		for i, k := range keep {
			if k {
				rest = append(rest, ts[i])
			}
		}
		for i, k := range p.Keep(rest) {
			if !k {
				t.Fatalf("round %d %+v: %v kept, then pruned when the policy ran again", round, p, rest[i])
			}
		}
		// Order does not matter.
		perm := rng.Perm(len(ts))
		shuffled := make([]time.Time, len(ts))
		for i, j := range perm {
			shuffled[i] = ts[j]
		}
		for i, k := range p.Keep(shuffled) {
			if k != keep[perm[i]] && !hasTwin(ts, perm[i]) {
				t.Fatalf("round %d %+v: keeping %v depends on the input order", round, p, shuffled[i])
			}
		}
	}
}

func TestGFSDefaultOnAYearOfNightlySnapshots(t *testing.T) {
	var ts []time.Time
	for d := range 400 {
		ts = append(ts, time.Date(2024, 1, 1, 2, 0, 0, 0, time.UTC).AddDate(0, 0, d))
	}
	keep := DefaultGFS.Keep(ts)
	kept := 0
	for _, k := range keep {
		if k {
			kept++
		}
	}
	// 14 days, plus the weekly picks outside them (8 weeks, 2 of them
	// within the 14 days), plus monthly picks outside both.
	if kept < 14+6 || kept > 14+8+12 {
		t.Errorf("kept %d of 400 nightly snapshots, want between 20 and 34", kept)
	}
	for i := len(ts) - 14; i < len(ts); i++ {
		if !keep[i] {
			t.Errorf("day %v of the last 14 not kept", ts[i])
		}
	}
	if keep[0] {
		t.Errorf("the first snapshot, 13 months old, is kept")
	}
}

func sortNewestFirst(ts []time.Time, idx []int) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && (ts[idx[j]].After(ts[idx[j-1]]) || ts[idx[j]].Equal(ts[idx[j-1]]) && idx[j] > idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}

// hasTwin says whether another snapshot has exactly ts[i]'s time (then
// which of the two is kept follows the index).
func hasTwin(ts []time.Time, i int) bool {
	for j := range ts {
		if j != i && ts[j].Equal(ts[i]) {
			return true
		}
	}
	return false
}
