package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

const (
	// DefaultPartSize is the multipart part size when S3Config.PartSize is 0.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part (all but the last).
	MinPartSize = 5 << 20
	// maxParts is S3's limit on parts per upload.
	maxParts = 10000
)

// S3Config says where an S3 store keeps its objects and how it uploads.
type S3Config struct {
	Bucket    string
	Region    string // "" = from the default AWS config (AWS_REGION, profile)
	Endpoint  string // "" = AWS; else e.g. http://127.0.0.1:7070
	Prefix    string // keys go under Prefix + "/"; "" = bucket root
	AccessKey string // "" = the SDK's default credential chain (env, profile, role)
	SecretKey string
	PathStyle bool // path-style addressing (S3-compatible servers)

	PartSize    int64         // multipart part size; 0 = DefaultPartSize; at least MinPartSize
	Concurrency int           // parts uploaded at once; 0 = 4
	MaxAttempts int           // attempts per request, the first included; 0 = 5
	MaxBackoff  time.Duration // longest wait between attempts; 0 = 20s
}

// String describes the config for logs, without the secret key.
func (c S3Config) String() string {
	return fmt.Sprintf("s3://%s/%s (region %q, endpoint %q, access key %q)",
		c.Bucket, strings.Trim(c.Prefix, "/"), c.Region, c.Endpoint, c.AccessKey)
}

// S3 is a Store in an S3 bucket under an optional prefix.
//
// Put reads its source once and never spools it to disk. A body of at
// most PartSize bytes is sent as one PutObject with its SHA-256 as
// x-amz-checksum-sha256 (the server rejects the body with BadDigest if it
// does not match) and as user metadata "sha256". A longer body is a
// multipart upload: each part carries its own SHA-256 checksum, the server
// verifies every part, and the object ends with S3's composite checksum
// (SHA-256 of the parts' SHA-256s, "-N"). The whole-object SHA-256 is
// computed while streaming and returned by Put, but S3 does not hold it for
// multipart objects: the caller records it (the snapshot manifest does).
// Memory is bounded by PartSize × Concurrency.
//
// Each request is retried by the SDK's standard retryer (MaxAttempts,
// exponential backoff with jitter up to MaxBackoff): a network failure
// mid-upload retries that part only. A failed multipart Put aborts its
// upload; if the abort itself cannot reach the server, the parts stay
// invisible until the bucket's AbortIncompleteMultipartUpload lifecycle
// rule removes them.
//
// If a conditional Put's response is lost and the SDK retries it, the retry
// can report ErrExists for the object the first attempt wrote.
type S3 struct {
	client      *s3.Client
	bucket      string
	prefix      string // "" or ending in "/"
	partSize    int64
	concurrency int
}

var _ Store = (*S3)(nil)

// NewS3 builds the S3 client. It does no I/O beyond loading the default AWS
// configuration (environment, shared config files).
func NewS3(ctx context.Context, c S3Config) (*S3, error) {
	if c.Bucket == "" {
		return nil, errors.New("s3 store: empty bucket")
	}
	prefix := strings.Trim(c.Prefix, "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 store: prefix: %w", err)
		}
		prefix += "/"
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3 store: part size %d below S3's minimum %d", c.PartSize, MinPartSize)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 20 * time.Second
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = c.MaxAttempts
				o.MaxBackoff = c.MaxBackoff
				// One uploader, not a fleet: no client-side retry quota
				// that would turn a long outage into "quota exceeded".
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("s3 store s3://%s: no region (set store.s3.region or AWS_REGION)", c.Bucket)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = c.PathStyle
		// GetObject cannot validate a multipart object's composite
		// checksum; that is expected, not worth a warning per read.
		o.DisableLogOutputChecksumValidationSkipped = true
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
	return &S3{client: client, bucket: c.Bucket, prefix: prefix, partSize: c.PartSize, concurrency: c.Concurrency}, nil
}

func (s *S3) String() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// url names key in messages: s3://bucket/prefix/key.
func (s *S3) url(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

func (s *S3) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", s.url(key), err)
	}
	obj, err := s.put(ctx, key, r, o)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", s.url(key), err)
	}
	return obj, nil
}

