package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"backstop/probe/internal/snapshot"
	"backstop/shared/testenv"
)

// describeTree reads a tree with lstat, never following links, and returns one
// line per path below root: type, mode, owner, mtime, size, content hash
// or link target. skip (a path below root) is left out with its content.
func describeTree(t *testing.T, root, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if skip != "" && p == skip {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%v uid=%d gid=%d mtime=%s", fi.Mode(), st.Uid, st.Gid, fi.ModTime().UTC().Format(time.RFC3339Nano))
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s", len(b), hex.EncodeToString(s[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + l
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = line
		return nil
	})
	if err != nil {
		t.Fatalf("describe %s: %v", root, err)
	}
	return out
}

func diffTrees(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if want[k] != got[k] {
			t.Errorf("%s: %s:\n  want %q\n  got  %q", what, k, want[k], got[k])
		}
	}
}

func writeTestFile(t *testing.T, p string, data []byte, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func lchtimes(t *testing.T, p string, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("lutimes %s: %v", p, err)
	}
}

// TestExtractRoundTrip archives a tree with snapshot.WriteTar through a
// snapshot.Sink, extracts it, and finds the same tree: every type the
// snapshot stores, modes (setgid and sticky directories, a read-only
// directory), nanosecond mtimes of files, links and directories, empty
// directories and files, unicode and long names, owners when root.
func TestExtractRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	mt := time.Date(2024, 11, 3, 4, 5, 6, 123456789, time.UTC)
	rng := rand.New(rand.NewPCG(7, 8))
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	writeTestFile(t, filepath.Join(src, "a/b/c/deep.txt"), []byte("deep\n"), 0o640, mt)
	writeTestFile(t, filepath.Join(src, "a.txt"), []byte("between a and a/"), 0o644, mt.Add(time.Hour))
	writeTestFile(t, filepath.Join(src, "empty.txt"), nil, 0o600, mt)
	writeTestFile(t, filepath.Join(src, "bin/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, mt)
	writeTestFile(t, filepath.Join(src, "写真/日本語ファイル.txt"), []byte("こんにちは"), 0o644, mt)
	writeTestFile(t, filepath.Join(src, "café/naïve ☃ 🎉.txt"), []byte("snow"), 0o444, mt)
	writeTestFile(t, filepath.Join(src, "uploads/big.bin"), big, 0o644, mt)
	writeTestFile(t, filepath.Join(src, "uploads/owned.txt"), []byte("owned"), 0o644, mt)
	writeTestFile(t, filepath.Join(src, strings.Repeat("long-directory-name/", 8), "file-with-a-name-past-the-ustar-limit.txt"), []byte("long"), 0o644, mt)
	writeTestFile(t, filepath.Join(src, "ro/inside.txt"), []byte("in a read-only dir"), 0o644, mt)
	// A hard link: WriteTar stores both names as files with the content.
	if err := os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "bin/a-hardlink.txt")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"empty-dir", "a/empty-sub"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link-to-file": "a.txt",
		"a/b/up":       "../../bin/run.sh",
		"link-to-dir":  "a/b",
		"dangling":     "does/not/exist",
		"写真/self-link": ".",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(src, l)); err != nil {
			t.Fatal(err)
		}
		lchtimes(t, filepath.Join(src, l), mt.Add(-time.Minute))
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(src, "uploads/owned.txt"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(src, "dangling"), 4321, 8765); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(src, "empty-dir"), 2000, 3000); err != nil {
			t.Fatal(err)
		}
	}
	dirModes := map[string]fs.FileMode{
		"a":           0o750,
		"a/b":         0o2755 | fs.ModeSetgid,
		"empty-dir":   0o711,
		"a/empty-sub": 0o755 | fs.ModeSticky,
		"ro":          0o555,
	}
	for d, m := range dirModes {
		if err := os.Chmod(filepath.Join(src, d), m); err != nil {
			t.Fatal(err)
		}
	}
	// Directory mtimes last, deepest first, as a restore must.
	var dirs []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != src {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for i, d := range dirs {
		m := mt.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(d, m, m); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	var buf bytes.Buffer
	sink, err := snapshot.NewSink(&buf, snapshot.DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	tst, err := snapshot.WriteTar(ctx, src, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	want := describeTree(t, src, "")

	dest := filepath.Join(tmp, "dest")
	st, err := Extract(ctx, &buf, dest)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if st.Entries != tst.Entries || st.Bytes != tst.Bytes {
		t.Errorf("stats = %+v, want Entries %d Bytes %d as WriteTar wrote", st, tst.Entries, tst.Bytes)
	}
	diffTrees(t, "restored tree", want, describeTree(t, dest, ""))
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dest mode = %v, want 0700 until SwapDir", fi.Mode())
	}
	if a, b := filepath.Join(dest, "a.txt"), filepath.Join(dest, "bin/a-hardlink.txt"); sameFile(t, a, b) {
		t.Errorf("%s and %s share an inode; WriteTar stored them as separate files", a, b)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Lstat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

// tent is one entry of a hand-made archive.
type tent struct {
	name string
	typ  byte
	link string
	body string
	mode int64
}

func regEnt(name, body string) tent { return tent{name: name, typ: tar.TypeReg, body: body} }
func dirEnt(name string) tent       { return tent{name: name, typ: tar.TypeDir} }
func symlinkEnt(name, target string) tent {
	return tent{name: name, typ: tar.TypeSymlink, link: target}
}
func hardlink(name, target string) tent { return tent{name: name, typ: tar.TypeLink, link: target} }

// craft writes entries as a PAX tar and compresses it with zstd, the way
// an attacker with write access to the bucket could.
func craft(t *testing.T, ents []tent, finish bool) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode, ModTime: mt, Format: tar.FormatPAX}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": "global"}, Format: tar.FormatPAX}
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if finish {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	} else if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestExtractLinksInside: what a careful archive may hold is extracted as
// such: a hard link to an earlier file is the same inode, links that stay
// inside are kept, a set-uid bit is dropped, entries may come without
// their parents, and a PAX global header and "./" root entry are skipped.
func TestExtractLinksInside(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "dest")
	arch := craft(t, []tent{
		{name: "./", typ: tar.TypeDir, mode: 0o777},
		{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
		regEnt("./f", "content"),
		hardlink("sub/deeper/h", "f"),
		symlinkEnt("sub/deeper/up", "../../f"),
	}, true)
	if _, err := Extract(context.Background(), bytes.NewReader(arch), dest); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if !sameFile(t, filepath.Join(dest, "f"), filepath.Join(dest, "sub/deeper/h")) {
		t.Error("hard link sub/deeper/h is not the inode of f")
	}
	b, err := os.ReadFile(filepath.Join(dest, "sub/deeper/up"))
	if err != nil || string(b) != "content" {
		t.Errorf("read through the restored link sub/deeper/up = %q, %v; want the content of f", b, err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dest mode = %v after a ./ entry of 0777; want 0700 (the root entry is skipped)", fi.Mode())
	}
	if fi, err := os.Stat(filepath.Join(dest, "sub")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("implied directory sub: %v, %v; want mode 0755", fi, err)
	}

	dest2 := filepath.Join(t.TempDir(), "dest")
	if _, err := Extract(context.Background(), bytes.NewReader(craft(t, []tent{
		{name: "suid", typ: tar.TypeReg, mode: 0o4755, body: "x"},
		{name: "sgid", typ: tar.TypeReg, mode: 0o2755, body: "x"},
		{name: "open-exec", typ: tar.TypeReg, mode: 0o777, body: "x"},
		{name: "open-file", typ: tar.TypeReg, mode: 0o666, body: "x"},
		{name: "open-dir", typ: tar.TypeDir, mode: 0o777},
		{name: "shared-dir", typ: tar.TypeDir, mode: 0o1777},
	}, true)), dest2); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	// Modes clamp to 0755/0644: nothing restored is group- or world-writable.
	for n, want := range map[string]fs.FileMode{
		"open-exec": 0o755, "open-file": 0o644, "open-dir": fs.ModeDir | 0o755, "shared-dir": fs.ModeDir | fs.ModeSticky | 0o755,
	} {
		if fi, err := os.Lstat(filepath.Join(dest2, n)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", n, fi.Mode(), err, want)
		}
	}
	for _, n := range []string{"suid", "sgid"} {
		fi, err := os.Lstat(filepath.Join(dest2, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o755 {
			t.Errorf("%s mode = %v, want -rwxr-xr-x (set-id bits dropped)", n, fi.Mode())
		}
	}
}

// TestExtractMalicious: each archive is refused with an error naming the
// entry and the reason; nothing appears or changes anywhere in the test's
// temporary root (a sentinel directory beside dest included), and the
// partial dest is gone.
func TestExtractMalicious(t *testing.T) {
	cases := []struct {
		name string
		ents func(outside string) []tent
		want string
	}{
		{"dotdot", func(string) []tent { return []tent{regEnt("ok", "ok"), regEnt("../evil", "x")} },
			`entry "../evil": path has a '..' component`},
		{"absolute path", func(o string) []tent { return []tent{regEnt("ok", "ok"), regEnt(o+"/evil", "x")} },
			`: absolute path`},
		{"dotdot in the middle", func(string) []tent { return []tent{regEnt("a/../../evil", "x")} },
			`entry "a/../../evil": path has a '..' component`},
		{"dotdot after dot", func(string) []tent { return []tent{regEnt("./../outside/passwd", "x")} },
			`path has a '..' component`},
		{"absolute symlink then a write through it", func(o string) []tent {
			return []tent{symlinkEnt("link", o), regEnt("link/passwd", "owned")}
		}, `entry "link": symlink target "/`},
		{"symlink to .. then a write through it", func(string) []tent {
			return []tent{symlinkEnt("link", ".."), regEnt("link/evil", "x")}
		}, `entry "link": symlink target ".." points outside the directory`},
		{"deep symlink climbing out", func(string) []tent {
			return []tent{dirEnt("a/b/"), symlinkEnt("a/b/l", "../../../outside"), regEnt("a/b/l/evil", "x")}
		}, `entry "a/b/l": symlink target "../../../outside" points outside the directory`},
		{"chain of two symlinks", func(string) []tent {
			// sub/l2 -> .. is dest itself; l1 -> sub/l2/.. would be dest's
			// parent, though it looks like "sub" lexically.
			return []tent{dirEnt("sub/"), symlinkEnt("sub/l2", ".."), symlinkEnt("l1", "sub/l2/.."), regEnt("l1/outside/evil", "x")}
		}, `entry "l1": symlink target "sub/l2/.." has '..' after a name`},
		{"chain through a link made later", func(string) []tent {
			return []tent{symlinkEnt("a/x", "../b/outside"), symlinkEnt("b", "..")}
		}, `entry "b": symlink target ".." points outside the directory`},
		{"write through a symlink inside", func(string) []tent {
			return []tent{dirEnt("sub/"), symlinkEnt("ls", "sub"), regEnt("ls/f", "x")}
		}, `entry "ls/f": parent "ls" is a symbolic link: refusing to write through it`},
		{"directory over a symlink", func(string) []tent {
			return []tent{dirEnt("sub/"), symlinkEnt("ls", "sub"), dirEnt("ls/")}
		}, `entry "ls/": already exists as a symbolic link`},
		{"file over a symlink", func(string) []tent {
			return []tent{symlinkEnt("ls", "f"), regEnt("ls", "x")}
		}, `entry "ls": already exists`},
		{"duplicate file", func(string) []tent { return []tent{regEnt("f", "1"), regEnt("f", "2")} },
			`entry "f": already exists`},
		{"hard link to ../outside-file", func(string) []tent {
			return []tent{hardlink("hl", "../outside/outside-file")}
		}, `entry "hl": hard link target "../outside/outside-file": path has a '..' component`},
		{"hard link to an absolute outside file", func(o string) []tent {
			return []tent{hardlink("hl", o+"/outside-file")}
		}, `entry "hl": hard link target "/`},
		{"hard link to /etc/passwd", func(string) []tent { return []tent{hardlink("hl", "/etc/passwd")} },
			`entry "hl": hard link target "/etc/passwd": absolute path`},
		{"hard link to a symlink that escapes", func(o string) []tent {
			return []tent{symlinkEnt("s", o+"/outside-file"), hardlink("hl", "s")}
		}, `entry "s": symlink target "/`},
		{"hard link to a symlink", func(string) []tent {
			return []tent{regEnt("f", "x"), symlinkEnt("s", "f"), hardlink("hl", "s")}
		}, `entry "hl": hard link target "s" is not a regular file extracted earlier from this archive`},
		{"hard link through a symlinked directory", func(string) []tent {
			return []tent{regEnt("sub/f", "x"), symlinkEnt("ls", "sub"), hardlink("hl", "ls/f")}
		}, `entry "hl": hard link target "ls/f" is not a regular file extracted earlier`},
		{"hard link to a directory", func(string) []tent { return []tent{dirEnt("sub/"), hardlink("hl", "sub")} },
			`entry "hl": hard link target "sub" is not a regular file`},
		{"hard link to a later file", func(string) []tent { return []tent{hardlink("hl", "f"), regEnt("f", "x")} },
			`entry "hl": hard link target "f" is not a regular file`},
		{"hard link created through a symlink", func(string) []tent {
			return []tent{regEnt("f", "x"), dirEnt("sub/"), symlinkEnt("ls", "sub"), hardlink("ls/hl", "f")}
		}, `entry "ls/hl": parent "ls" is a symbolic link`},
		{"character device", func(string) []tent { return []tent{{name: "null", typ: tar.TypeChar}} },
			`entry "null": refusing a character device`},
		{"block device", func(string) []tent { return []tent{{name: "sda", typ: tar.TypeBlock}} },
			`entry "sda": refusing a block device`},
		{"fifo", func(string) []tent { return []tent{{name: "pipe", typ: tar.TypeFifo}} },
			`entry "pipe": refusing a FIFO`},
		{"file named as the root", func(string) []tent { return []tent{regEnt(".", "x")} },
			`entry ".": names the directory itself`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			outside := filepath.Join(tmp, "outside")
			writeTestFile(t, filepath.Join(outside, "outside-file"), []byte("sentinel"), 0o644, time.Unix(1e9, 0))
			writeTestFile(t, filepath.Join(outside, "passwd"), []byte("root:x:0:0"), 0o644, time.Unix(1e9, 0))
			before := describeTree(t, tmp, "")
			dest := filepath.Join(tmp, "dest")
			_, err := Extract(context.Background(), bytes.NewReader(craft(t, tc.ents(outside), true)), dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract error = %v\nwant one containing %q", err, tc.want)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("dest after a refused archive: %v; want it removed", err)
			}
			diffTrees(t, "temp root", before, describeTree(t, tmp, ""))
		})
	}
}

// TestExtractDestMustNotExist: an existing dest, a directory or a symbolic
// link to one, is refused and left exactly as it was.
func TestExtractDestMustNotExist(t *testing.T) {
	arch := craft(t, []tent{regEnt("f", "x")}, true)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dest, outside string)
	}{
		{"directory", func(t *testing.T, dest, _ string) {
			writeTestFile(t, filepath.Join(dest, "keep"), []byte("mine"), 0o644, time.Unix(1e9, 0))
		}},
		{"symlink to a directory outside", func(t *testing.T, dest, outside string) {
			if err := os.Symlink(outside, dest); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink", func(t *testing.T, dest, outside string) {
			if err := os.Symlink(filepath.Join(outside, "nowhere"), dest); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			outside := filepath.Join(tmp, "outside")
			writeTestFile(t, filepath.Join(outside, "outside-file"), []byte("sentinel"), 0o644, time.Unix(1e9, 0))
			dest := filepath.Join(tmp, "dest")
			tc.make(t, dest, outside)
			before := describeTree(t, tmp, "")
			_, err := Extract(context.Background(), bytes.NewReader(arch), dest)
			if want := "extract to " + dest + ": mkdir " + dest + ": file exists"; err == nil || err.Error() != want {
				t.Fatalf("Extract error = %v, want %q", err, want)
			}
			diffTrees(t, "temp root", before, describeTree(t, tmp, ""))
		})
	}
}

// TestExtractDamaged: a stream cut short, a tar without its end marker or
// a flipped byte fails, and the partial dest is removed.
func TestExtractDamaged(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	body := make([]byte, 256<<10)
	for i := range body {
		body[i] = byte(rng.Uint32() % 16) // compressible, so the stream has real blocks
	}
	good := craft(t, []tent{regEnt("a", string(body)), regEnt("b", "tail")}, true)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated stream", good[:len(good)/2], "read tar.zst after 0 entries: unexpected EOF"},
		{"truncated to the frame header", good[:20], "unexpected EOF"},
		{"tar without its end marker", craft(t, []tent{regEnt("a", "x")}, false), "archive ends without its end-of-archive marker (truncated)"},
		{"flipped byte", flipped, "CRC check failed"},
		{"not zstd", []byte("plain text, not an archive"), "magic number mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract error = %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("dest after a damaged archive: %v; want it removed", err)
			}
		})
	}
}

