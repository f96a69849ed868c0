package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ExtractStats describes what Extract restored.
type ExtractStats struct {
	Entries int   // tar headers read: the manifest's data.entries for an archive from snapshot.WriteTar
	Bytes   int64 // content bytes of regular files written (uncompressed)
}

// maxPerm bounds the permission bits an extracted entry keeps: an archive
// cannot make a restored file or directory group- or world-writable.
const maxPerm fs.FileMode = 0o755

// Extract decompresses a .tar.zst stream (as snapshot.WriteTar and
// snapshot.Sink write it) into dest, which must not exist: Extract creates
// it with mode 0700 (its parent must exist) and fails if it does exist.
//
// Extraction is safe whatever the archive holds: nothing is ever created,
// written, linked, chmod'ed or chown'ed outside dest. Every operation goes
// through an os.Root opened on dest (the kernel refuses any path that
// leaves it), and on top of that Extract refuses, with an error naming the
// entry:
//   - names that are absolute, empty or have a ".." component;
//   - any entry whose parent path runs through a symbolic link (it never
//     writes through a link, even one pointing inside dest), or that
//     already exists (other than a directory listed again);
//   - symbolic links whose target is absolute, climbs out of dest, or has a
//     ".." after a name ("a/../x": a link named a could make it escape);
//   - hard links whose target is not a regular file extracted earlier from
//     the same archive (so never a file outside, a symlink or a directory);
//   - character and block devices, FIFOs and every other entry type.
//
// Absolute symbolic links are refused even when they point into dest, and
// so are relative ones that reach outside it: a data directory holding
// such links can be backed up but not restored by this function.
//
// Restored: directories (empty ones included), regular files, symbolic
// links as links and hard links as links; permission bits clamped to
// maxPerm (at most 0755, 0644 for a file without execute bits: nothing
// restored is group- or world-writable), plus setgid and sticky on
// directories (setuid and setgid on files are dropped: a restore must not
// mint set-id programs); modification times of files, links and
// directories, each directory's after its content. Numeric uid and gid are
// applied only when running as root (user and group names are ignored);
// otherwise everything belongs to the caller. An archive entry for the
// root itself ("./") is skipped: dest keeps mode 0700 until SwapDir gives
// it the live directory's mode and owner. Directories that the archive
// implies but does not list are created with mode 0755 (less the umask).
//
// r is read to its very end, and a damaged stream fails: a bad zstd block
// or frame checksum, a bad tar header, or an archive cut short or missing
// its end-of-archive marker. A caller checks the stored SHA-256 in the same
// pass by giving an io.TeeReader of the file and a hash; if that check
// fails after Extract returns, the caller removes dest. On success the
// filesystem holding dest is synced (syncfs), so a swap that follows does
// not publish unwritten data.
//
// On any error, including ctx's cancellation, Extract removes dest
// (os.RemoveAll, which never follows symbolic links) and nothing else; if
// even that fails the error says so and the caller removes it (PruneDirs
// removes leftover staging directories).
func Extract(ctx context.Context, r io.Reader, dest string) (st ExtractStats, err error) {
	dest = filepath.Clean(dest)
	if err := os.Mkdir(dest, 0o700); err != nil {
		return st, fmt.Errorf("extract to %s: %w", dest, err)
	}
	// From here on dest is ours: remove it on failure.
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(dest); rerr != nil {
				err = fmt.Errorf("%w (and removing the partial %s failed: %v)", err, dest, rerr)
			}
		}
	}()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return st, fmt.Errorf("extract to %s: %w", dest, err)
	}
	defer root.Close()
	dec, err := zstd.NewReader(extractSource{ctx, r})
	if err != nil {
		return st, fmt.Errorf("extract to %s: zstd decoder: %w", dest, err)
	}
	defer dec.Close()

	x := &extractor{
		root:  root,
		chown: os.Geteuid() == 0,
		real:  map[string]bool{},
		files: map[string]bool{},
		dirs:  map[string]*tar.Header{},
	}
	cr := &tarCounter{r: dec}
	tr := tar.NewReader(cr)
	buf := make([]byte, 1<<20)
	var end int64 // archive offset where the last entry, padded to a block, ends
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("extract to %s: after %d entries: %w", dest, st.Entries, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			// The tar reader stops at 0, 1 or 2 zero blocks alike; only
			// the last is a finished archive.
			if cr.n-end != 2*tarBlock {
				return st, fmt.Errorf("extract to %s: after %d entries: archive ends without its end-of-archive marker (truncated)", dest, st.Entries)
			}
			break
		}
		// ErrInsecurePath comes with a usable header (GODEBUG
		// tarinsecurepath=0): the name checks below refuse it with the
		// entry's name.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return st, fmt.Errorf("extract to %s: read tar.zst after %d entries: %w", dest, st.Entries, orCtx(ctx, err))
		}
		st.Entries++
		n, err := x.entry(hdr, tr, buf)
		st.Bytes += n
		if err != nil {
			return st, fmt.Errorf("extract to %s: entry %q: %w", dest, hdr.Name, orCtx(ctx, err))
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return st, fmt.Errorf("extract to %s: entry %q: %w", dest, hdr.Name, orCtx(ctx, err))
		}
		end = (cr.n + tarBlock - 1) / tarBlock * tarBlock
	}
	// The zstd frame (and its checksum) may go on past the end marker.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return st, fmt.Errorf("extract to %s: read tar.zst after the last of %d entries: %w", dest, st.Entries, orCtx(ctx, err))
	}
	if err := x.finishDirs(); err != nil {
		return st, fmt.Errorf("extract to %s: %w", dest, err)
	}
	if err := syncRoot(root); err != nil {
		return st, fmt.Errorf("extract to %s: %w", dest, err)
	}
	return st, nil
}