func (s *S3) put(ctx context.Context, key string, r io.Reader, o PutOptions) (Object, error) {
	src := ctxReader{ctx, r}
	buf, err := readPart(src, s.partSize, o.Size)
	if err == io.EOF {
		return s.putSingle(ctx, key, buf, o)
	}
	n := len(buf)
	if err != nil {
		return Object{}, fmt.Errorf("read after %d bytes: %w", n, err)
	}
	// The first part is full: one more byte tells one part from several.
	var peek [1]byte
	m, err := io.ReadFull(src, peek[:])
	if err == io.EOF {
		return s.putSingle(ctx, key, buf, o)
	}
	if err != nil {
		return Object{}, fmt.Errorf("read after %d bytes: %w", n, err)
	}
	return s.putMultipart(ctx, key, buf, io.MultiReader(bytes.NewReader(peek[:m]), r), o)
}

func (s *S3) putSingle(ctx context.Context, key string, data []byte, o PutOptions) (Object, error) {
	if err := checkSize(o, int64(len(data))); err != nil {
		return Object{}, err
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(s.prefix + key),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		Metadata:          map[string]string{"sha256": hexSum},
	}
	if o.ContentType != "" {
		in.ContentType = aws.String(o.ContentType)
	}
	if o.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return Object{}, mapErr(err)
	}
	return Object{Key: key, Size: int64(len(data)), SHA256: hexSum, ETag: aws.ToString(out.ETag), Modified: time.Now()}, nil
}

// readPart reads up to limit bytes from r into a buffer that grows as
// needed (an event of a few hundred bytes does not cost a whole part) and
// never beyond limit. It returns io.EOF with the data when r ended first.
func readPart(r io.Reader, limit, hint int64) ([]byte, error) {
	size := int64(64 << 10)
	if hint > 0 {
		size = hint
	}
	buf := make([]byte, 0, min(size, limit))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, io.EOF
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

type part struct {
	num  int32
	data []byte
}

// putMultipart uploads first (a full part) and the rest of src as parts,
// Concurrency at a time, and completes the upload; on any failure it
// aborts the upload.
func (s *S3) putMultipart(ctx context.Context, key string, first []byte, src io.Reader, o PutOptions) (Object, error) {
	full := s.prefix + key
	create := &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(full),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumType:      types.ChecksumTypeComposite,
	}
	if o.ContentType != "" {
		create.ContentType = aws.String(o.ContentType)
	}
	up, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return Object{}, fmt.Errorf("create multipart upload: %w", mapErr(err))
	}
	uploadID := up.UploadId

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		done     []types.CompletedPart
		sums     = map[int32][]byte{}
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}

	jobs := make(chan part)
	free := make(chan []byte, s.concurrency)
	var wg sync.WaitGroup
	for range s.concurrency {
		wg.Go(func() {
			for p := range jobs {
				if uctx.Err() == nil {
					cp, sum, err := s.uploadPart(uctx, full, uploadID, p)
					if err != nil {
						fail(fmt.Errorf("part %d: %w", p.num, err))
					} else {
						mu.Lock()
						done = append(done, cp)
						sums[p.num] = sum
						mu.Unlock()
					}
				}
				free <- p.data[:s.partSize]
			}
		})
	}

	// Read parts in order, hashing the whole object as it streams by.
	h := sha256.New()
	h.Write(first)
	total := int64(len(first))
	jobs <- part{num: 1, data: first}
	allocated := 1
	for num := int32(2); uctx.Err() == nil; num++ {
		var buf []byte
		select {
		case buf = <-free:
		default:
			if allocated < s.concurrency {
				buf = make([]byte, s.partSize)
				allocated++
			} else {
				select {
				case buf = <-free:
				case <-uctx.Done():
				}
			}
		}
		if buf == nil {
			break
		}
		n, err := io.ReadFull(ctxReader{uctx, src}, buf)
		if n > 0 {
			if num > maxParts {
				fail(fmt.Errorf("more than %d parts of %d bytes: raise the part size", maxParts, s.partSize))
				break
			}
			h.Write(buf[:n])
			total += int64(n)
			select {
			case jobs <- part{num: num, data: buf[:n]}:
			case <-uctx.Done():
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			fail(fmt.Errorf("read after %d bytes: %w", total, err))
			break
		}
	}
	close(jobs)
	wg.Wait()

	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		firstErr = checkSize(o, total)
	}
	if firstErr != nil {
		return Object{}, s.abort(ctx, full, uploadID, firstErr)
	}

	sort.Slice(done, func(i, j int) bool { return *done[i].PartNumber < *done[j].PartNumber })
	complete := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(full),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	}
	if o.IfNoneMatch {
		complete.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.CompleteMultipartUpload(ctx, complete)
	var etag string
	if err != nil {
		composite := compositeSHA256(sums, len(done))
		var nsu *types.NoSuchUpload
		if errors.As(err, &nsu) && s.holds(ctx, full, composite) {
			// A retried Complete after a lost response: the first one
			// made the object.
		} else {
			return Object{}, s.abort(ctx, full, uploadID, fmt.Errorf("complete multipart upload: %w", mapErr(err)))
		}
	} else {
		etag = aws.ToString(out.ETag)
	}
	return Object{Key: key, Size: total, SHA256: hex.EncodeToString(h.Sum(nil)), ETag: etag, Modified: time.Now()}, nil
}