// cancelAfter cancels its context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestExtractCancel: cancelling ctx part way stops the extraction with
// ctx's error and removes dest.
func TestExtractCancel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var ents []tent
	for i := range 64 {
		b := make([]byte, 64<<10)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ents = append(ents, regEnt(fmt.Sprintf("f%02d", i), string(b)))
	}
	arch := craft(t, ents, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dest := filepath.Join(t.TempDir(), "dest")
	_, err := Extract(ctx, &cancelAfter{r: bytes.NewReader(arch), n: len(arch) / 3, cancel: cancel}, dest)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract error = %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dest after cancel: %v; want it removed", err)
	}
}

// TestExtractDiskFull: on a full filesystem (a real 1 MiB tmpfs) the error
// names the entry and the cause, and the partial dest is removed.
func TestExtractDiskFull(t *testing.T) {
	mnt := testenv.Tmpfs(t, "1m")
	rng := rand.New(rand.NewPCG(9, 10))
	b := make([]byte, 2<<20)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	arch := craft(t, []tent{regEnt("small", "x"), regEnt("uploads/big.bin", string(b))}, true)
	dest := filepath.Join(mnt, "dest")
	_, err := Extract(context.Background(), bytes.NewReader(arch), dest)
	if err == nil || !strings.Contains(err.Error(), `entry "uploads/big.bin"`) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Extract error = %v, want ENOSPC naming entry uploads/big.bin", err)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("tmpfs holds %v after the failed extraction; want nothing", ents)
	}
}