const tarBlock = 512

// extractor holds what one extraction has created so far.
type extractor struct {
	root  *os.Root
	chown bool                   // running as root: apply the archive's uid/gid
	real  map[string]bool        // paths checked (or made) to be real directories
	files map[string]bool        // regular files extracted: the only valid hard-link targets
	dirs  map[string]*tar.Header // listed directories: mode and times applied at the end
}

// entry extracts one header and returns the content bytes written.
func (x *extractor) entry(hdr *tar.Header, content io.Reader, buf []byte) (int64, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return 0, nil // PAX global header: metadata only, nothing to create
	}
	name, err := archiveName(hdr.Name)
	if err != nil {
		return 0, err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return 0, nil // the root itself: dest
		}
		return 0, errors.New("names the directory itself")
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return 0, x.dir(name, hdr)
	case tar.TypeReg:
		return x.file(name, hdr, content, buf)
	case tar.TypeSymlink:
		return 0, x.symlink(name, hdr)
	case tar.TypeLink:
		return 0, x.link(name, hdr)
	case tar.TypeChar:
		return 0, errors.New("refusing a character device")
	case tar.TypeBlock:
		return 0, errors.New("refusing a block device")
	case tar.TypeFifo:
		return 0, errors.New("refusing a FIFO")
	default:
		return 0, fmt.Errorf("refusing entry type %q", hdr.Typeflag)
	}
}

