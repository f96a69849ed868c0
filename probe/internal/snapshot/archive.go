package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
)

// DefaultLevel is the zstd level for dumps and data archives: SpeedFastest
// (zstd level 1). Measured on 2 cores with 2 encoder goroutines:
//
//	input                                   fastest                 default (level 3)
//	pg_dump -Fc -Z0, pgbench -s 5 + text    101 MB -> 24.4 MB, 0.37 s CPU   -> 26.6 MB, 0.56 s CPU
//	file tree (docs, locales, .so files)    141 MB -> 77.3 MB, 0.42 s CPU   -> 70.8 MB, 0.53 s CPU
//
// On the dump, the part that matters most, the fastest level was both
// smaller and 1.5x cheaper; on the tree, default saved 8 % for 1.25x the
// CPU, and a web app's data directory is mostly already-compressed uploads.
// The probe shares a small host with the app, so CPU wins.
const DefaultLevel = zstd.SpeedFastest

// Sum is the size and lowercase hex SHA-256 of a stored file: for a .zst
// part, of the COMPRESSED stream, which is what the manifest records and
// verify recomputes.
type Sum struct {
	Size   int64
	SHA256 string
}

// Sink is one streaming pass from a source to its stored form:
// bytes written to it are zstd-compressed (multi-threaded) and the
// compressed stream goes to the destination while its size and SHA-256
// are computed, so a part is read once and never re-read to checksum it.
//
// The destination may be an io.MultiWriter of a local file and an upload;
// a destination error fails the next Write or Close. Close must always be
// called (it flushes the last frame and stops the encoder's goroutines);
// Sum is valid only after a Close that returned nil. Close does not close
// the destination.
type Sink struct {
	enc  *zstd.Encoder
	out  *hashCounter
	sum  Sum
	done bool
}

// hashCounter writes to the destination and hashes and counts exactly the
// bytes the destination accepted.
type hashCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// NewSink returns a Sink writing the compressed stream to w at the given
// level (DefaultLevel unless there is a reason), with one encoder goroutine
// per usable CPU.
func NewSink(w io.Writer, level zstd.EncoderLevel) (*Sink, error) {
	out := &hashCounter{w: w, h: sha256.New()}
	enc, err := zstd.NewWriter(out,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return &Sink{enc: enc, out: out}, nil
}

// Write compresses p.
func (s *Sink) Write(p []byte) (int, error) {
	n, err := s.enc.Write(p)
	if err != nil {
		return n, fmt.Errorf("compress: %w", err)
	}
	return n, nil
}

// Close flushes the compressed stream and fixes the Sum. Calling it again
// returns nil.
func (s *Sink) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	if err := s.enc.Close(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	s.sum = Sum{Size: s.out.n, SHA256: hex.EncodeToString(s.out.h.Sum(nil))}
	return nil
}

// Sum returns the size and SHA-256 of the compressed stream written so far
// to the destination; final after Close.
func (s *Sink) Sum() Sum { return s.sum }

// CompressHash copies r to EOF through a Sink into w and returns the
// compressed stream's Sum. On error or cancellation w has received a
// truncated stream, which the caller discards.
func CompressHash(ctx context.Context, r io.Reader, w io.Writer, level zstd.EncoderLevel) (Sum, error) {
	s, err := NewSink(w, level)
	if err != nil {
		return Sum{}, err
	}
	_, err = io.CopyBuffer(s, ctxReader{ctx, r}, make([]byte, 1<<20))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Sum{}, err
	}
	return s.Sum(), nil
}

// SumReader reads r to EOF and returns its size and SHA-256 (verify's
// counterpart of a Sink, over the stored bytes).
func SumReader(ctx context.Context, r io.Reader) (Sum, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, r}, make([]byte, 1<<20))
	if err != nil {
		return Sum{}, err
	}
	return Sum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ctxReader fails reads once ctx is done, so long copies stop on cancel.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// TarStats describes what WriteTar archived.
type TarStats struct {
	Entries int      // tar entries written: directories, regular files, symlinks
	Bytes   int64    // content bytes of regular files stored (uncompressed)
	Changed []string // paths that changed, shrank or vanished while read (stored as read, or absent if vanished)
	Skipped []string // entries not archived, as "path (socket)", "(device)", "(fifo)", "(irregular)"
}

