package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// entry is what the test expects of one archived path, read from the
// file system with lstat independently of WriteTar.
type entry struct {
	mode     fs.FileMode
	mtime    time.Time
	size     int64
	sha      string
	link     string
	uid, gid int
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func write(t *testing.T, path string, data []byte, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a data directory with every kind of entry WriteTar must
// handle and returns it with the names that must be skipped.
func makeTree(t *testing.T, bigSize int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	mt := time.Date(2024, 11, 3, 4, 5, 6, 123456789, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, bigSize)
	for i := range big { // half random, half text: compressible like real data
		if i%2 == 0 {
			big[i] = byte(rng.Uint32())
		} else {
			big[i] = "lorem ipsum "[i%12]
		}
	}
	write(t, filepath.Join(dir, "a/b/c/deep.txt"), []byte("deep\n"), 0o640, mt)
	write(t, filepath.Join(dir, "a.txt"), []byte("sorts between a and a/"), 0o644, mt.Add(time.Hour))
	write(t, filepath.Join(dir, "empty.txt"), nil, 0o600, mt)
	write(t, filepath.Join(dir, "bin/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, mt)
	write(t, filepath.Join(dir, "写真/日本語ファイル.txt"), []byte("こんにちは"), 0o644, mt)
	write(t, filepath.Join(dir, "café/naïve ☃.txt"), []byte("snow"), 0o644, mt)
	write(t, filepath.Join(dir, "uploads/big.bin"), big, 0o644, mt)
	write(t, filepath.Join(dir, "uploads/owned.txt"), []byte("owned"), 0o644, mt)
	long := filepath.Join(dir, strings.Repeat("long-directory-name/", 8), "file-with-a-name-past-the-ustar-limit.txt")
	write(t, long, []byte("long"), 0o644, mt)
	if err := os.Chown(filepath.Join(dir, "uploads/owned.txt"), 1234, 5678); err != nil {
		t.Logf("chown (uid/gid check limited to the current user): %v", err)
	}
	if err := os.Link(filepath.Join(dir, "a.txt"), filepath.Join(dir, "hardlink.txt")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"emptydir", "empty/inner"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"link-to-file": "a/b/c/deep.txt",
		"link-to-dir":  "a",
		"dangling":     "nowhere/x",
		"abs-link":     "/etc/hostname",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// Directory mtimes last, after their contents were created.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chtimes(p, mt.Add(-time.Minute), mt.Add(-time.Minute))
		}
		return nil
	})
	return dir
}

// expectTree lists dir the way the test expects it archived: walk order,
// names relative with "/", directories with a trailing "/".
func expectTree(t *testing.T, dir string) (names []string, want map[string]entry) {
	t.Helper()
	want = map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), mtime: fi.ModTime(), uid: int(st.Uid), gid: int(st.Gid)}
		switch {
		case fi.IsDir():
			name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.link, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size, e.sha = int64(len(data)), sha(data)
		default:
			return nil // sockets, FIFOs
		}
		names = append(names, name)
		want[name] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, want
}

// readTarZst decompresses and reads every entry of a .tar.zst with the
// standard library, as a restore would.
func readTarZst(t *testing.T, data []byte) (names []string, got map[string]entry) {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	got = map[string]entry{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if hdr.Format != tar.FormatPAX && hdr.Format != tar.FormatUSTAR {
			t.Errorf("%s: format %v, want PAX (or its USTAR subset)", hdr.Name, hdr.Format)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		e := entry{mode: hdr.FileInfo().Mode(), mtime: hdr.ModTime, link: hdr.Linkname, uid: hdr.Uid, gid: hdr.Gid}
		if hdr.Typeflag == tar.TypeReg {
			e.size, e.sha = hdr.Size, sha(content)
		}
		if !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			t.Errorf("%s: atime/ctime stored (archives would differ run to run)", hdr.Name)
		}
		names = append(names, hdr.Name)
		got[hdr.Name] = e
	}
	return names, got
}

