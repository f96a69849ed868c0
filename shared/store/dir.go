package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Dir is a Store in a local directory (a NAS mount, a second disk): key
// "a/b/c" is the file root/a/b/c. Files are 0600, directories 0700. A Put
// writes a temp file (".tmp-*") next to the target, fsyncs it and renames
// it into place, then fsyncs the directory; with IfNoneMatch it links the
// temp file instead of renaming, so of two racing Puts exactly one wins.
type Dir struct {
	root string
}

var _ Store = (*Dir)(nil)

// NewDir returns a Dir rooted at root (made absolute). The directory is
// created on the first Put if missing.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("dir store: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dir store %s: %w", root, err)
	}
	return &Dir{root: abs}, nil
}

func (d *Dir) String() string { return "dir:" + d.root }

func (d *Dir) path(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

func (d *Dir) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (Object, error) {
	obj, err := d.put(ctx, key, r, o)
	if err != nil {
		return Object{}, fmt.Errorf("put %s/%s: %w", d, key, err)
	}
	return obj, nil
}

func (d *Dir) put(ctx context.Context, key string, r io.Reader, o PutOptions) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, err
	}
	final := d.path(key)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Object{}, err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*") // 0600
	if err != nil {
		return Object{}, err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return Object{}, fmt.Errorf("after %d bytes: %w", n, err)
	}
	if err := checkSize(o, n); err != nil {
		return Object{}, err
	}
	if err := f.Sync(); err != nil {
		return Object{}, err
	}
	if err := f.Close(); err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, err
	}
	if o.IfNoneMatch {
		// link(2) fails with EEXIST if anything is at final: atomic create.
		if err := os.Link(tmp, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return Object{}, ErrExists
			}
			return Object{}, err
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, final); err != nil {
		return Object{}, err
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return Object{}, err
	}
	fi, err := os.Stat(final)
	if err != nil {
		return Object{}, err
	}
	return Object{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Modified: fi.ModTime()}, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func (d *Dir) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Object{}, fmt.Errorf("get %s/%s: %w", d, key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, Object{}, fmt.Errorf("get %s/%s: %w", d, key, err)
	}
	f, err := os.Open(d.path(key))
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s/%s: %w", d, key, notFound(err))
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, Object{}, fmt.Errorf("get %s/%s: %w", d, key, err)
	}
	return ctxReadCloser{ctxReader{ctx, f}, f}, objectOf(key, fi), nil
}

type ctxReadCloser struct {
	io.Reader
	io.Closer
}

func (d *Dir) Stat(ctx context.Context, key string) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, fmt.Errorf("stat %s/%s: %w", d, key, err)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("stat %s/%s: %w", d, key, err)
	}
	fi, err := os.Stat(d.path(key))
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotFound
	}
	if err != nil {
		return Object{}, fmt.Errorf("stat %s/%s: %w", d, key, notFound(err))
	}
	return objectOf(key, fi), nil
}

func (d *Dir) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", d, prefix, err)
	}
	// Walk only the deepest directory the prefix names.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = d.path(prefix[:i])
	}
	var out []Object
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) || !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) { // deleted while listing
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, objectOf(key, fi))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", d, prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", d, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s/%s: %w", d, key, err)
	}
	p := d.path(key)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil // a "directory" of other keys is not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s/%s: %w", d, key, err)
	}
	return nil
}

func objectOf(key string, fi fs.FileInfo) Object {
	return Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()}
}

// notFound maps a missing file (or a file where a directory was expected)
// to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return ErrNotFound
	}
	return err
}
