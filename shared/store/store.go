package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Object describes one stored object.
type Object struct {
	Key      string // relative to the store's root or prefix
	Size     int64
	SHA256   string    // hex SHA-256 of the whole object, when known ("" otherwise)
	ETag     string    // S3's ETag; "" for a Dir
	Modified time.Time // for what S3's Put returns: the local time of the Put
}

var (
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("not found")
	// ErrExists: a Put with IfNoneMatch lost, an object already is under the key.
	ErrExists = errors.New("already exists")
	// ErrInvalidKey: the key is empty, absolute, has an empty, "." or ".."
	// segment, a NUL, or a segment starting with the reserved ".tmp-".
	ErrInvalidKey = errors.New("invalid key")
)

// PutOptions tune one Put.
type PutOptions struct {
	// IfNoneMatch stores the object only if nothing is under the key yet
	// (S3's If-None-Match: *); otherwise Put fails with ErrExists.
	IfNoneMatch bool
	// ContentType is recorded where the store keeps it (S3); "" = default.
	ContentType string
	// Size is the number of bytes r will yield when > 0; 0 or -1 = unknown.
	// When set, a reader that yields a different count fails the Put.
	Size int64
}

// Store keeps objects under slash-separated keys ("host/snapshots/ID/db.zst").
//
// Put streams r to key, reading it once, and returns the stored object with
// the SHA-256 of the bytes it read. A Put is all or nothing: when it fails
// for any reason — r returns an error, ctx is cancelled, the store is
// unreachable, IfNoneMatch lost — nothing new is visible under key (an
// object already there stays as it was) and the error says which key and,
// for S3, which part. Without IfNoneMatch a Put replaces the object.
// Transient network failures are retried inside Put; the caller need not.
//
// Get returns the object's content (the caller closes it); reading it
// honours ctx. Stat describes an object without reading it. List returns
// every object whose key starts with prefix (a plain string prefix, not
// only a "directory"), sorted by key. Delete removes key; deleting a key
// that does not exist is not an error, so Delete is idempotent. (In a
// versioned S3 bucket Delete adds a delete marker: earlier versions stay
// under the bucket's lifecycle and object-lock rules.)
//
// Get and Stat of a missing key fail with an error matching ErrNotFound;
// an invalid key fails every method with ErrInvalidKey. Every method
// honours ctx. A Store is safe for concurrent use.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, o PutOptions) (Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	Stat(ctx context.Context, key string) (Object, error)
	List(ctx context.Context, prefix string) ([]Object, error)
	Delete(ctx context.Context, key string) error
	String() string // "s3://bucket/prefix" or "dir:/path", for messages
}

// tmpPrefix starts the names of a Dir's temp files; keys may not use it.
const tmpPrefix = ".tmp-"

// ValidateKey reports whether key is acceptable to every Store.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("key %q: %s: %w", key, why, ErrInvalidKey) }
	switch {
	case key == "":
		return bad("empty")
	case strings.HasPrefix(key, "/"):
		return bad("absolute")
	case strings.ContainsRune(key, 0):
		return bad("contains NUL")
	case strings.Contains(key, `\`):
		return bad("contains a backslash")
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return bad("empty segment")
		case seg == "." || seg == "..":
			return bad(fmt.Sprintf("%q segment", seg))
		case strings.HasPrefix(seg, tmpPrefix):
			return bad("segment starts with the reserved " + tmpPrefix)
		}
	}
	return nil
}

// validatePrefix accepts "" and any prefix of a valid key ("snap/", "snap/2024").
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	k := strings.TrimSuffix(prefix, "/")
	if err := ValidateKey(k); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, ErrInvalidKey)
	}
	return nil
}

// checkSize compares what was read with PutOptions.Size.
func checkSize(o PutOptions, n int64) error {
	if o.Size > 0 && n != o.Size {
		return fmt.Errorf("read %d bytes, expected %d", n, o.Size)
	}
	return nil
}

// ctxReader fails reads once ctx is done, so a copy from a never-ending
// reader stops on cancellation.
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
