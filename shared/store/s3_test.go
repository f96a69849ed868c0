package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"backstop/shared/store"
	"backstop/shared/store/storetest"
	"backstop/shared/testenv"
)

const MiB = storetest.MiB

// s3Config is a store config for srv under a prefix of its own: 5 MiB
// parts, two at a time, quick retries.
func s3Config(t *testing.T, srv *testenv.S3Server) store.S3Config {
	return store.S3Config{
		Bucket:      srv.Bucket,
		Region:      srv.Region,
		Endpoint:    srv.Endpoint,
		Prefix:      "t/" + regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "_"),
		AccessKey:   srv.AccessKey,
		SecretKey:   srv.SecretKey,
		PathStyle:   true,
		PartSize:    5 * MiB,
		Concurrency: 2,
		MaxAttempts: 3,
		MaxBackoff:  50 * time.Millisecond,
	}
}

func newS3(t *testing.T, c store.S3Config) *store.S3 {
	t.Helper()
	s, err := store.NewS3(context.Background(), c)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	srv := testenv.S3(t)
	storetest.RunConformance(t, func(t *testing.T) store.Store { return newS3(t, s3Config(t, srv)) })
}

// stopAfter yields its reader's bytes and runs stop once n were read.
type stopAfter struct {
	r    io.Reader
	n    int64
	stop func()
}

func (s *stopAfter) Read(p []byte) (int, error) {
	if s.n <= 0 && s.stop != nil {
		s.stop()
		s.stop = nil
	}
	if s.stop != nil && int64(len(p)) > s.n {
		p = p[:s.n]
	}
	n, err := s.r.Read(p)
	s.n -= int64(n)
	return n, err
}

// TestS3ServerDown stops S3 in the middle of a multipart Put: the Put fails
// after its retries with the cause and the part, leaves nothing under the
// key, and the same Put succeeds once S3 is back.
func TestS3ServerDown(t *testing.T) {
	srv := testenv.S3(t)
	s := newS3(t, s3Config(t, srv))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const key, size = "db.zst", 30 * MiB

	r, sum := storetest.Random(7, size)
	_, err := s.Put(ctx, key, &stopAfter{r: r, n: 12 * MiB, stop: func() { srv.Stop(t) }}, store.PutOptions{Size: -1})
	if err == nil {
		t.Fatal("put while S3 went down: succeeded")
	}
	t.Logf("put while S3 went down: %v", err)
	var maxAttempts *retry.MaxAttemptsError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &maxAttempts) || maxAttempts.Attempt != 3 {
		t.Errorf("put while S3 went down: %v; want connection refused after 3 attempts", err)
	}
	if prefix := "put " + s.String() + "/" + key + ": part "; !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("put while S3 went down: %q; want it to start with %q", err, prefix)
	}
	if !strings.Contains(err.Error(), "abort upload") {
		t.Errorf("put while S3 went down: %q; want it to say the abort failed too", err)
	}

	srv.Start(t)
	if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stat after the failed put: %v; want ErrNotFound", err)
	}
	r, _ = storetest.Random(7, size)
	obj, err := s.Put(ctx, key, r, store.PutOptions{Size: -1})
	if err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	if obj.SHA256 != sum || obj.Size != size {
		t.Errorf("put after restart: %+v; want size %d sha256 %s", obj, size, sum)
	}
}

// TestS3ServerBlip stops S3 in the middle of a multipart Put and starts it
// again a moment later: the parts sent while it was down are retried and
// the Put succeeds with the right content.
func TestS3ServerBlip(t *testing.T) {
	srv := testenv.S3(t)
	cfg := s3Config(t, srv)
	cfg.MaxAttempts, cfg.MaxBackoff = 20, time.Second // a budget far longer than a restart
	s := newS3(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const key, size = "data.tar.zst", 22 * MiB

	stopped := make(chan struct{})
	type result struct {
		obj store.Object
		err error
	}
	done := make(chan result, 1)
	r, sum := storetest.Random(9, size)
	go func() {
		// Parts 3.. are handed to the uploaders after S3 went down.
		obj, err := s.Put(ctx, key, &stopAfter{r: r, n: 10 * MiB, stop: func() { srv.Stop(t); close(stopped) }}, store.PutOptions{Size: -1})
		done <- result{obj, err}
	}()
	select {
	case <-stopped:
	case res := <-done:
		t.Fatalf("put finished before S3 was stopped: %+v, %v", res.obj, res.err)
	}
	time.Sleep(300 * time.Millisecond) // let the uploaders hit the closed port
	srv.Start(t)
	res := <-done
	if res.err != nil {
		t.Fatalf("put across an S3 restart: %v", res.err)
	}
	if res.obj.SHA256 != sum || res.obj.Size != size {
		t.Errorf("put across an S3 restart: %+v; want size %d sha256 %s", res.obj, size, sum)
	}
	n, got, _ := readBack(t, ctx, s, key)
	if n != size || got != sum {
		t.Errorf("get %s: %d bytes sha256 %s; want %d bytes sha256 %s", key, n, got, size, sum)
	}
}

func readBack(t *testing.T, ctx context.Context, s store.Store, key string) (int64, string, store.Object) {
	t.Helper()
	rc, obj, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), obj
}

