package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"backstop/shared/atomicfile"
	"backstop/shared/manifest"
)

// Resolve names the snapshot a restore means: id itself, or for "latest"
// (or "") the newest complete snapshot, local first, else the newest one in
// the store. verifiedOnly limits "latest" to verified local snapshots (the
// canary restores only what was proven restorable).
func (e *Engine) Resolve(ctx context.Context, id string, verifiedOnly bool) (string, error) {
	if id != "" && id != "latest" {
		if _, err := manifest.ParseID(id); err != nil {
			return "", fmt.Errorf("snapshot id %q: %w", id, err)
		}
		return id, nil
	}
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return "", err
	}
	if m, ok := cat.Newest(func(m manifest.Manifest) bool {
		return !verifiedOnly || m.Status == manifest.StatusVerified
	}); ok {
		return m.ID, nil
	}
	if verifiedOnly {
		return "", errors.New("no verified snapshot (probe verify marks one)")
	}
	if e.Store != nil {
		return e.newestRemote(ctx)
	}
	return "", fmt.Errorf("no snapshot in %s or the store", e.Dir)
}

// FetchLocked makes snapshot id local: when BACKUP_DIR/<id> is missing it
// downloads the files and the manifest from the store into <id>.partial,
// checks each file's SHA-256 against the manifest, renames it into place and
// adds it to the catalog. When signing, manifest.sig must verify before any
// part is read (see signing). The caller holds the lock.
func (e *Engine) FetchLocked(ctx context.Context, id string) (manifest.Manifest, error) {
	cat, err := e.reconcile()
	if err != nil {
		return manifest.Manifest{}, err
	}
	if m, ok := cat.Find(id); ok {
		if _, err := os.Stat(filepath.Join(e.Dir, id)); err == nil {
			return m, nil
		}
	}
	if e.Store == nil {
		return manifest.Manifest{}, fmt.Errorf("snapshot %s is not in %s and no store is configured", id, e.Dir)
	}
	// the signature is checked before any part is downloaded
	m, data, sig, err := e.remoteManifest(ctx, id)
	if err != nil {
		return m, err
	}
	partial := filepath.Join(e.Dir, id+".partial")
	os.RemoveAll(partial)
	if err := os.Mkdir(partial, 0o700); err != nil {
		return m, fmt.Errorf("create %s: %w", partial, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(partial)
		}
	}()
	type file struct {
		name, sha string
		size      int64
	}
	var files []file
	if m.DB != nil {
		files = append(files, file{m.DB.File, m.DB.SHA256, m.DB.Size})
	}
	if m.Data != nil {
		files = append(files, file{m.Data.File, m.Data.SHA256, m.Data.Size})
	}
	for _, f := range files {
		if err := e.download(ctx, id, partial, f.name, f.sha, f.size); err != nil {
			return m, err
		}
	}
	if err := atomicfile.Write(filepath.Join(partial, manifest.ManifestFile), data, 0o600); err != nil {
		return m, err
	}
	if err := writeSig(partial, sig); err != nil {
		return m, err
	}
	if err := os.Rename(partial, filepath.Join(e.Dir, id)); err != nil {
		return m, fmt.Errorf("rename %s: %w", partial, err)
	}
	ok = true
	if err := atomicfile.SyncDir(e.Dir); err != nil {
		return m, err
	}
	if err := cat.Upsert(m); err != nil {
		return m, err
	}
	return m, cat.Save(e.catalogPath())
}

func (e *Engine) download(ctx context.Context, id, dir, name, sha string, size int64) error {
	key := e.key(id, name)
	rc, _, err := e.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	defer rc.Close()
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := copySum(ctx, rc, f)
	if err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	if sum.SHA256 != sha || sum.Size != size {
		return fmt.Errorf("download %s: SHA-256 %s (%d bytes), the manifest says %s (%d bytes)", key, sum.SHA256, sum.Size, sha, size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// copySum copies r to w and returns the size and SHA-256 of what it copied.
func copySum(ctx context.Context, r io.Reader, w io.Writer) (Sum, error) {
	return SumReader(ctx, io.TeeReader(r, w))
}
