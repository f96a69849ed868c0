package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"backstop/shared/manifest"
)

// Limits of one listing: keys read under <host>/snapshots/, and manifests
// read (the newest ones; Truncated says when older ones were left out).
const (
	maxObjects   = 20000
	maxSnapshots = 200
	readers      = 8 // manifests read at once
)

// ListResponse answers {"action":"list"}.
type ListResponse struct {
	Host      string         `json:"host"`
	Snapshots []SnapshotInfo `json:"snapshots"` // newest first
	Truncated bool           `json:"truncated,omitempty"`
	Vault     string         `json:"vault"` // where the vaulted flags come from
	Note      string         `json:"note,omitempty"`
}

// SnapshotInfo is one snapshot as the store holds it.
type SnapshotInfo struct {
	ID         string     `json:"id"`
	CreatedAt  time.Time  `json:"created_at,omitzero"`
	Trigger    string     `json:"trigger,omitempty"`
	Notes      string     `json:"notes,omitempty"`
	Revision   string     `json:"revision,omitempty"`   // the app's git revision
	Image      string     `json:"image,omitempty"`      // the app container's image
	Migration  string     `json:"migration,omitempty"`  // "alembic 0042_add_visits"
	Parts      []string   `json:"parts,omitempty"`      // db, data, code: what it can restore
	DBSize     int64      `json:"db_size,omitempty"`    // bytes, compressed
	DataSize   int64      `json:"data_size,omitempty"`  // bytes, compressed
	Size       string     `json:"size"`                 // the total, for people: "1.2 GiB"
	Complete   bool       `json:"complete"`             // manifest and every part present with its size
	Verified   bool       `json:"verified"`             // the probe re-read its checksums after the backup
	Vaulted    bool       `json:"vaulted"`              // the vault catalog lists a copy
	VaultCopy  *vaultCopy `json:"vault_copy,omitempty"` // where and until when the vault keeps it
	Restorable bool       `json:"restorable"`           // complete, and vaulted when the function requires it
	Problem    string     `json:"problem,omitempty"`    // why it is not complete or not restorable
}

// List answers {"action":"list","host":...}: the host's snapshots in S3
// with their manifests' facts, newest first.
func (h *Handler) List(ctx context.Context, req Request) (*ListResponse, error) {
	if err := h.checkHost(req.Host); err != nil {
		return nil, err
	}
	snaps, truncated, err := h.scan(ctx, req.Host, "")
	if err != nil {
		return nil, err
	}
	vault, err := h.vaultCatalog(ctx, req.Host)
	if err != nil {
		return nil, err
	}
	resp := &ListResponse{Host: req.Host, Snapshots: []SnapshotInfo{}, Truncated: truncated, Vault: vault.describe()}
	for _, s := range snaps {
		resp.Snapshots = append(resp.Snapshots, h.info(s, vault))
	}
	switch {
	case len(snaps) == 0:
		resp.Note = fmt.Sprintf("no snapshots under s3://%s/%s", h.Bucket, h.hostKey(req.Host, "snapshots/"))
	case truncated:
		resp.Note = fmt.Sprintf("only the newest %d snapshots are listed", len(snaps))
	}
	return resp, nil
}

// snapshot is one snapshot directory in the store.
type snapshot struct {
	id      string
	m       *manifest.Manifest // nil: no manifest, or one that does not decode
	objects map[string]int64   // file name -> size
	problem string             // "" when complete
}