// TestS3Checksums proves the checksums are real: versitygw rejects a part
// or an object whose SHA-256 does not match (BadDigest), and the store's
// uploads carry per-part SHA-256s (S3's composite checksum of a multipart
// object equals the one computed here from the data) and the whole-object
// SHA-256 for a single-part object.
func TestS3Checksums(t *testing.T) {
	srv := testenv.S3(t)
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body := bytes.Repeat([]byte("backstop"), 1000)
	wrong := sha256.Sum256([]byte("not the body"))
	wrongB64 := base64.StdEncoding.EncodeToString(wrong[:])

	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &srv.Bucket, Key: aws.String("raw/multi"), ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"upload part", func() error {
			_, err := c.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &srv.Bucket, Key: aws.String("raw/multi"), UploadId: up.UploadId, PartNumber: aws.Int32(1),
				Body: bytes.NewReader(body), ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumSHA256: &wrongB64,
			})
			return err
		}},
		{"put object", func() error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &srv.Bucket, Key: aws.String("raw/single"),
				Body: bytes.NewReader(body), ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumSHA256: &wrongB64,
			})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var api smithy.APIError
			if err := tc.call(); !errors.As(err, &api) || api.ErrorCode() != "BadDigest" {
				t.Fatalf("%s with a wrong ChecksumSHA256: %v; want BadDigest", tc.name, err)
			}
		})
	}

	cfg := s3Config(t, srv)
	s := newS3(t, cfg)
	sizes := []struct {
		name      string
		size      int64
		wantParts int
	}{
		{"single part", 3 * MiB, 0},
		{"three parts", 12 * MiB, 3},
	}
	for i, tc := range sizes {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("obj-%d", i)
			r, _ := storetest.Random(uint64(50+i), tc.size)
			data, _ := io.ReadAll(r)
			if _, err := s.Put(ctx, key, struct{ io.Reader }{bytes.NewReader(data)}, store.PutOptions{Size: -1}); err != nil {
				t.Fatal(err)
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{
				Bucket: &srv.Bucket, Key: aws.String(cfg.Prefix + "/" + key), ChecksumMode: types.ChecksumModeEnabled,
			})
			if err != nil {
				t.Fatal(err)
			}
			whole := sha256.Sum256(data)
			want := base64.StdEncoding.EncodeToString(whole[:])
			if tc.wantParts > 0 {
				h := sha256.New()
				for p := int64(0); p < tc.size; p += cfg.PartSize {
					sum := sha256.Sum256(data[p:min(p+cfg.PartSize, tc.size)])
					h.Write(sum[:])
				}
				want = fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), tc.wantParts)
			}
			if got := aws.ToString(head.ChecksumSHA256); got != want {
				t.Errorf("S3's ChecksumSHA256 of %s = %q; want %q", key, got, want)
			}
			if tc.wantParts == 0 && head.Metadata["sha256"] != hex.EncodeToString(whole[:]) {
				t.Errorf("metadata sha256 of %s = %q; want %x", key, head.Metadata["sha256"], whole)
			}
		})
	}
}

// TestS3Errors: a wrong secret fails with S3's reason and never shows the
// secret; a missing bucket is not "not found" for a key.
func TestS3Errors(t *testing.T) {
	srv := testenv.S3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bad := s3Config(t, srv)
	bad.SecretKey = "wrong-secret-do-not-print"
	_, err := newS3(t, bad).Put(ctx, "k", strings.NewReader("x"), store.PutOptions{})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "SignatureDoesNotMatch" {
		t.Errorf("put with a wrong secret: %v; want SignatureDoesNotMatch", err)
	}
	if err != nil && strings.Contains(err.Error(), bad.SecretKey) {
		t.Errorf("error shows the secret: %v", err)
	}
	if got := fmt.Sprintf("%v %+v", bad, bad); strings.Contains(got, bad.SecretKey) {
		t.Errorf("printing the config shows the secret: %s", got)
	}

	nob := s3Config(t, srv)
	nob.Bucket = "no-such-bucket"
	_, _, err = newS3(t, nob).Get(ctx, "k")
	if !errors.As(err, &api) || api.ErrorCode() != "NoSuchBucket" || errors.Is(err, store.ErrNotFound) {
		t.Errorf("get from a missing bucket: %v; want NoSuchBucket, not ErrNotFound", err)
	}

	for _, c := range []struct {
		name string
		cfg  func(*store.S3Config)
		want string
	}{
		{"no bucket", func(c *store.S3Config) { c.Bucket = "" }, "s3 store: empty bucket"},
		{"small parts", func(c *store.S3Config) { c.PartSize = 1 << 20 }, "s3 store: part size 1048576 below S3's minimum 5242880"},
		{"bad prefix", func(c *store.S3Config) { c.Prefix = "a/../b" }, `s3 store: prefix: key "a/../b": ".." segment: invalid key`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := s3Config(t, srv)
			c.cfg(&cfg)
			if _, err := store.NewS3(ctx, cfg); err == nil || err.Error() != c.want {
				t.Errorf("NewS3: %v; want %q", err, c.want)
			}
		})
	}
}
