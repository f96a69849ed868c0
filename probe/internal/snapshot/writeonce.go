package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"backstop/shared/store"
)

// Snapshot objects in the store are write-once: every Put under
// <host>/snapshots/ carries If-None-Match (the template's ProbePolicy
// denies one without it), so neither a retried push nor anyone holding the
// probe's credentials replaces a part or a manifest already stored.

// putOnce stores r under key only if nothing is there yet. An object
// already under key whose SHA-256 is sha counts as stored (a push retried
// after a lost response); one with other contents is an error naming both
// digests. The caller wraps the error with the operation.
func (e *Engine) putOnce(ctx context.Context, key string, r io.Reader, o store.PutOptions, sha string) (store.Object, error) {
	o.IfNoneMatch = true
	obj, err := e.Store.Put(ctx, key, r, o)
	if !errors.Is(err, store.ErrExists) {
		return obj, err
	}
	return sameObject(ctx, e.Store, key, sha, err)
}

// putBytesOnce is putOnce of a small object held in memory.
func (e *Engine) putBytesOnce(ctx context.Context, key string, data []byte, contentType string) error {
	sum, _ := SumReader(ctx, bytes.NewReader(data))
	_, err := e.putOnce(ctx, key, bytes.NewReader(data), store.PutOptions{Size: int64(len(data)), ContentType: contentType}, sum.SHA256)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// sameObject reads the object under key and returns it when its SHA-256 is
// sha; otherwise the conflict, wrapping exists (ErrExists).
func sameObject(ctx context.Context, s store.Store, key, sha string, exists error) (store.Object, error) {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return store.Object{}, fmt.Errorf("%w; reading it back: %w", exists, err)
	}
	defer rc.Close()
	sum, err := SumReader(ctx, rc)
	if err != nil {
		return store.Object{}, fmt.Errorf("%w; reading it back: %w", exists, err)
	}
	if sum.SHA256 != sha {
		return store.Object{}, fmt.Errorf("%w with other contents (SHA-256 %s, want %s); snapshot objects are write-once", exists, sum.SHA256, sha)
	}
	return store.Object{Key: key, Size: sum.Size, SHA256: sum.SHA256}, nil
}