// WriteTar writes a PAX tar of dir's contents to w (w is not closed).
//
// Names are relative to dir with "/" separators and no "./" prefix
// (directories end in "/"), in lexical walk order, so an unchanged tree
// gives identical bytes. Entries carry mode, mtime, uid/gid (and the user
// and group names); access and change times are left out. Directories are
// stored, empty ones included. Symbolic links are stored as links and never
// followed, also when they point to a directory or nowhere. Hard links are
// stored as independent regular files (content duplicated; a restore gives
// separate files). Sockets, devices and FIFOs are skipped and listed in
// Skipped. Extended attributes and ACLs are not stored. dir itself may be
// a symbolic link to a directory: it is resolved once.
//
// A regular file whose size or mtime differ before and after it is read,
// or that ends before its size, is stored as read (zero-padded to the size
// in its header, so the archive stays valid) and listed in Changed; a file
// that vanishes before it is opened is listed in Changed and not stored.
// Any other read error, a write error or ctx's cancellation fails the call;
// w then holds a truncated archive for the caller to discard.
func WriteTar(ctx context.Context, dir string, w io.Writer) (TarStats, error) {
	var st TarStats
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return st, fmt.Errorf("archive %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return st, fmt.Errorf("archive %s: %w", dir, err)
	} else if !fi.IsDir() {
		return st, fmt.Errorf("archive %s: not a directory", dir)
	}
	tw := tar.NewWriter(w)
	buf := make([]byte, 1<<20)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if p == root {
			return err
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		name := filepath.ToSlash(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // a directory removed while walked
				st.Changed = append(st.Changed, name)
				return nil
			}
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			st.Changed = append(st.Changed, name)
			return nil
		}
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			return writeHeader(tw, info, name+"/", "", &st)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if errors.Is(err, fs.ErrNotExist) {
				st.Changed = append(st.Changed, name)
				return nil
			}
			if err != nil {
				return err
			}
			return writeHeader(tw, info, name, target, &st)
		case mode.IsRegular():
			return writeFile(ctx, tw, p, name, buf, &st)
		default:
			st.Skipped = append(st.Skipped, name+" ("+kind(mode)+")")
			return nil
		}
	})
	if walkErr != nil {
		return st, fmt.Errorf("archive %s: %w", dir, walkErr)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("archive %s: finish tar: %w", dir, err)
	}
	return st, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		return "device"
	}
	return "irregular"
}

func header(info fs.FileInfo, name, link string) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return nil, fmt.Errorf("tar header %s: %w", name, err)
	}
	hdr.Name = name
	hdr.Format = tar.FormatPAX
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{} // not stable; restores set mtime only
	return hdr, nil
}

func writeHeader(tw *tar.Writer, info fs.FileInfo, name, link string, st *TarStats) error {
	hdr, err := header(info, name, link)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar entry %s: %w", name, err)
	}
	st.Entries++
	return nil
}

// writeFile stores one regular file from an open descriptor, so the
// header's size and mtime describe the file actually read even if the
// path is replaced meanwhile.
func writeFile(ctx context.Context, tw *tar.Writer, path, name string, buf []byte, st *TarStats) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		st.Changed = append(st.Changed, name) // vanished, or replaced by a symlink
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return err
	}
	if !before.Mode().IsRegular() {
		st.Changed = append(st.Changed, name) // replaced by something else after the walk saw it
		return nil
	}
	hdr, err := header(before, name, "")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar entry %s: %w", name, err)
	}
	st.Entries++
	n, err := io.CopyBuffer(tw, io.LimitReader(ctxReader{ctx, f}, hdr.Size), buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	changed := false
	if n < hdr.Size { // truncated while read: pad so the archive stays valid
		changed = true
		if _, err := io.CopyBuffer(tw, io.LimitReader(zeros{}, hdr.Size-n), buf); err != nil {
			return fmt.Errorf("write tar entry %s: %w", name, err)
		}
	}
	after, err := f.Stat()
	if err != nil {
		return err
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		changed = true
	}
	if changed {
		st.Changed = append(st.Changed, name)
	}
	st.Bytes += hdr.Size
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// WalkTarZstd decompresses a .tar.zst stream and calls fn (when non-nil)
// with each entry's header, in archive order. It reads every entry's
// content and r to its very end, so a damaged archive fails: a bad zstd
// block or frame checksum, a bad tar header, a stream cut short or a tar
// without its end-of-archive marker (one written by a tar writer that
// failed half way) is an error naming how far the walk got. An error from
// fn stops the walk and is returned as is. entries counts the headers read.
//
// Structure is not integrity: a flipped bit in a zstd frame-header field
// that does not change the decoded bytes (the window size) passes. Because
// r is read to its end, a caller checks the manifest's SHA-256 in the same
// pass by giving an io.TeeReader of the file and a hash.
func WalkTarZstd(ctx context.Context, r io.Reader, fn func(hdr *tar.Header) error) (entries int, err error) {
	dec, err := zstd.NewReader(ctxReader{ctx, r}, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, fmt.Errorf("zstd decoder: %w", err)
	}
	defer dec.Close()
	cr := &countReader{r: dec}
	tr := tar.NewReader(cr)
	var end int64 // archive offset where the last entry, padded to a block, ends
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// The tar reader stops at 0, 1 or 2 zero blocks alike; only
			// the last is a finished archive.
			if cr.n-end != 2*blockSize {
				return entries, fmt.Errorf("read tar.zst: after %d entries: archive ends without its end-of-archive marker (truncated)", entries)
			}
			break
		}
		if err != nil {
			return entries, fmt.Errorf("read tar.zst: after %d entries: %w", entries, err)
		}
		entries++
		if fn != nil {
			if err := fn(hdr); err != nil {
				return entries, err
			}
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return entries, fmt.Errorf("read tar.zst: entry %d %q: %w", entries, hdr.Name, err)
		}
		end = (cr.n + blockSize - 1) / blockSize * blockSize
	}
	// The zstd frame (and its checksum) may go on past the tar end marker:
	// read on to the end of r.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return entries, fmt.Errorf("read tar.zst: after the last of %d entries: %w", entries, err)
	}
	return entries, nil
}

const blockSize = 512 // tar block

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
