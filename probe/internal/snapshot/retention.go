package snapshot

import (
	"time"

	"backstop/shared/manifest"
)

// Retention is the backup.retention policy: how many generations and how
// many days of snapshots to keep.
type Retention struct {
	Count int // keep the newest Count snapshots; 0 disables this window
	Days  int // keep snapshots younger than Days days; 0 disables this window
}

// PlanRetention decides which snapshots to keep and which to remove. It is
// pure: it reads nothing and deletes nothing.
//
// Count and Days are both honoured ("and/or"): a snapshot is kept while it
// is inside EITHER window (among the newest Count, or created less than
// Days×24h before now) and removed only when it is outside BOTH. A window
// of 0 is disabled: it keeps nothing by itself. With both at 0 retention is
// off and everything is kept.
//
// Whatever the windows say, these are never removed:
//   - the newest verified snapshot, so a restorable, checked generation
//     always survives a run of failed or unverified backups;
//   - the newest snapshot of all, so pruning never leaves nothing (e.g.
//     Days only, after backups stopped for longer than Days);
//   - snapshots whose id is in inUse (being restored, drilled, uploaded).
//
// keep and remove together hold every id of snaps exactly once, each list
// newest first (created_at, then id).
func PlanRetention(snaps []manifest.Manifest, p Retention, now time.Time, inUse map[string]bool) (keep, remove []string) {
	sorted := make([]manifest.Manifest, len(snaps))
	copy(sorted, snaps)
	manifest.SortNewestFirst(sorted)

	newestVerified := ""
	for _, m := range sorted {
		if m.Status == manifest.StatusVerified {
			newestVerified = m.ID
			break
		}
	}
	cutoff := now.Add(-time.Duration(p.Days) * 24 * time.Hour)
	for i, m := range sorted {
		switch {
		case p.Count == 0 && p.Days == 0, // retention off
			p.Count > 0 && i < p.Count,              // count window
			p.Days > 0 && m.CreatedAt.After(cutoff), // age window
			i == 0,                                  // the newest of all
			m.ID == newestVerified,
			inUse[m.ID]:
			keep = append(keep, m.ID)
		default:
			remove = append(remove, m.ID)
		}
	}
	return keep, remove
}