// archiveName checks an entry name (or a hard link's target) and returns
// it cleaned, with "/" separators, "." for the root.
func archiveName(n string) (string, error) {
	switch {
	case n == "":
		return "", errors.New("empty name")
	case strings.ContainsRune(n, 0):
		return "", errors.New("NUL in name")
	case strings.HasPrefix(n, "/"):
		return "", errors.New("absolute path")
	}
	var parts []string
	for _, c := range strings.Split(n, "/") {
		switch c {
		case "", ".":
		case "..":
			return "", errors.New("path has a '..' component")
		default:
			parts = append(parts, c)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

// linkTargetInside checks that symlink name's target stays inside the
// tree wherever the archive's other links point: relative, its ".."
// components only at the start (each climbs a real directory, as links are
// never created under a link) and no more of them than name is deep. Any
// link it then runs into was checked the same way, so by induction the
// whole resolution stays inside.
func linkTargetInside(name, target string) error {
	switch {
	case target == "":
		return errors.New("symlink with an empty target")
	case strings.ContainsRune(target, 0):
		return errors.New("NUL in symlink target")
	case strings.HasPrefix(target, "/"):
		return fmt.Errorf("symlink target %q is absolute", target)
	}
	up, named := 0, false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if named {
				return fmt.Errorf("symlink target %q has '..' after a name (it could leave the directory through another link)", target)
			}
			up++
		default:
			named = true
		}
	}
	if up > strings.Count(name, "/") {
		return fmt.Errorf("symlink target %q points outside the directory", target)
	}
	return nil
}

// parents makes sure every directory above name is a real directory,
// creating missing ones; a symbolic link or another file on the way is
// refused, so nothing is ever written through a link.
func (x *extractor) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." || x.real[dir] {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if x.real[p] {
			continue
		}
		fi, err := x.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := x.root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("create parent directory: %w", err)
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("parent %q is a symbolic link: refusing to write through it", p)
		case !fi.IsDir():
			return fmt.Errorf("parent %q is not a directory", p)
		}
		x.real[p] = true
	}
	return nil
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if err := x.parents(name); err != nil {
		return err
	}
	if !x.real[name] {
		fi, err := x.root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// 0700 while filled; the archive's mode comes at the end.
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return errors.New("already exists as a symbolic link")
		case !fi.IsDir():
			return errors.New("already exists and is not a directory")
		}
		x.real[name] = true
	}
	x.dirs[name] = hdr
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, content io.Reader, buf []byte) (int64, error) {
	if err := x.parents(name); err != nil {
		return 0, err
	}
	// O_EXCL: an existing name, a symbolic link included, is never reused.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return 0, errors.New("already exists")
	}
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(f, content, buf)
	if err == nil && x.chown {
		err = f.Chown(hdr.Uid, hdr.Gid)
	}
	if err == nil {
		err = f.Chmod(fs.FileMode(hdr.Mode).Perm() & maxPerm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	x.files[name] = true
	return n, x.root.Chtimes(name, hdr.AccessTime, hdr.ModTime)
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if err := linkTargetInside(name, hdr.Linkname); err != nil {
		return err
	}
	if err := x.parents(name); err != nil {
		return err
	}
	if err := x.root.Symlink(hdr.Linkname, name); errors.Is(err, fs.ErrExist) {
		return errors.New("already exists")
	} else if err != nil {
		return err
	}
	if x.chown {
		if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	return x.linkTimes(name, hdr)
}

// linkTimes sets a symbolic link's own times, through its parent's
// descriptor (os.Root has no Lchtimes).
func (x *extractor) linkTimes(name string, hdr *tar.Header) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	d, err := x.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	ts := []unix.Timespec{timespec(hdr.AccessTime), timespec(hdr.ModTime)}
	if err := unix.UtimesNanoAt(int(d.Fd()), path.Base(name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set link times: %w", err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

func (x *extractor) link(name string, hdr *tar.Header) error {
	target, err := archiveName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	notFile := fmt.Errorf("hard link target %q is not a regular file extracted earlier from this archive", hdr.Linkname)
	if !x.files[target] {
		return notFile
	}
	if fi, err := x.root.Lstat(target); err != nil || !fi.Mode().IsRegular() {
		return notFile
	}
	if err := x.parents(name); err != nil {
		return err
	}
	if err := x.root.Link(target, name); errors.Is(err, fs.ErrExist) {
		return errors.New("already exists")
	} else if err != nil {
		return err
	}
	x.files[name] = true
	return nil
}

// finishDirs applies the listed directories' owner, mode and times,
// deepest first, so creating their content no longer changes them and a
// read-only directory is made so only once it is full.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirs))
	for n := range x.dirs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if di != dj {
			return di > dj
		}
		return names[i] > names[j]
	})
	for _, n := range names {
		hdr := x.dirs[n]
		if fi, err := x.root.Lstat(n); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("entry %q: no longer a directory", hdr.Name)
		}
		if x.chown {
			if err := x.root.Lchown(n, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		}
		mode := hdr.FileInfo().Mode() & (maxPerm | fs.ModeSetgid | fs.ModeSticky)
		if err := x.root.Chmod(n, mode); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if err := x.root.Chtimes(n, hdr.AccessTime, hdr.ModTime); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	return nil
}

// syncRoot flushes the filesystem holding the extracted tree.
func syncRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

// orCtx reports ctx's error in place of whatever a cancelled read turned
// into on its way through the decoder.
func orCtx(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// extractSource fails reads once ctx is done, so a long extraction stops
// on cancel.
type extractSource struct {
	ctx context.Context
	r   io.Reader
}

func (s extractSource) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.r.Read(p)
}

// tarCounter counts the decompressed bytes the tar reader consumed.
type tarCounter struct {
	r io.Reader
	n int64
}

func (c *tarCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
