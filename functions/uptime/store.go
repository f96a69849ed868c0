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

// ObjectStore is the part of S3 the function uses; *s3.Client satisfies it.
type ObjectStore interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

var _ ObjectStore = (*s3.Client)(nil)

// errNotFound is returned by getObject for a missing key.
var errNotFound = errors.New("no such key")

// maxObject bounds what getObject reads (the state of 1,000 targets is a
// few MB).
const maxObject = 64 << 20

// getObject reads a whole object and its ETag.
func getObject(ctx context.Context, s ObjectStore, bucket, key string) (data []byte, etag string, err error) {
	out, err := s.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if s3err.IsNotFound(err) {
			return nil, "", fmt.Errorf("get s3://%s/%s: %w", bucket, key, errNotFound)
		}
		return nil, "", fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err = io.ReadAll(io.LimitReader(out.Body, maxObject+1))
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	if len(data) > maxObject {
		return nil, "", fmt.Errorf("read s3://%s/%s: larger than %d bytes", bucket, key, maxObject)
	}
	return data, aws.ToString(out.ETag), nil
}

// putObject writes data. ifMatch != "" writes only over that ETag;
// ifNoneMatch writes only when the key does not exist. A refused
// condition is reported as errPrecondition, a racing one as errConflict.
func putObject(ctx context.Context, s ObjectStore, bucket, key string, data []byte, ifMatch string, ifNoneMatch bool) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	}
	if ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.PutObject(ctx, in)
	switch {
	case err == nil:
		return aws.ToString(out.ETag), nil
	case s3err.StatusOf(err) == http.StatusPreconditionFailed:
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, errPrecondition)
	case s3err.StatusOf(err) == http.StatusConflict:
		// S3's ConditionalRequestConflict: a concurrent conditional write; try again.
		return "", fmt.Errorf("put s3://%s/%s: %w: %w", bucket, key, errConflict, err)
	}
	return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
}

// errPrecondition: an If-Match or If-None-Match condition did not hold
// (412). errConflict: S3 refused a conditional write racing another (409).
var (
	errPrecondition = errors.New("precondition failed")
	errConflict     = errors.New("conflicting conditional write")
)
