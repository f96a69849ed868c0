package s3err

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/testenv"
)

// TestAgainstARealServer gets each classified error from a real S3 server
// (versitygw) and checks that it is told apart, and nothing else is.
func TestAgainstARealServer(t *testing.T) {
	srv := testenv.S3(t)
	c := srv.Client(t)
	ctx := context.Background()
	b := aws.String(srv.Bucket)
	put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("k"), Body: strings.NewReader("v")})
	if err != nil {
		t.Fatal(err)
	}
	_, getMissing := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("missing")})
	_, headMissing := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("missing")})
	_, exists := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("k"), Body: strings.NewReader("w"), IfNoneMatch: aws.String("*")})
	_, staleETag := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("k"), Body: strings.NewReader("w"), IfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)})
	_, noBucket := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("no-such-bucket-x"), Key: aws.String("k")})
	if put.ETag == nil {
		t.Fatal("no ETag on the first put")
	}
	cases := []struct {
		name                   string
		err                    error
		notFound, precondition bool
	}{
		{"get of a missing key", getMissing, true, false},
		{"head of a missing key (no body)", headMissing, true, false},
		{"If-None-Match over an existing key", exists, false, true},
		{"If-Match with a stale ETag", staleETag, false, true},
		{"a missing bucket is not a missing key", noBucket, false, false},
		{"not an S3 error", errors.New("dial tcp: refused"), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil && (c.notFound || c.precondition) {
				t.Fatal("the server did not refuse the request")
			}
			if got := IsNotFound(c.err); got != c.notFound {
				t.Errorf("IsNotFound(%v) = %v, want %v", c.err, got, c.notFound)
			}
			if got := IsPreconditionFailed(c.err); got != c.precondition {
				t.Errorf("IsPreconditionFailed(%v) = %v, want %v", c.err, got, c.precondition)
			}
		})
	}
	if s := StatusOf(headMissing); s != 404 {
		t.Errorf("StatusOf(head missing) = %d, want 404", s)
	}
}
