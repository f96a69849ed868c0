package snapshot

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"backstop/shared/manifest"
)

var retNow = time.Date(2025, 3, 31, 2, 0, 0, 0, time.UTC)

// daily returns n snapshots taken at 02:00 on the n days before retNow,
// newest first, with the statuses given (complete when short).
func daily(n int, verified ...int) []manifest.Manifest {
	var out []manifest.Manifest
	for i := range n {
		at := retNow.Add(-time.Duration(i+1) * 24 * time.Hour)
		m := manifest.Manifest{Schema: 1, ID: manifest.NewID(at, nil), Host: "h", CreatedAt: at,
			Trigger: manifest.TriggerSchedule, Status: manifest.StatusComplete}
		if slices.Contains(verified, i) {
			m.Status, m.VerifiedAt = manifest.StatusVerified, at.Add(time.Minute)
		}
		out = append(out, m)
	}
	return out
}

// idx turns indexes into daily()'s ids.
func idx(snaps []manifest.Manifest, is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, snaps[i].ID)
	}
	return out
}

func TestPlanRetention(t *testing.T) {
	ten := daily(10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	tenNoneVerified := daily(10)
	oldVerified := daily(10, 8)
	tests := []struct {
		name       string
		snaps      []manifest.Manifest
		p          Retention
		inUse      []int
		keep, drop []int
	}{
		{"count only", ten, Retention{Count: 3}, nil, []int{0, 1, 2}, []int{3, 4, 5, 6, 7, 8, 9}},
		// Days 4: snapshots 1..4 days old; the one exactly 4 days old is outside.
		{"days only", ten, Retention{Days: 4}, nil, []int{0, 1, 2}, []int{3, 4, 5, 6, 7, 8, 9}},
		{"count wider than days", ten, Retention{Count: 5, Days: 2}, nil, []int{0, 1, 2, 3, 4}, []int{5, 6, 7, 8, 9}},
		{"days wider than count", ten, Retention{Count: 2, Days: 7}, nil, []int{0, 1, 2, 3, 4, 5}, []int{6, 7, 8, 9}},
		{"both off keeps all", ten, Retention{}, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, nil},
		{"newest verified survives", oldVerified, Retention{Count: 2}, nil, []int{0, 1, 8}, []int{2, 3, 4, 5, 6, 7, 9}},
		{"in use survives", ten, Retention{Count: 2}, []int{6}, []int{0, 1, 6}, []int{2, 3, 4, 5, 7, 8, 9}},
		{"days window empty keeps the newest", tenNoneVerified[5:], Retention{Days: 3}, nil, []int{0}, []int{1, 2, 3, 4}},
		{"count larger than history", ten[:3], Retention{Count: 14, Days: 30}, nil, []int{0, 1, 2}, nil},
		{"empty history", nil, Retention{Count: 1}, nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inUse := map[string]bool{}
			for _, id := range idx(tc.snaps, tc.inUse...) {
				inUse[id] = true
			}
			// Input order must not matter.
			shuffled := slices.Clone(tc.snaps)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			keep, remove := PlanRetention(shuffled, tc.p, retNow, inUse)
			if want := idx(tc.snaps, tc.keep...); !slices.Equal(keep, want) {
				t.Errorf("keep = %v\nwant   %v", keep, want)
			}
			if want := idx(tc.snaps, tc.drop...); !slices.Equal(remove, want) {
				t.Errorf("remove = %v\nwant     %v", remove, want)
			}
		})
	}
}

var retentionSeed = flag.Uint64("retention.seed", 0, "seed for TestPlanRetentionProperties (0: from the clock)")