// scan lists <host>/snapshots/ (or only <host>/snapshots/<onlyID>/),
// reads the manifests of the newest maxSnapshots snapshots and checks each
// snapshot's parts against its manifest. A manifest that cannot be read
// is a problem of its snapshot, not an error of the scan.
func (h *Handler) scan(ctx context.Context, host, onlyID string) ([]*snapshot, bool, error) {
	base := h.hostKey(host, "snapshots/")
	prefix := base
	if onlyID != "" {
		prefix += onlyID + "/"
	}
	objs, truncated, err := h.list(ctx, prefix, maxObjects)
	if err != nil {
		return nil, false, err
	}
	byID := map[string]*snapshot{}
	for _, o := range objs {
		id, file, ok := strings.Cut(strings.TrimPrefix(o.Key, base), "/")
		if !ok || file == "" || strings.Contains(file, "/") {
			continue
		}
		s := byID[id]
		if s == nil {
			s = &snapshot{id: id, objects: map[string]int64{}}
			byID[id] = s
		}
		s.objects[file] = o.Size
	}
	var snaps []*snapshot
	for _, s := range byID {
		snaps = append(snaps, s)
	}
	// Ids begin with their UTC time: the newest sort last.
	slices.SortFunc(snaps, func(a, b *snapshot) int { return strings.Compare(b.id, a.id) })
	if len(snaps) > maxSnapshots {
		snaps, truncated = snaps[:maxSnapshots], true
	}

	var wg sync.WaitGroup
	sem := make(chan struct{}, readers)
	errs := make([]error, len(snaps))
	for i, s := range snaps {
		if _, ok := s.objects[manifest.ManifestFile]; !ok {
			s.problem = "incomplete: no manifest.json (the upload is in progress, or failed and `probe push` has not finished it)"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = h.readManifest(ctx, host, base, s)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, false, err
	}
	return snaps, truncated, nil
}

// readManifest reads s's manifest and checks its parts. Only S3 failures
// are returned; a manifest that is not valid is s.problem.
func (h *Handler) readManifest(ctx context.Context, host, base string, s *snapshot) error {
	data, err := h.get(ctx, base+s.id+"/"+manifest.ManifestFile)
	if errors.Is(err, errNotFound) {
		s.problem = "incomplete: manifest.json vanished while listing (deleted by retention?)"
		return nil
	}
	if err != nil {
		return err
	}
	m, err := manifest.Decode(data)
	if err != nil {
		s.problem = "manifest.json unreadable: " + err.Error()
		return nil
	}
	switch {
	case m.ID != s.id:
		s.problem = fmt.Sprintf("manifest.json is that of snapshot %q, not %q", m.ID, s.id)
		return nil
	case m.Host != host:
		s.problem = fmt.Sprintf("manifest.json is that of host %q, not %q", m.Host, host)
		return nil
	}
	s.m = &m
	type part struct {
		file string
		size int64
	}
	var parts []part
	if m.DB != nil {
		parts = append(parts, part{m.DB.File, m.DB.Size})
	}
	if m.Data != nil {
		parts = append(parts, part{m.Data.File, m.Data.Size})
	}
	var probs []string
	for _, p := range parts {
		switch size, ok := s.objects[p.file]; {
		case !ok:
			probs = append(probs, p.file+" is missing")
		case size != p.size:
			probs = append(probs, fmt.Sprintf("%s is %d bytes, the manifest says %d", p.file, size, p.size))
		}
	}
	if len(probs) > 0 {
		s.problem = "incomplete: " + strings.Join(probs, "; ")
	}
	return nil
}

// parts returns what m can restore, in the order db, data, code.
func parts(m *manifest.Manifest) []string {
	var p []string
	if m.DB != nil {
		p = append(p, "db")
	}
	if m.Data != nil {
		p = append(p, "data")
	}
	if m.App.Revision != "" || m.App.Image != "" {
		p = append(p, "code")
	}
	return p
}

// info describes s for the list, with its vault flag.
func (h *Handler) info(s *snapshot, vault *vaultCatalog) SnapshotInfo {
	in := SnapshotInfo{ID: s.id, Problem: s.problem}
	var total int64
	for _, size := range s.objects {
		total += size
	}
	in.Size = humanBytes(total)
	in.Vaulted, in.VaultCopy = vault.has(s.id), vault.copyOf(s.id)
	if m := s.m; m != nil {
		in.CreatedAt, in.Trigger, in.Notes = m.CreatedAt, string(m.Trigger), m.Notes
		in.Revision, in.Image = m.App.Revision, m.App.Image
		in.Parts = parts(m)
		in.Verified = m.Status == manifest.StatusVerified
		if m.DB != nil {
			in.DBSize = m.DB.Size
			if mig := m.DB.Migration; mig.Tool != "" && mig.Tool != manifest.ToolNone {
				in.Migration = mig.Tool + " " + mig.Revision
			}
		}
		if m.Data != nil {
			in.DataSize = m.Data.Size
		}
	}
	in.Complete = s.m != nil && s.problem == ""
	in.Restorable = in.Complete && (in.Vaulted || !h.RequireVault)
	if in.Complete && !in.Restorable {
		in.Problem = "no vault copy yet (the offsite function copies each snapshot after its manifest lands)"
	}
	return in
}

// humanBytes formats n in binary units: "512 B", "1.2 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
