package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPruneDeletesOnlyWhatObjectLockReleased(t *testing.T) {
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	cases := []struct {
		name          string
		retention     time.Duration // of the older snapshot's copy
		catalogSays   time.Time     // overrides its retain_until when set
		wantPruned    bool
		wantNote      string
		wantVersionsA int
	}{
		{"retention over: versions deleted", 2 * time.Second, time.Time{}, true, "", 0},
		{"retention running: kept, no delete tried", 24 * time.Hour, time.Time{}, false, "kept by Object Lock until ", 3},
		{"S3 refuses the delete: kept", 24 * time.Hour, time.Now().Add(-time.Hour), false, "vault refused to delete ", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			cfg := r.config("psyfit-prod")
			// Two snapshots on one day: GFS keeps the newer only.
			a := r.putSnapshot(t, "psyfit-prod", day.Add(1*time.Hour), 10<<10, 10<<10)
			b := r.putSnapshot(t, "psyfit-prod", day.Add(2*time.Hour), 10<<10, 10<<10)
			short := cfg
			short.Retention = c.retention
			invoke(t, r.handler(t, short), r.s3Notification(a))
			h := r.handler(t, cfg)
			invoke(t, h, r.s3Notification(b))
			if !c.catalogSays.IsZero() {
				err := updateCatalog(context.Background(), r.s3, r.srv.Bucket, "psyfit-prod", "psyfit-prod", func(cat *Catalog) bool {
					cat.Snapshots[a.ID].RetainUntil = c.catalogSays
					return true
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if c.retention < time.Minute {
				time.Sleep(c.retention + 1500*time.Millisecond) // Object Lock releases the copy
			}

			res := invoke(t, h, readTestdata(t, "scheduled-event.json"))
			rep := res.Watched[0]
			if got := slices.Contains(rep.Pruned, a.ID); got != c.wantPruned || slices.Contains(rep.Pruned, b.ID) || slices.Contains(rep.PendingPrune, b.ID) {
				t.Errorf("report %+v: want %s pruned %v, %s kept", rep, a.ID, c.wantPruned, b.ID)
			}
			versions := r.versions(t, a.ManifestKey[:strings.LastIndex(a.ManifestKey, "/")+1])
			n := 0
			for _, vs := range versions {
				n += len(vs)
			}
			if n != c.wantVersionsA {
				t.Errorf("vault versions of the older snapshot: %v, want %d", versions, c.wantVersionsA)
			}
			if got := r.versions(t, b.ManifestKey[:strings.LastIndex(b.ManifestKey, "/")+1]); len(got) != 3 {
				t.Errorf("vault versions of the kept snapshot: %v", got)
			}
			cat := r.catalog(t, "psyfit-prod")
			ea := cat.Snapshots[a.ID]
			switch {
			case c.wantPruned && ea != nil:
				t.Errorf("pruned snapshot still in the catalog: %+v", ea)
			case !c.wantPruned && (ea == nil || !ea.PendingPrune || !strings.HasPrefix(ea.PruneNote, c.wantNote) || len(ea.Objects) != 3):
				t.Errorf("catalog entry %+v: want pending_prune with a note starting %q and its 3 objects", ea, c.wantNote)
			case cat.Snapshots[b.ID] == nil || cat.Snapshots[b.ID].PendingPrune:
				t.Errorf("kept snapshot's entry %+v", cat.Snapshots[b.ID])
			}
		})
	}
}