func TestWriteTarRoundTrip(t *testing.T) {
	dir := makeTree(t, 20<<20)
	ctx := context.Background()

	var out bytes.Buffer
	sink, err := NewSink(&out, DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := WriteTar(ctx, dir, sink)
	if err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sum := sink.Sum()
	if sum.Size != int64(out.Len()) || sum.SHA256 != sha(out.Bytes()) {
		t.Fatalf("Sum %+v does not describe the %d compressed bytes written (sha %s)", sum, out.Len(), sha(out.Bytes()))
	}
	if again, err := SumReader(ctx, bytes.NewReader(out.Bytes())); err != nil || again != sum {
		t.Fatalf("SumReader = %+v, %v; want %+v", again, err, sum)
	}

	wantNames, want := expectTree(t, dir)
	gotNames, got := readTarZst(t, out.Bytes())
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("archive order/names:\n got %q\nwant %q", gotNames, wantNames)
	}
	var wantBytes int64
	for _, name := range wantNames {
		if strings.HasPrefix(name, "./") || strings.HasPrefix(name, "/") {
			t.Errorf("name %q is not relative without ./", name)
		}
		g, w := got[name], want[name]
		if g.mode != w.mode || !g.mtime.Equal(w.mtime) || g.size != w.size || g.sha != w.sha || g.link != w.link || g.uid != w.uid || g.gid != w.gid {
			t.Errorf("%s:\n got %+v\nwant %+v", name, g, w)
		}
		wantBytes += w.size
	}
	for _, name := range []string{"emptydir/", "empty/inner/", "link-to-dir", "dangling", "写真/日本語ファイル.txt", "café/naïve ☃.txt", "hardlink.txt"} {
		if _, ok := got[name]; !ok {
			t.Errorf("archive lacks %q", name)
		}
	}
	if _, ok := got["link-to-dir/b/"]; ok {
		t.Errorf("symlink to a directory was followed")
	}
	if got["hardlink.txt"].sha != want["a.txt"].sha {
		t.Errorf("hard link not stored as a regular file with the content")
	}
	if got["uploads/owned.txt"].uid != want["uploads/owned.txt"].uid {
		t.Errorf("uid not preserved")
	}

	if stats.Entries != len(wantNames) || stats.Bytes != wantBytes {
		t.Errorf("stats entries/bytes = %d/%d, want %d/%d", stats.Entries, stats.Bytes, len(wantNames), wantBytes)
	}
	if len(stats.Changed) != 0 {
		t.Errorf("Changed = %q on a quiet tree", stats.Changed)
	}
	if wantSkipped := []string{"app.sock (socket)", "pipe (fifo)"}; !slices.Equal(stats.Skipped, wantSkipped) {
		t.Errorf("Skipped = %q, want %q", stats.Skipped, wantSkipped)
	}

	n, err := WalkTarZstd(ctx, bytes.NewReader(out.Bytes()), nil)
	if err != nil || n != stats.Entries {
		t.Fatalf("WalkTarZstd = %d, %v; want %d entries", n, err, stats.Entries)
	}

	// Same tree, same bytes: the archive is deterministic.
	var out2 bytes.Buffer
	sum2, err := compressTar(ctx, dir, &out2)
	if err != nil || sum2 != sum {
		t.Errorf("second archive of an unchanged tree: %+v, %v; want %+v", sum2, err, sum)
	}
}

func compressTar(ctx context.Context, dir string, w io.Writer) (Sum, error) {
	s, err := NewSink(w, DefaultLevel)
	if err != nil {
		return Sum{}, err
	}
	_, err = WriteTar(ctx, dir, s)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return s.Sum(), err
}

func TestWriteTarDataDirIsSymlink(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real")
	write(t, filepath.Join(real, "x.txt"), []byte("x"), 0o644, time.Now())
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st, err := WriteTar(context.Background(), link, &buf)
	if err != nil || st.Entries != 1 {
		t.Fatalf("WriteTar(symlink to dir) = %+v, %v; want the target's 1 entry", st, err)
	}
}

func TestWriteTarErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	write(t, file, []byte("x"), 0o644, time.Now())
	missing := filepath.Join(t.TempDir(), "missing")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tree := makeTree(t, 1024)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		dir  string
		w    io.Writer
		want string
	}{
		{"missing dir", context.Background(), missing, io.Discard, "archive " + missing + ": lstat " + missing + ": no such file or directory"},
		{"not a dir", context.Background(), file, io.Discard, "archive " + file + ": not a directory"},
		{"cancelled", cancelled, tree, io.Discard, "archive " + tree + ": context canceled"},
		{"destination fails", context.Background(), tree, failWriter{}, "write tar entry a/: disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WriteTar(tc.ctx, tc.dir, tc.w)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteTar = %v, want %q", err, tc.want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// hookWriter runs fn once, the first time more than after bytes have passed
// through it: a deterministic point in the middle of reading a big file.
type hookWriter struct {
	w     io.Writer
	n     int64
	after int64
	fn    func()
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if h.fn != nil && h.n > h.after {
		fn := h.fn
		h.fn = nil
		fn()
	}
	return h.w.Write(p)
}

func TestWriteTarFileChangedWhileRead(t *testing.T) {
	const size = 8 << 20
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		changed []string
	}{
		{"appended by another writer", func(t *testing.T, path string) {
			// A goroutine plays the app appending to its log while the
			// archiver is in the middle of the file.
			done := make(chan error)
			go func() {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err == nil {
					_, err = f.Write(bytes.Repeat([]byte("appended line\n"), 1000))
					f.Close()
				}
				done <- err
			}()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}, []string{"logs/big.log"}},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, size/4); err != nil {
				t.Error(err)
			}
		}, []string{"logs/big.log"}},
		{"sibling removed", func(t *testing.T, path string) {
			if err := os.Remove(filepath.Join(filepath.Dir(path), "z-rotated.log")); err != nil {
				t.Error(err)
			}
		}, []string{"logs/z-rotated.log"}},
		{"untouched", func(t *testing.T, path string) {}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			big := filepath.Join(dir, "logs/big.log")
			write(t, big, bytes.Repeat([]byte("0123456789abcdef"), size/16), 0o644, time.Now().Add(-time.Hour))
			write(t, filepath.Join(dir, "logs/z-rotated.log"), []byte("old"), 0o644, time.Now())
			var out bytes.Buffer
			sink, err := NewSink(&out, DefaultLevel)
			if err != nil {
				t.Fatal(err)
			}
			// Headers so far are a few KB; the hook fires mid-file.
			hw := &hookWriter{w: sink, after: size / 2, fn: func() { tc.change(t, big) }}
			stats, err := WriteTar(context.Background(), dir, hw)
			if err != nil {
				t.Fatalf("WriteTar: %v", err)
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(stats.Changed, tc.changed) {
				t.Fatalf("Changed = %q, want %q", stats.Changed, tc.changed)
			}
			// Whatever changed, the archive is whole and readable.
			n, err := WalkTarZstd(context.Background(), bytes.NewReader(out.Bytes()), func(h *tar.Header) error {
				if h.Name == "logs/big.log" && h.Size != size {
					t.Errorf("big.log stored with size %d, want the %d read at open", h.Size, size)
				}
				return nil
			})
			if err != nil || n != stats.Entries {
				t.Fatalf("WalkTarZstd = %d, %v; want %d entries", n, err, stats.Entries)
			}
		})
	}
}

func TestWalkTarZstdDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	dir := makeTree(t, 256<<10)
	var out bytes.Buffer
	if _, err := compressTar(ctx, dir, &out); err != nil {
		t.Fatal(err)
	}
	good := out.Bytes()
	if _, err := WalkTarZstd(ctx, bytes.NewReader(good), nil); err != nil {
		t.Fatalf("intact archive: %v", err)
	}
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x01
		return b
	}
	// A tar cut at an entry boundary, compressed whole: valid zstd, so
	// only the missing end-of-archive marker shows the damage.
	var raw bytes.Buffer
	if _, err := WriteTar(ctx, dir, &raw); err != nil {
		t.Fatal(err)
	}
	cut := func(n int) []byte {
		var b bytes.Buffer
		if _, err := CompressHash(ctx, bytes.NewReader(raw.Bytes()[:raw.Len()-n]), &b, DefaultLevel); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"flipped byte in the frame header descriptor", flip(4), "read tar.zst"},
		{"flipped byte early", flip(40), "read tar.zst"},
		{"flipped byte in the middle", flip(len(good) / 2), "read tar.zst"},
		{"flipped byte near the end", flip(len(good) - 10), "read tar.zst"},
		{"flipped last byte (frame checksum)", flip(len(good) - 1), "CRC check failed"},
		{"zstd stream truncated", good[:len(good)-100], "read tar.zst"},
		{"tar without end marker", cut(1024), "archive ends without its end-of-archive marker"},
		{"tar with half an end marker", cut(512), "archive ends without its end-of-archive marker"},
		{"not zstd", []byte("this is not a zstd stream at all, just text"), "read tar.zst"},
		{"empty", nil, "read tar.zst: after 0 entries: archive ends without its end-of-archive marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := WalkTarZstd(ctx, bytes.NewReader(tc.data), nil)
			if err == nil {
				t.Fatalf("WalkTarZstd accepted a damaged archive (%d entries)", n)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	t.Run("window size flip is caught by the SHA-256 of the same pass", func(t *testing.T) {
		// Byte 5 is the window descriptor: the decoded bytes do not
		// change, so the structure walk passes; the checksum of the
		// stored file, computed in the same pass, does not.
		bad := flip(5)
		h := sha256.New()
		tee := &countReader{r: io.TeeReader(bytes.NewReader(bad), h)}
		if _, err := WalkTarZstd(ctx, tee, nil); err != nil {
			t.Logf("walk also failed: %v", err)
		}
		if tee.n != int64(len(bad)) {
			t.Fatalf("WalkTarZstd read %d of %d bytes; it must read r to its end", tee.n, len(bad))
		}
		if hex.EncodeToString(h.Sum(nil)) == sha(good) {
			t.Fatalf("damaged file has the intact file's SHA-256")
		}
	})
	t.Run("fn error stops the walk", func(t *testing.T) {
		stop := errors.New("stop here")
		n, err := WalkTarZstd(ctx, bytes.NewReader(good), func(*tar.Header) error { return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("WalkTarZstd = %d, %v; want 1, stop here", n, err)
		}
	})
}

func TestCompressHash(t *testing.T) {
	src := bytes.Repeat([]byte("pg_dump custom format block "), 100000)
	var out bytes.Buffer
	sum, err := CompressHash(context.Background(), bytes.NewReader(src), &out, DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Size != int64(out.Len()) || sum.SHA256 != sha(out.Bytes()) || sum.Size >= int64(len(src))/10 {
		t.Fatalf("Sum %+v for %d compressed bytes of %d", sum, out.Len(), len(src))
	}
	dec, _ := zstd.NewReader(bytes.NewReader(out.Bytes()))
	back, err := io.ReadAll(dec)
	dec.Close()
	if err != nil || !bytes.Equal(back, src) {
		t.Fatalf("decompressed stream differs from the source (%v)", err)
	}

	// Two destinations in the same pass (local file and upload) get the
	// same bytes.
	var a, b bytes.Buffer
	sum2, err := CompressHash(context.Background(), bytes.NewReader(src), io.MultiWriter(&a, &b), DefaultLevel)
	if err != nil || sum2 != sum || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("MultiWriter pass: %+v, %v", sum2, err)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CompressHash(cancelled, bytes.NewReader(src), io.Discard, DefaultLevel); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
	if _, err := CompressHash(context.Background(), bytes.NewReader(src), failWriter{}, DefaultLevel); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing destination: %v, want disk full", err)
	}
	srcErr := errors.New("pg_dump died")
	if _, err := CompressHash(context.Background(), io.MultiReader(bytes.NewReader(src[:1000]), errReader{srcErr}), io.Discard, DefaultLevel); !errors.Is(err, srcErr) {
		t.Errorf("failing source: %v, want pg_dump died", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
