package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
)

// ObjectStore is the part of S3 the function uses: manifests, the vault
// catalog, heartbeats and commands in the backstop bucket. *s3.Client
// satisfies it.
type ObjectStore interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

var _ ObjectStore = (*s3.Client)(nil)

var (
	// errNotFound: the key does not exist.
	errNotFound = errors.New("no such key")
	// errExists: a write with If-None-Match: * found the key already there.
	errExists = errors.New("already exists")
)

// maxJSON bounds every JSON object the function reads (a manifest is a few
// KB; the largest is a vault catalog of a few hundred snapshots).
const maxJSON = 4 << 20

// get reads a whole (small) object.
func (h *Handler) get(ctx context.Context, key string) ([]byte, error) {
	out, err := h.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.Bucket), Key: aws.String(key)})
	if err != nil {
		if s3err.IsNotFound(err) {
			return nil, fmt.Errorf("get s3://%s/%s: %w", h.Bucket, key, errNotFound)
		}
		return nil, fmt.Errorf("get s3://%s/%s: %w", h.Bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", h.Bucket, key, err)
	}
	if len(data) > maxJSON {
		return nil, fmt.Errorf("read s3://%s/%s: larger than %d bytes", h.Bucket, key, maxJSON)
	}
	return data, nil
}

// create writes data only when key does not exist yet (If-None-Match:
// *); errExists when it does.
func (h *Handler) create(ctx context.Context, key string, data []byte) error {
	_, err := h.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(h.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
		IfNoneMatch:   aws.String("*"),
	})
	switch {
	case err == nil:
		return nil
	case s3err.StatusOf(err) == http.StatusPreconditionFailed, s3err.StatusOf(err) == http.StatusConflict:
		// 409 ConditionalRequestConflict: another write to the key is in
		// flight, so it will exist either way.
		return fmt.Errorf("put s3://%s/%s: %w", h.Bucket, key, errExists)
	}
	return fmt.Errorf("put s3://%s/%s: %w", h.Bucket, key, err)
}

// object is one listed key with its size.
type object struct {
	Key  string
	Size int64
}

// list returns every object under prefix, following continuation tokens,
// up to limit objects (truncated reports whether more were left).
func (h *Handler) list(ctx context.Context, prefix string, limit int) (objs []object, truncated bool, err error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(h.Bucket), Prefix: aws.String(prefix)}
	for {
		out, err := h.S3.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, false, fmt.Errorf("list s3://%s/%s: %w", h.Bucket, prefix, err)
		}
		for _, o := range out.Contents {
			if len(objs) == limit {
				return objs, true, nil
			}
			objs = append(objs, object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			return objs, false, nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}