func (s *S3) uploadPart(ctx context.Context, full string, uploadID *string, p part) (types.CompletedPart, []byte, error) {
	sum := sha256.Sum256(p.data)
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(full),
		UploadId:          uploadID,
		PartNumber:        aws.Int32(p.num),
		Body:              bytes.NewReader(p.data),
		ContentLength:     aws.Int64(int64(len(p.data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(b64),
	})
	if err != nil {
		return types.CompletedPart{}, nil, mapErr(err)
	}
	return types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(p.num), ChecksumSHA256: aws.String(b64)}, sum[:], nil
}

// abort cancels a multipart upload after cause, even when ctx is done, and
// returns cause (with the abort's own failure, if any).
func (s *S3) abort(ctx context.Context, full string, uploadID *string, cause error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: uploadID,
	})
	if err != nil {
		return fmt.Errorf("%w (abort upload %s also failed: %v)", cause, aws.ToString(uploadID), err)
	}
	return cause
}

// compositeSHA256 is S3's checksum of a multipart object: the SHA-256 of
// the parts' SHA-256s, base64, then "-" and the number of parts.
func compositeSHA256(sums map[int32][]byte, n int) string {
	h := sha256.New()
	for i := int32(1); i <= int32(n); i++ {
		h.Write(sums[i])
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), n)
}

// holds reports whether full exists with the given S3 checksum.
func (s *S3) holds(ctx context.Context, full, checksum string) bool {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(full), ChecksumMode: types.ChecksumModeEnabled,
	})
	return err == nil && aws.ToString(out.ChecksumSHA256) == checksum
}

func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", s.url(key), err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", s.url(key), mapErr(err))
	}
	return out.Body, Object{
		Key:      key,
		Size:     aws.ToInt64(out.ContentLength),
		SHA256:   objectSHA256(out.Metadata, out.ChecksumSHA256),
		ETag:     aws.ToString(out.ETag),
		Modified: aws.ToTime(out.LastModified),
	}, nil
}

// Stat uses HEAD, whose error replies have no body: a missing bucket looks
// like a missing key (ErrNotFound) to it, unlike to Get.
func (s *S3) Stat(ctx context.Context, key string) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", s.url(key), err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", s.url(key), mapErr(err))
	}
	return Object{
		Key:      key,
		Size:     aws.ToInt64(out.ContentLength),
		SHA256:   objectSHA256(out.Metadata, out.ChecksumSHA256),
		ETag:     aws.ToString(out.ETag),
		Modified: aws.ToTime(out.LastModified),
	}, nil
}

// objectSHA256 is the whole-object SHA-256 in hex from the "sha256" user
// metadata, else from a full-object checksum; "" for multipart objects
// (their checksum is composite, "…-N").
func objectSHA256(meta map[string]string, checksum *string) string {
	if v := meta["sha256"]; v != "" {
		return v
	}
	c := aws.ToString(checksum)
	if c == "" || strings.Contains(c, "-") {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(c)
	if err != nil || len(raw) != sha256.Size {
		return ""
	}
	return hex.EncodeToString(raw)
}

func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list %s: %w", s.url(prefix), err)
	}
	var out []Object
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", s.url(prefix), mapErr(err))
		}
		for _, o := range page.Contents {
			out = append(out, Object{
				Key:      strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
				Size:     aws.ToInt64(o.Size),
				ETag:     aws.ToString(o.ETag),
				Modified: aws.ToTime(o.LastModified),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("delete %s: %w", s.url(key), err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		if err := mapErr(err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", s.url(key), mapErr(err))
	}
	return nil
}

// mapErr turns S3's "no such key" into ErrNotFound and a failed
// If-None-Match into ErrExists; other errors (a missing bucket or upload
// included) pass through.
func mapErr(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return ErrNotFound
		case "PreconditionFailed":
			return ErrExists
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 412 {
		return ErrExists
	}
	return err
}
