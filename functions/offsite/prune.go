package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
	"backstop/shared/manifest"
)

// prune removes from the vault the copies of the host's snapshots that
// DefaultGFS no longer keeps. Each vault version is deleted by its id
// (never a delete marker). Object Lock decides what goes: a copy whose
// retention has not ended (by the catalog, or by S3 answering AccessDenied)
// stays, marked pending_prune in the catalog, and goes in a later run after
// its retention; a version already gone counts as deleted. Entries whose
// versions are all gone leave the catalog. It returns the snapshots
// removed and those pending.
func (h *Handler) prune(ctx context.Context, hostPrefix, host string, cat *Catalog) (pruned, pending []string, err error) {
	ids := cat.sortedIDs()
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = cat.Snapshots[id].CreatedAt
		if times[i].IsZero() {
			times[i], _ = manifest.ParseID(id)
		}
	}
	keep := DefaultGFS.Keep(times)
	now := h.now()
	type outcome struct {
		deleted map[string]bool // "<key>\x00<version>"
		note    string
	}
	results := map[string]*outcome{}
	for i, id := range ids {
		if keep[i] {
			continue
		}
		e := cat.Snapshots[id]
		out := &outcome{deleted: map[string]bool{}}
		results[id] = out
		if e.RetainUntil.After(now) {
			out.note = "kept by Object Lock until " + e.RetainUntil.UTC().Format(time.RFC3339)
			continue
		}
		for _, o := range slices.Concat(e.Objects, e.Superseded) {
			_, err := h.Vault.DeleteObject(ctx, &s3.DeleteObjectInput{
				Bucket: aws.String(e.VaultBucket), Key: aws.String(o.Key), VersionId: aws.String(o.VersionID),
			})
			switch {
			case err == nil || s3err.IsNotFound(err):
				out.deleted[o.Key+"\x00"+o.VersionID] = true
			case s3err.IsAccessDenied(err):
				out.note = fmt.Sprintf("vault refused to delete %s version %s (Object Lock): kept until its retention ends", o.Key, o.VersionID)
				h.log().Info("vault copy kept by Object Lock", "host", host, "snapshot", id, "object", "s3://"+e.VaultBucket+"/"+o.Key, "version", o.VersionID, "error", err.Error())
			default:
				return nil, nil, fmt.Errorf("prune snapshot %s of %s: delete s3://%s/%s version %s: %w", id, host, e.VaultBucket, o.Key, o.VersionID, err)
			}
		}
	}
	if len(results) == 0 {
		return nil, nil, nil
	}
	err = updateCatalog(ctx, h.Src, h.Cfg.SourceBucket, hostPrefix, host, func(c *Catalog) bool {
		pruned, pending = nil, nil
		changed := false
		for id, out := range results {
			e := c.Snapshots[id]
			if e == nil {
				continue
			}
			gone := func(o VaultObject) bool { return out.deleted[o.Key+"\x00"+o.VersionID] }
			e.Objects = slices.DeleteFunc(e.Objects, gone)
			e.Superseded = slices.DeleteFunc(e.Superseded, gone)
			if len(e.Objects)+len(e.Superseded) == 0 {
				delete(c.Snapshots, id)
				pruned = append(pruned, id)
				changed = true
				continue
			}
			pending = append(pending, id)
			if !e.PendingPrune || e.PruneNote != out.note || len(out.deleted) > 0 {
				changed = true
			}
			if !e.PendingPrune {
				e.PendingPrune, e.PruneSince = true, now.UTC()
			}
			e.PruneNote = out.note
			e.Keys = e.Keys[:0]
			e.Size = 0
			for _, o := range e.Objects {
				e.Keys = append(e.Keys, o.Key)
				e.Size += o.Size
			}
		}
		slices.Sort(pruned)
		slices.Sort(pending)
		return changed
	})
	if err != nil {
		return nil, nil, fmt.Errorf("prune %s: %w", host, err)
	}
	for _, id := range pruned {
		h.log().Info("vault copy pruned", "host", host, "snapshot", id)
	}
	return pruned, pending, nil
}
