package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func sha256b64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestS3 proves the server is real S3 for what the store relies on: objects
// survive Stop/Start on the same port, checksums are verified (BadDigest),
// If-None-Match is enforced (412) and the bucket has object lock enabled.
func TestS3(t *testing.T) {
	srv := S3(t)
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := []byte("hello backstop")

	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &srv.Bucket, Key: aws.String("a/b.txt"), Body: bytes.NewReader(body),
		ChecksumSHA256: aws.String(sha256b64(body)),
	}); err != nil {
		t.Fatalf("put: %v", err)
	}

	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatalf("get object lock configuration: %v", err)
	}
	if lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Errorf("bucket %s: object lock not enabled: %+v", srv.Bucket, lock.ObjectLockConfiguration)
	}

	tests := []struct {
		name     string
		in       *s3.PutObjectInput
		wantCode string
	}{
		{"wrong checksum", &s3.PutObjectInput{
			Key: aws.String("bad.txt"), Body: bytes.NewReader(body),
			ChecksumSHA256: aws.String(sha256b64([]byte("something else"))),
		}, "BadDigest"},
		{"if-none-match on existing key", &s3.PutObjectInput{
			Key: aws.String("a/b.txt"), Body: bytes.NewReader(body), IfNoneMatch: aws.String("*"),
		}, "PreconditionFailed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Bucket = &srv.Bucket
			_, err := c.PutObject(ctx, tc.in)
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tc.wantCode {
				t.Fatalf("put %s: got %v, want error code %s", *tc.in.Key, err, tc.wantCode)
			}
		})
	}

	srv.Stop(t)
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String("a/b.txt")},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("head while stopped: got %v, want connection refused", err)
	}

	srv.Start(t)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &srv.Bucket, Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("get after restart: %q, %v; want %q", got, err, body)
	}
}
