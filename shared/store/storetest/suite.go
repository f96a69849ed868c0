package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"backstop/shared/store"
)

// MiB is a mebibyte, for sizes in tests.
const MiB = 1 << 20

// RunConformance checks that the Stores newStore makes keep the Store
// contract. newStore is called once per subtest and must return an empty
// store of its own. S3 stores should use a 5 MiB part size, so the large
// cases exercise multipart uploads, their aborts and their boundaries.
func RunConformance(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, newStore(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("IfNoneMatch", func(t *testing.T) { testIfNoneMatch(t, newStore(t)) })
	t.Run("IfNoneMatchRace", func(t *testing.T) { testIfNoneMatchRace(t, newStore(t)) })
	t.Run("FailedPut", func(t *testing.T) { testFailedPut(t, newStore(t)) })
	t.Run("InvalidKey", func(t *testing.T) { testInvalidKey(t, newStore(t)) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Random returns a reader of n pseudo-random bytes drawn from seed, of
// unknown length to its consumer (no Len, Seek or WriteTo), and the hex
// SHA-256 of those bytes.
func Random(seed uint64, n int64) (io.Reader, string) {
	h := sha256.New()
	io.Copy(h, io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n))
	return struct{ io.Reader }{io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n)}, hex.EncodeToString(h.Sum(nil))
}

func seedBytes(seed uint64) (s [32]byte) {
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// readAll gets key and returns its size and hex SHA-256.
func readAll(t *testing.T, ctx context.Context, s store.Store, key string) (int64, string, store.Object) {
	t.Helper()
	rc, obj, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), obj
}

func put(t *testing.T, ctx context.Context, s store.Store, key, body string) store.Object {
	t.Helper()
	obj, err := s.Put(ctx, key, strings.NewReader(body), store.PutOptions{Size: int64(len(body))})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return obj
}

func getString(t *testing.T, ctx context.Context, s store.Store, key string) string {
	t.Helper()
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b)
}

// wantGone asserts nothing is visible under key: Stat and Get say
// ErrNotFound and List does not show it.
func wantGone(t *testing.T, ctx context.Context, s store.Store, key string) {
	t.Helper()
	if obj, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat %s: got %+v, %v; want ErrNotFound", key, obj, err)
	}
	if rc, _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("get %s: got %v; want ErrNotFound", key, err)
	}
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, o := range objs {
		if o.Key == key {
			t.Errorf("list shows %s (%d bytes); want nothing", key, o.Size)
		}
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	tests := []struct {
		name string
		key  string
		size int64
	}{
		{"empty", "rt/empty", 0},
		{"one byte", "rt/one", 1},
		{"one part exactly", "rt/deep/er/part", 5 * MiB},
		{"one part and a byte", "rt/part+1", 5*MiB + 1},
		{"40 MiB streamed", "rt/big.bin", 40 * MiB},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, sum := Random(uint64(i+1), tc.size)
			obj, err := s.Put(ctx, tc.key, r, store.PutOptions{Size: -1, ContentType: "application/octet-stream"})
			if err != nil {
				t.Fatalf("put %s: %v", tc.key, err)
			}
			if obj.Key != tc.key || obj.Size != tc.size || obj.SHA256 != sum {
				t.Errorf("put %s returned %+v; want key %s, size %d, sha256 %s", tc.key, obj, tc.key, tc.size, sum)
			}
			n, got, gobj := readAll(t, ctx, s, tc.key)
			if n != tc.size || got != sum {
				t.Errorf("get %s: %d bytes sha256 %s; want %d bytes sha256 %s", tc.key, n, got, tc.size, sum)
			}
			if gobj.Key != tc.key || gobj.Size != tc.size || (gobj.SHA256 != "" && gobj.SHA256 != sum) {
				t.Errorf("get %s object %+v; want size %d, sha256 %s or unknown", tc.key, gobj, tc.size, sum)
			}
			st, err := s.Stat(ctx, tc.key)
			if err != nil {
				t.Fatalf("stat %s: %v", tc.key, err)
			}
			if st.Key != tc.key || st.Size != tc.size || (st.SHA256 != "" && st.SHA256 != sum) || st.Modified.IsZero() {
				t.Errorf("stat %s: %+v; want size %d, sha256 %s or unknown, a modification time", tc.key, st, tc.size, sum)
			}
		})
	}
}

