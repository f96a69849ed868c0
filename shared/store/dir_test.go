package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"backstop/shared/store"
	"backstop/shared/store/storetest"
)

func newDir(t *testing.T) *store.Dir {
	t.Helper()
	d, err := store.NewDir(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store { return newDir(t) })
}

// TestDirFiles checks what a Dir leaves on disk: owner-only permissions,
// the file where the key says, no temp files after failed or racing Puts.
func TestDirFiles(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	d, err := store.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.String(), "dir:"+root; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	if _, err := d.Put(ctx, "h/snapshots/1/db.zst", strings.NewReader("dump"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Put(ctx, "h/broken", errReader{}, store.PutOptions{}); err == nil {
		t.Fatal("put from a failing reader succeeded")
	}
	// Many racing conditional Puts: one winner, no temp file left behind.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			_, err := d.Put(ctx, "h/claim", strings.NewReader(fmt.Sprint(i)), store.PutOptions{IfNoneMatch: true})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrExists):
				t.Errorf("racing put %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of 8 racing conditional puts won; want 1", wins)
	}

	// "h" holds keys but is no object: deleting it is a no-op.
	if err := d.Delete(ctx, "h/snapshots"); err != nil {
		t.Errorf("delete h/snapshots (a directory of keys): %v; want nil", err)
	}

	want := map[string]fs.FileMode{
		".":                    0o700 | fs.ModeDir,
		"h":                    0o700 | fs.ModeDir,
		"h/snapshots":          0o700 | fs.ModeDir,
		"h/snapshots/1":        0o700 | fs.ModeDir,
		"h/snapshots/1/db.zst": 0o600,
		"h/claim":              0o600,
	}
	got := map[string]fs.FileMode{}
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("files under the root:\n got %v\nwant %v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(root, "h/snapshots/1/db.zst")); err != nil || string(b) != "dump" {
		t.Errorf("h/snapshots/1/db.zst = %q, %v", b, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

func TestNewDirEmpty(t *testing.T) {
	if _, err := store.NewDir(""); err == nil || err.Error() != "dir store: empty root" {
		t.Errorf("NewDir(\"\") = %v; want \"dir store: empty root\"", err)
	}
}
