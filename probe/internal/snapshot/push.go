package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"backstop/shared/manifest"
	"backstop/shared/store"
)

// Push uploads snapshots that are not yet off-site (or only id, when set)
// from their local files: the dump and the archive first, each checked
// against the manifest's SHA-256 as the store computed it, then
// manifest.json last. Every object is written once (If-None-Match): one
// already in the store with the same SHA-256 (an earlier partial push)
// counts as uploaded, one with other contents fails the push; nothing in
// the store is replaced or deleted.
func (e *Engine) Push(ctx context.Context, id string) ([]string, error) {
	if e.Store == nil {
		return nil, errors.New("no store configured (store.s3 or store.dir)")
	}
	unlock, err := Lock(e.Dir, "push")
	if err != nil {
		return nil, err
	}
	defer unlock()
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return nil, err
	}
	var todo []manifest.Manifest
	if id != "" {
		m, ok := cat.Find(id)
		if !ok {
			return nil, fmt.Errorf("no snapshot %s in %s", id, e.Dir)
		}
		todo = append(todo, m)
	} else {
		for _, m := range cat.Snapshots {
			if m.Offsite == nil {
				todo = append(todo, m)
			}
		}
	}
	var pushed []string
	var errs []error
	// oldest first, so an interrupted push leaves the older ones done
	for i := len(todo) - 1; i >= 0; i-- {
		m := todo[i]
		if err := e.pushOne(ctx, &m); err != nil {
			errs = append(errs, fmt.Errorf("push %s: %w", m.ID, err))
			continue
		}
		if err := cat.Upsert(m); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := cat.Save(e.catalogPath()); err != nil {
			errs = append(errs, err)
			continue
		}
		pushed = append(pushed, m.ID)
	}
	return pushed, errors.Join(errs...)
}

func (e *Engine) pushOne(ctx context.Context, m *manifest.Manifest) error {
	dir := filepath.Join(e.Dir, m.ID)
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
		if err := e.putFile(ctx, dir, m.ID, f.name, f.sha, f.size); err != nil {
			return err
		}
	}
	return e.putManifest(ctx, m, dir)
}

func (e *Engine) putFile(ctx context.Context, dir, id, name, sha string, size int64) error {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	key := e.key(id, name)
	obj, err := e.putOnce(ctx, key, f, store.PutOptions{Size: size, ContentType: "application/zstd"}, sha)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	if obj.SHA256 != sha {
		return fmt.Errorf("upload %s: the store computed SHA-256 %s, the manifest says %s (local file changed since the backup? run probe verify %s)", key, obj.SHA256, sha, id)
	}
	return nil
}

// List returns the local catalog's snapshots, newest first.
func (e *Engine) List() ([]manifest.Manifest, error) {
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return nil, err
	}
	return cat.Snapshots, nil
}

// ListRemote returns the snapshots in the store whose manifest arrived
// (the manifest is uploaded last: without it a snapshot is incomplete and
// not listed), newest first.
func (e *Engine) ListRemote(ctx context.Context) ([]manifest.Manifest, error) {
	if e.Store == nil {
		return nil, errors.New("no store configured (store.s3 or store.dir)")
	}
	objs, err := e.Store.List(ctx, e.Host+"/snapshots/")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", e.Store, err)
	}
	var out []manifest.Manifest
	for _, o := range objs {
		if filepath.Base(o.Key) != manifest.ManifestFile {
			continue
		}
		data, err := e.getSmall(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		m, err := manifest.Decode(data)
		if err != nil {
			e.log().Warn("unreadable remote manifest", "key", o.Key, "err", err)
			continue
		}
		out = append(out, m)
	}
	manifest.SortNewestFirst(out)
	return out, nil
}