func testReplace(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "r/key", "first version")
	obj := put(t, ctx, s, "r/key", "second")
	if got := getString(t, ctx, s, "r/key"); got != "second" {
		t.Errorf("after replace, get r/key = %q; want %q", got, "second")
	}
	if obj.Size != 6 {
		t.Errorf("replace returned size %d; want 6", obj.Size)
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	for _, k := range []string{"l/ba", "l/b/d", "m/x", "l/a", "l2/y", "l/b/c"} {
		put(t, ctx, s, k, "body of "+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"l/a", "l/b/c", "l/b/d", "l/ba", "l2/y", "m/x"}},
		{"l/", []string{"l/a", "l/b/c", "l/b/d", "l/ba"}},
		{"l/b", []string{"l/b/c", "l/b/d", "l/ba"}},
		{"l/b/", []string{"l/b/c", "l/b/d"}},
		{"l", []string{"l/a", "l/b/c", "l/b/d", "l/ba", "l2/y"}},
		{"m/x", []string{"m/x"}},
		{"nothing/", nil},
		{"l/b/c/", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("prefix %q", tc.prefix), func(t *testing.T) {
			objs, err := s.List(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("list %q: %v", tc.prefix, err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Key)
				if want := int64(len("body of " + o.Key)); o.Size != want {
					t.Errorf("list %q: %s size %d; want %d", tc.prefix, o.Key, o.Size, want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("list %q = %v; want %v", tc.prefix, got, tc.want)
			}
		})
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "d/keep", "keep")
	put(t, ctx, s, "d/gone", "gone")
	if err := s.Delete(ctx, "d/gone"); err != nil {
		t.Fatalf("delete d/gone: %v", err)
	}
	wantGone(t, ctx, s, "d/gone")
	if got := getString(t, ctx, s, "d/keep"); got != "keep" {
		t.Errorf("after deleting a sibling, d/keep = %q", got)
	}
	for _, k := range []string{"d/gone", "never/was"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("delete %s (not an object): %v; want nil (idempotent)", k, err)
		}
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "dir/file", "x")
	for _, key := range []string{"no/such/key", "dir", "dir/file/below"} {
		_, err := s.Stat(ctx, key)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("stat %s: %v; want ErrNotFound", key, err)
		}
		rc, _, err := s.Get(ctx, key)
		if rc != nil {
			rc.Close()
		}
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get %s: %v; want ErrNotFound", key, err)
		}
		if err != nil && (!strings.Contains(err.Error(), s.String()) || !strings.Contains(err.Error(), key)) {
			t.Errorf("get %s: error %q does not name the store %s and the key", key, err, s)
		}
	}
}

func testIfNoneMatch(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	tests := []struct {
		name string
		size int64
	}{
		{"single part", 100},
		{"multipart", 11 * MiB},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("inm/%d", i)
			r, sum := Random(uint64(100+i), tc.size)
			if _, err := s.Put(ctx, key, r, store.PutOptions{IfNoneMatch: true, Size: -1}); err != nil {
				t.Fatalf("first conditional put %s: %v", key, err)
			}
			r2, _ := Random(uint64(200+i), tc.size)
			_, err := s.Put(ctx, key, r2, store.PutOptions{IfNoneMatch: true, Size: -1})
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("second conditional put %s: %v; want ErrExists", key, err)
			}
			if _, got, _ := readAll(t, ctx, s, key); got != sum {
				t.Errorf("after a lost conditional put, %s has sha256 %s; want the first body's %s", key, got, sum)
			}
		})
	}
}