// TestPlanRetentionProperties checks the invariants over random histories.
func TestPlanRetentionProperties(t *testing.T) {
	seed := *retentionSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (go test -run PlanRetentionProperties -retention.seed=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	for iter := range 2000 {
		n := rng.IntN(40)
		var snaps []manifest.Manifest
		inUse := map[string]bool{}
		for i := range n {
			at := retNow.Add(-time.Duration(rng.Int64N(int64(90 * 24 * time.Hour)))).Add(time.Duration(rng.IntN(3)-1) * time.Hour)
			if rng.IntN(10) == 0 { // same second as another: the id breaks the tie
				if len(snaps) > 0 {
					at = snaps[rng.IntN(len(snaps))].CreatedAt
				}
			}
			m := manifest.Manifest{ID: fmt.Sprintf("%s-%06x", at.UTC().Format("20060102T150405Z"), i), CreatedAt: at, Status: manifest.StatusComplete}
			if rng.IntN(4) == 0 {
				m.Status = manifest.StatusVerified
			}
			if rng.IntN(15) == 0 {
				inUse[m.ID] = true
			}
			snaps = append(snaps, m)
		}
		p := Retention{Count: rng.IntN(12), Days: rng.IntN(60)}
		keep, remove := PlanRetention(snaps, p, retNow, inUse)
		fail := func(format string, args ...any) {
			t.Fatalf("seed %d iteration %d, policy %+v, %d snapshots: %s", seed, iter, p, n, fmt.Sprintf(format, args...))
		}

		sorted := slices.Clone(snaps)
		manifest.SortNewestFirst(sorted)
		removed := map[string]bool{}
		for _, id := range remove {
			removed[id] = true
		}
		// keep ∪ remove = all, disjoint, each in order.
		if len(keep)+len(remove) != n || len(removed) != len(remove) {
			fail("keep %d + remove %d != %d snapshots (or duplicates)", len(keep), len(remove), n)
		}
		for _, id := range keep {
			if removed[id] {
				fail("%s both kept and removed", id)
			}
		}
		var wantKeep, wantRemove []string
		for _, m := range sorted {
			if removed[m.ID] {
				wantRemove = append(wantRemove, m.ID)
			} else {
				wantKeep = append(wantKeep, m.ID)
			}
		}
		if !slices.Equal(keep, wantKeep) || !slices.Equal(remove, wantRemove) {
			fail("lists are not newest first or miss ids:\nkeep %v\nremove %v", keep, remove)
		}
		verifiedSeen := false
		for i, m := range sorted {
			if !removed[m.ID] {
				if m.Status == manifest.StatusVerified {
					verifiedSeen = true
				}
				continue
			}
			switch {
			case p.Count == 0 && p.Days == 0:
				fail("retention off but %s removed", m.ID)
			case p.Count > 0 && i < p.Count:
				fail("%s removed inside the count window (position %d)", m.ID, i)
			case p.Days > 0 && retNow.Sub(m.CreatedAt) < time.Duration(p.Days)*24*time.Hour:
				fail("%s removed inside the days window (age %v)", m.ID, retNow.Sub(m.CreatedAt))
			case inUse[m.ID]:
				fail("%s removed while in use", m.ID)
			case i == 0:
				fail("the newest snapshot %s removed", m.ID)
			case m.Status == manifest.StatusVerified && !verifiedSeen:
				fail("the newest verified snapshot %s removed", m.ID)
			}
		}
		// Outside both windows and unprotected means removed: retention
		// does its job, it is not just "keep everything".
		for i, m := range sorted {
			inWindow := (p.Count == 0 && p.Days == 0) || (p.Count > 0 && i < p.Count) ||
				(p.Days > 0 && retNow.Sub(m.CreatedAt) < time.Duration(p.Days)*24*time.Hour)
			protected := i == 0 || inUse[m.ID] || m.ID == firstVerified(sorted)
			if !inWindow && !protected && !removed[m.ID] {
				fail("%s is outside both windows and unprotected but kept", m.ID)
			}
		}
	}
}

func firstVerified(sorted []manifest.Manifest) string {
	for _, m := range sorted {
		if m.Status == manifest.StatusVerified {
			return m.ID
		}
	}
	return ""
}
