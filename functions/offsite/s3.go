package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
)

// Source is the part of S3 the function uses on the source bucket (the
// snapshots, catalogs, heartbeats, its state and events); *s3.Client
// satisfies it.
type Source interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// Vault is the part of S3 the function uses on the vault bucket. Copies
// are requested from the vault's side (its region), S3 reading the source
// itself: no object byte passes through the function.
type Vault interface {
	CopyObject(ctx context.Context, in *s3.CopyObjectInput, optFns ...func(*s3.Options)) (*s3.CopyObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, optFns ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

var (
	_ Source = (*s3.Client)(nil)
	_ Vault  = (*s3.Client)(nil)
)

// Sentinel errors of the conditional writes.
var (
	errNotFound     = errors.New("no such key")
	errPrecondition = errors.New("precondition failed") // If-Match / If-None-Match refused (412), or a racing conditional write (409)
)

// maxJSON bounds what is read of one JSON object (manifest, catalog, state).
const maxJSON = 8 << 20

// getJSON reads bucket/key (at version, when not empty) into v and
// returns the object's ETag and the raw bytes.
func getJSON(ctx context.Context, s Source, bucket, key, version string, v any) (string, []byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" && version != "null" {
		in.VersionId = aws.String(version)
	}
	out, err := s.GetObject(ctx, in)
	if err != nil {
		if s3err.IsNotFound(err) {
			return "", nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, errNotFound)
		}
		return "", nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxJSON+1))
	if err != nil {
		return "", nil, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	if len(data) > maxJSON {
		return "", nil, fmt.Errorf("read s3://%s/%s: larger than %d bytes", bucket, key, maxJSON)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return "", nil, fmt.Errorf("decode s3://%s/%s: %w", bucket, key, err)
		}
	}
	return aws.ToString(out.ETag), data, nil
}

// putJSON writes v to bucket/key: only over ifMatch when it is set, else
// only where nothing exists (If-None-Match: *). A refused condition is
// errPrecondition. It returns the new ETag.
func putJSON(ctx context.Context, s Source, bucket, key string, v any, ifMatch string) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode s3://%s/%s: %w", bucket, key, err)
	}
	data = append(data, '\n')
	in := &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.PutObject(ctx, in)
	if err != nil {
		if s3err.IsPreconditionFailed(err) {
			return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, errPrecondition)
		}
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// copySource is the x-amz-copy-source of bucket/key at version: the key
// URL-encoded segment by segment.
func copySource(bucket, key, version string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	src := bucket + "/" + strings.Join(segs, "/")
	if version != "" && version != "null" {
		src += "?versionId=" + url.QueryEscape(version)
	}
	return src
}