func testIfNoneMatchRace(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	for round := range 5 {
		key := fmt.Sprintf("race/claim-%d", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [2]error
		)
		for g := range 2 {
			wg.Go(func() {
				<-start
				_, errs[g] = s.Put(ctx, key, strings.NewReader(fmt.Sprintf("claimed by %d", g)),
					store.PutOptions{IfNoneMatch: true, Size: -1})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for g, err := range errs {
			switch {
			case err == nil && winner == -1:
				winner = g
			case err == nil:
				t.Fatalf("round %d: both conditional puts of %s succeeded", round, key)
			case !errors.Is(err, store.ErrExists):
				t.Fatalf("round %d: put %s by %d: %v; want nil or ErrExists", round, key, g, err)
			}
		}
		if winner == -1 {
			t.Fatalf("round %d: no conditional put of %s succeeded: %v", round, key, errs)
		}
		if got, want := getString(t, ctx, s, key), fmt.Sprintf("claimed by %d", winner); got != want {
			t.Errorf("round %d: %s = %q; want the winner's %q", round, key, got, want)
		}
	}
}

var errBoom = errors.New("source broke")

// failingReader yields n random bytes, then calls at (if set) and goes on
// for more bytes, or fails with errBoom.
type failingReader struct {
	r   io.Reader
	n   int64
	at  func()
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		if f.at != nil {
			f.at()
			f.at = nil
			f.n = 1 << 62
		} else {
			return 0, f.err
		}
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func testFailedPut(t *testing.T, s store.Store) {
	tests := []struct {
		name    string
		after   int64 // bytes read before the failure
		cancel  bool  // cancel ctx instead of failing the read
		size    int64 // PutOptions.Size
		wantErr error
	}{
		{"reader fails at once", 0, false, -1, errBoom},
		{"reader fails in the first part", 1 * MiB, false, -1, errBoom},
		{"reader fails in a later part", 12 * MiB, false, -1, errBoom},
		{"cancel in the first part", 1024, true, -1, context.Canceled},
		{"cancel in a later part", 12 * MiB, true, -1, context.Canceled},
		{"short body for its size", 3 * MiB, false, 4 * MiB, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("fail/%d", i)
			fresh := key + "-fresh"
			put(t, ctxFor(t), s, key, "old content")

			for _, k := range []string{key, fresh} {
				ctx, cancel := context.WithCancel(ctxFor(t))
				src := &failingReader{r: rand.NewChaCha8(seedBytes(uint64(i))), n: tc.after, err: errBoom}
				if tc.cancel {
					src.at = cancel
				}
				if tc.wantErr == nil {
					src.err = io.EOF
				}
				obj, err := s.Put(ctx, k, src, store.PutOptions{Size: tc.size})
				cancel()
				switch {
				case err == nil:
					t.Fatalf("put %s: succeeded (%+v); want an error", k, obj)
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Fatalf("put %s: %v; want %v", k, err, tc.wantErr)
				case tc.wantErr == nil && !strings.Contains(err.Error(), fmt.Sprintf("read %d bytes, expected %d", tc.after, tc.size)):
					t.Fatalf("put %s: %v; want the byte counts", k, err)
				case !strings.Contains(err.Error(), k):
					t.Errorf("put %s: error %q does not name the key", k, err)
				}
			}
			ctx := ctxFor(t)
			if got := getString(t, ctx, s, key); got != "old content" {
				t.Errorf("after a failed put, %s = %.40q; want the old content", key, got)
			}
			wantGone(t, ctx, s, fresh)
		})
	}
	t.Run("ctx cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctxFor(t))
		cancel()
		if _, err := s.Put(ctx, "fail/pre", strings.NewReader("x"), store.PutOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("put with a cancelled ctx: %v; want context.Canceled", err)
		}
		wantGone(t, ctxFor(t), s, "fail/pre")
	})
}

func testInvalidKey(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	for _, key := range []string{"", "/abs", "a//b", "a/", "a/../b", "..", ".", "a/./b", "../escape", ".tmp-x", "a/.tmp-y/z", "nul\x00", `back\slash`} {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			if _, err := s.Put(ctx, key, bytes.NewReader([]byte("x")), store.PutOptions{}); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("put %q: %v; want ErrInvalidKey", key, err)
			}
			if rc, _, err := s.Get(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				if rc != nil {
					rc.Close()
				}
				t.Errorf("get %q: %v; want ErrInvalidKey", key, err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("stat %q: %v; want ErrInvalidKey", key, err)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("delete %q: %v; want ErrInvalidKey", key, err)
			}
		})
	}
	for _, prefix := range []string{"/abs", "../", "a//", "a/../"} {
		if _, err := s.List(ctx, prefix); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("list %q: %v; want ErrInvalidKey", prefix, err)
		}
	}
	objs, err := s.List(ctx, "")
	if err != nil || len(objs) != 0 {
		t.Errorf("after invalid keys, list = %v, %v; want nothing stored", objs, err)
	}
}
