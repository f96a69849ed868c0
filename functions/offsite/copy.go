package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"backstop/shared/manifest"
)

// What a vault copy is checked against.
//
// Every object of a snapshot is known by its manifest: size and hex
// SHA-256 of the whole object (manifest.json itself: the bytes this
// function read, pinned by version or ETag). Before copying, the source
// object's size must equal it, and so must its full-object ChecksumSHA256
// when S3 has one (a single PutObject); a multipart source has only a
// composite checksum, which no whole-object hash can be compared with.
//
// After copying, HeadObject with ChecksumMode ENABLED on the new vault
// version must show: the same size; user metadata sha256 = the manifest's
// hex SHA-256 (set by the copy, so a restore from the vault can check the
// whole object end to end); COMPLIANCE retention until at least the
// requested date; and
//   - CopyObject (below MULTIPART_THRESHOLD): a full-object ChecksumSHA256
//     equal to the manifest's SHA-256 — S3 computed it from the bytes it
//     copied, so source and vault are proven equal to the manifest;
//   - UploadPartCopy (at or above it): S3 keeps no full-object SHA-256 of
//     a multipart object, so the composite checksum ("<base64>-<parts>")
//     must equal the one computed here from the part checksums S3 reported
//     for each UploadPartCopy, i.e. the stored object is exactly the parts
//     S3 hashed while reading the source. When S3 reports no part
//     checksums (versitygw v1.8.0 reports the source object's checksum for
//     every part), the object is copied without part checksums and size
//     and the sha256 metadata are all that is compared (logged as such).

// ErrMismatch is matched by every source/vault/manifest disagreement.
var ErrMismatch = errors.New("vault copy does not match")

// Copy methods (VaultObject.Method).
const (
	methodCopy      = "copy"
	methodMultipart = "multipart"
	methodExisting  = "existing" // a verified vault copy found in place (an earlier, interrupted run)
)

// metaSHA256 is the user metadata key holding the whole object's hex SHA-256
// (as shared/store writes it on the source).
const metaSHA256 = "sha256"

// VaultResult is what a manifest notification did.
type VaultResult struct {
	Host     string        `json:"host"`
	Snapshot string        `json:"snapshot"`
	Status   string        `json:"status"` // vaulted | already-vaulted
	Copied   int           `json:"copied"` // objects copied by this invocation
	Objects  []VaultObject `json:"objects"`
}

// planned is one object of a snapshot to vault.
type planned struct {
	key     string
	size    int64
	sha256  string // hex
	version string // the source version to copy ("" when the bucket has none)
}

// vaultSnapshot copies the snapshot whose manifest ref names into the
// vault, verifies each copy and records it in the host's catalog. A
// duplicate or retried notification copies nothing already vaulted: the
// catalog entry and the vault versions it names are checked first, and an
// object found in the vault with the right size, checksum and retention
// (an invocation that died before writing the catalog) is adopted. Two
// invocations for one snapshot at the same instant may both copy (two
// locked versions, one recorded): S3 has no conditional CopyObject to
// prevent it.
func (h *Handler) vaultSnapshot(ctx context.Context, obj objectRef, ref snapshotRef) (VaultResult, error) {
	res := VaultResult{Host: ref.Host, Snapshot: ref.ID}
	m, plan, err := h.plan(ctx, obj, ref)
	if err != nil {
		return res, err
	}
	cat, _, err := loadCatalog(ctx, h.Src, obj.Bucket, ref.HostPrefix, ref.Host)
	if err != nil {
		return res, err
	}
	if prev := cat.Snapshots[ref.ID]; prev != nil && h.stillVaulted(ctx, prev, plan) {
		res.Status, res.Objects = "already-vaulted", prev.Objects
		h.log().Info("snapshot already vaulted; nothing copied", "host", ref.Host, "snapshot", ref.ID)
		return res, nil
	}

	now := h.now()
	retain := now.Add(h.Cfg.Retention).Truncate(time.Second)
	for _, p := range plan {
		vo, err := h.vaultObject(ctx, obj.Bucket, p, retain)
		if err != nil {
			return res, fmt.Errorf("vault snapshot %s of %s: %w", ref.ID, ref.Host, err)
		}
		if vo.Method != methodExisting {
			res.Copied++
		}
		res.Objects = append(res.Objects, vo)
	}
	entry := &VaultCopy{
		VaultBucket: h.Cfg.VaultBucket,
		CopiedAt:    now.UTC(),
		RetainUntil: retain.UTC(),
		CreatedAt:   m.CreatedAt.UTC(),
		Objects:     res.Objects,
	}
	for _, o := range res.Objects {
		entry.Keys = append(entry.Keys, o.Key)
		entry.Size += o.Size
	}
	err = updateCatalog(ctx, h.Src, obj.Bucket, ref.HostPrefix, ref.Host, func(c *Catalog) bool {
		if prev := c.Snapshots[ref.ID]; prev != nil {
			// Versions this entry no longer names stay locked in the
			// vault: keep them for the prune.
			entry.Superseded = prev.Superseded
			for _, o := range prev.Objects {
				if !slices.ContainsFunc(entry.Objects, func(n VaultObject) bool { return n.Key == o.Key && n.VersionID == o.VersionID }) {
					entry.Superseded = append(entry.Superseded, o)
				}
			}
		}
		c.Snapshots[ref.ID] = entry
		return true
	})
	if err != nil {
		return res, fmt.Errorf("vault snapshot %s of %s: copied, but %w", ref.ID, ref.Host, err)
	}
	res.Status = "vaulted"
	h.log().Info("snapshot vaulted", "host", ref.Host, "snapshot", ref.ID, "copied", res.Copied,
		"objects", len(res.Objects), "bytes", entry.Size, "retain_until", retain.UTC().Format(time.RFC3339))
	return res, nil
}

// plan reads the manifest (at the notified version), checks its signature
// when signing keys are configured, and lists the snapshot's objects in
// copy order: the dump, the data archive, manifest.sig, the manifest last.
func (h *Handler) plan(ctx context.Context, obj objectRef, ref snapshotRef) (manifest.Manifest, []planned, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.Version != "" && obj.Version != "null" {
		in.VersionId = aws.String(obj.Version)
	}
	out, err := h.Src.GetObject(ctx, in)
	if err != nil {
		return manifest.Manifest{}, nil, fmt.Errorf("get manifest s3://%s/%s: %w", obj.Bucket, obj.Key, err)
	}
	defer out.Body.Close()
	data, err := readAllLimit(out.Body, maxJSON)
	if err != nil {
		return manifest.Manifest{}, nil, fmt.Errorf("read manifest s3://%s/%s: %w", obj.Bucket, obj.Key, err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return m, nil, fmt.Errorf("manifest s3://%s/%s: %w: %w", obj.Bucket, obj.Key, err, ErrMalformed)
	}
	if m.ID != ref.ID || m.Host != ref.Host {
		return m, nil, fmt.Errorf("manifest s3://%s/%s: says snapshot %s of host %s, its key %s of %s: %w",
			obj.Bucket, obj.Key, m.ID, m.Host, ref.ID, ref.Host, ErrMalformed)
	}
	sig, err := h.checkSignature(ctx, obj.Bucket, ref, data)
	if err != nil {
		return m, nil, err
	}
	var plan []planned
	if m.DB != nil {
		plan = append(plan, planned{key: ref.Dir() + m.DB.File, size: m.DB.Size, sha256: m.DB.SHA256})
	}
	if m.Data != nil {
		plan = append(plan, planned{key: ref.Dir() + m.Data.File, size: m.Data.Size, sha256: m.Data.SHA256})
	}
	if sig != nil {
		ss := sha256.Sum256(sig)
		plan = append(plan, planned{key: ref.Dir() + manifest.SigFile, size: int64(len(sig)), sha256: hex.EncodeToString(ss[:])})
	}
	sum := sha256.Sum256(data)
	plan = append(plan, planned{key: obj.Key, size: int64(len(data)), sha256: hex.EncodeToString(sum[:]), version: aws.ToString(out.VersionId)})
	return m, plan, nil
}

// stillVaulted says whether a catalog entry covers plan exactly and every
// version it names is in the vault with its recorded size and checksum.
func (h *Handler) stillVaulted(ctx context.Context, prev *VaultCopy, plan []planned) bool {
	if prev.VaultBucket != h.Cfg.VaultBucket || len(prev.Objects) != len(plan) {
		return false
	}
	for i, p := range plan {
		o := prev.Objects[i]
		if o.Key != p.key || o.SHA256 != p.sha256 || o.Size != p.size {
			return false
		}
		head, err := h.Vault.HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(h.Cfg.VaultBucket), Key: aws.String(o.Key), VersionId: aws.String(o.VersionID), ChecksumMode: types.ChecksumModeEnabled,
		})
		if err != nil {
			h.log().Warn("catalogued vault copy not readable; copying again", "object", "s3://"+h.Cfg.VaultBucket+"/"+o.Key, "version", o.VersionID, "error", err.Error())
			return false
		}
		if aws.ToInt64(head.ContentLength) != o.Size || aws.ToString(head.ChecksumSHA256) != o.Checksum {
			h.log().Warn("catalogued vault copy differs; copying again", "object", "s3://"+h.Cfg.VaultBucket+"/"+o.Key,
				"size", aws.ToInt64(head.ContentLength), "checksum", aws.ToString(head.ChecksumSHA256), "want_checksum", o.Checksum)
			return false
		}
	}
	return true
}

// vaultObject copies one object (or adopts a verified copy already in the
// vault) and verifies it.
func (h *Handler) vaultObject(ctx context.Context, bucket string, p planned, retain time.Time) (VaultObject, error) {
	src := "s3://" + bucket + "/" + p.key
	head, err := h.Src.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(p.key), VersionId: optional(p.version), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return VaultObject{}, fmt.Errorf("head source %s: %w", src, err)
	}
	if n := aws.ToInt64(head.ContentLength); n != p.size {
		return VaultObject{}, fmt.Errorf("source %s: %d bytes, its manifest says %d: %w", src, n, p.size, ErrMismatch)
	}
	if c := aws.ToString(head.ChecksumSHA256); c != "" && !strings.Contains(c, "-") && c != b64(p.sha256) {
		return VaultObject{}, fmt.Errorf("source %s: ChecksumSHA256 %s, its manifest says %s: %w", src, c, b64(p.sha256), ErrMismatch)
	}
	if p.version == "" {
		p.version = aws.ToString(head.VersionId)
	}
	etag := aws.ToString(head.ETag)

	if vo, ok := h.existing(ctx, p, retain); ok {
		h.log().Info("verified vault copy already in place; adopted", "object", "s3://"+h.Cfg.VaultBucket+"/"+p.key, "version", vo.VersionID)
		return vo, nil
	}
	var (
		vo      VaultObject
		partSum string // composite computed from the parts; "" for a single copy
	)
	if p.size >= h.Cfg.MultipartThreshold {
		vo, partSum, err = h.copyMultipart(ctx, bucket, p, etag, aws.ToString(head.ContentType), retain)
	} else {
		vo, err = h.copySingle(ctx, bucket, p, etag, aws.ToString(head.ContentType), retain)
	}
	if err != nil {
		return VaultObject{}, err
	}
	if err := h.verify(ctx, &vo, p, retain, partSum); err != nil {
		return VaultObject{}, err
	}
	return vo, nil
}

// existing returns the current vault version of p.key when it is a
// complete, locked copy of p (same size and sha256 metadata, and a
// full-object checksum that agrees when it has one).
func (h *Handler) existing(ctx context.Context, p planned, retain time.Time) (VaultObject, bool) {
	head, err := h.Vault.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(h.Cfg.VaultBucket), Key: aws.String(p.key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return VaultObject{}, false
	}
	c := aws.ToString(head.ChecksumSHA256)
	switch {
	case aws.ToInt64(head.ContentLength) != p.size, head.Metadata[metaSHA256] != p.sha256,
		c != "" && !strings.Contains(c, "-") && c != b64(p.sha256),
		head.ObjectLockMode != types.ObjectLockModeCompliance, head.ObjectLockRetainUntilDate == nil,
		!head.ObjectLockRetainUntilDate.After(h.now()):
		return VaultObject{}, false
	}
	vo := VaultObject{Key: p.key, VersionID: aws.ToString(head.VersionId), Size: p.size, Checksum: c, SHA256: p.sha256, Method: methodExisting}
	if i := strings.LastIndex(c, "-"); i > 0 {
		fmt.Sscan(c[i+1:], &vo.Parts)
	}
	return vo, true
}

// copySingle copies p with one CopyObject, S3 computing a full-object SHA-256.
func (h *Handler) copySingle(ctx context.Context, bucket string, p planned, etag, contentType string, retain time.Time) (VaultObject, error) {
	in := &s3.CopyObjectInput{
		Bucket:                    aws.String(h.Cfg.VaultBucket),
		Key:                       aws.String(p.key),
		CopySource:                aws.String(copySource(bucket, p.key, p.version)),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		MetadataDirective:         types.MetadataDirectiveReplace,
		Metadata:                  map[string]string{metaSHA256: p.sha256},
		ContentType:               optional(contentType),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(retain),
	}
	if p.version == "" || p.version == "null" {
		in.CopySourceIfMatch = optional(etag)
	}
	out, err := h.Vault.CopyObject(ctx, in)
	if err != nil {
		return VaultObject{}, fmt.Errorf("copy s3://%s/%s to s3://%s/%s: %w", bucket, p.key, h.Cfg.VaultBucket, p.key, err)
	}
	vo := VaultObject{Key: p.key, VersionID: aws.ToString(out.VersionId), Size: p.size, SHA256: p.sha256, Method: methodCopy}
	if r := out.CopyObjectResult; r != nil {
		vo.Checksum = aws.ToString(r.ChecksumSHA256)
	}
	return vo, nil
}

// errNoPartChecksums: S3 answered an UploadPartCopy into a SHA-256
// upload with something that is not the part's SHA-256.
var errNoPartChecksums = errors.New("S3 reported no usable part checksum")

// copyMultipart copies p with UploadPartCopy, CopyConcurrency parts at a
// time, into an upload with SHA-256 part checksums, and returns the
// composite checksum of the parts S3 reported. Part 1 is copied first:
// when S3 does not report its SHA-256 (versitygw v1.8.0 echoes the source
// object's own checksum, then refuses it at completion), the upload is
// aborted and the object copied again into an upload without a checksum
// algorithm, returning "" (size and sha256 metadata are then what verify
// compares). Any failure aborts the upload.
func (h *Handler) copyMultipart(ctx context.Context, bucket string, p planned, etag, contentType string, retain time.Time) (VaultObject, string, error) {
	vo, composite, err := h.copyParts(ctx, bucket, p, etag, contentType, retain, true)
	if errors.Is(err, errNoPartChecksums) {
		h.log().Warn("S3 reported no usable part checksums; copying without them, comparing size and sha256 metadata only",
			"object", "s3://"+h.Cfg.VaultBucket+"/"+p.key)
		vo, composite, err = h.copyParts(ctx, bucket, p, etag, contentType, retain, false)
	}
	return vo, composite, err
}

func (h *Handler) copyParts(ctx context.Context, bucket string, p planned, etag, contentType string, retain time.Time, sums bool) (VaultObject, string, error) {
	dst := "s3://" + h.Cfg.VaultBucket + "/" + p.key
	partSize := partSizeFor(p.size, h.Cfg.PartSize)
	n := int((p.size + partSize - 1) / partSize)
	create := &s3.CreateMultipartUploadInput{
		Bucket:                    aws.String(h.Cfg.VaultBucket),
		Key:                       aws.String(p.key),
		Metadata:                  map[string]string{metaSHA256: p.sha256},
		ContentType:               optional(contentType),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(retain),
	}
	if sums {
		create.ChecksumAlgorithm, create.ChecksumType = types.ChecksumAlgorithmSha256, types.ChecksumTypeComposite
	}
	up, err := h.Vault.CreateMultipartUpload(ctx, create)
	if err != nil {
		return VaultObject{}, "", fmt.Errorf("create multipart upload %s: %w", dst, err)
	}
	abort := func(cause error) error {
		_, aerr := h.Vault.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(h.Cfg.VaultBucket), Key: aws.String(p.key), UploadId: up.UploadId,
		})
		if aerr != nil {
			h.log().Warn("abort multipart upload failed; a lifecycle rule must remove it", "object", dst, "upload_id", aws.ToString(up.UploadId), "error", aerr.Error())
		}
		return cause
	}

	src := copySource(bucket, p.key, p.version)
	parts := make([]types.CompletedPart, n)
	copyPart := func(ctx context.Context, i int) error {
		first := int64(i) * partSize
		last := min(first+partSize, p.size) - 1
		in := &s3.UploadPartCopyInput{
			Bucket:          aws.String(h.Cfg.VaultBucket),
			Key:             aws.String(p.key),
			UploadId:        up.UploadId,
			PartNumber:      aws.Int32(int32(i + 1)),
			CopySource:      aws.String(src),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
		}
		if p.version == "" || p.version == "null" {
			in.CopySourceIfMatch = optional(etag)
		}
		out, err := h.Vault.UploadPartCopy(ctx, in)
		if err != nil {
			return fmt.Errorf("copy part %d/%d (bytes %d-%d) of s3://%s/%s to %s: %w", i+1, n, first, last, bucket, p.key, dst, err)
		}
		cp := types.CompletedPart{PartNumber: aws.Int32(int32(i + 1))}
		if r := out.CopyPartResult; r != nil {
			cp.ETag = r.ETag
			if sums {
				cp.ChecksumSHA256 = r.ChecksumSHA256
			}
		}
		parts[i] = cp
		return nil
	}
	if err := copyPart(ctx, 0); err != nil {
		return VaultObject{}, "", abort(err)
	}
	if sums && !isSHA256(aws.ToString(parts[0].ChecksumSHA256)) {
		return VaultObject{}, "", abort(fmt.Errorf("copy s3://%s/%s to %s: part 1 checksum %q: %w", bucket, p.key, dst, aws.ToString(parts[0].ChecksumSHA256), errNoPartChecksums))
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, max(1, h.Cfg.CopyConcurrency))
	for i := 1; i < n; i++ {
		sem <- struct{}{}
		if pctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := copyPart(pctx, i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("copy s3://%s/%s to %s: %w", bucket, p.key, dst, ctx.Err())
	}
	if firstErr != nil {
		return VaultObject{}, "", abort(firstErr)
	}
	composite := ""
	if sums {
		composite = compositeOf(parts)
		if composite == "" {
			return VaultObject{}, "", abort(fmt.Errorf("copy s3://%s/%s to %s: %w", bucket, p.key, dst, errNoPartChecksums))
		}
	}
	done, err := h.Vault.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(h.Cfg.VaultBucket), Key: aws.String(p.key), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return VaultObject{}, "", abort(fmt.Errorf("complete multipart upload %s: %w", dst, err))
	}
	vo := VaultObject{Key: p.key, VersionID: aws.ToString(done.VersionId), Size: p.size, SHA256: p.sha256, Method: methodMultipart, Parts: n,
		Checksum: aws.ToString(done.ChecksumSHA256)}
	return vo, composite, nil
}

// verify compares the new vault version with the plan (see the comment
// at the top of this file) and fills vo.Checksum from the vault.
func (h *Handler) verify(ctx context.Context, vo *VaultObject, p planned, retain time.Time, composite string) error {
	dst := "s3://" + h.Cfg.VaultBucket + "/" + p.key
	head, err := h.Vault.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(h.Cfg.VaultBucket), Key: aws.String(p.key), VersionId: optional(vo.VersionID), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return fmt.Errorf("head vault copy %s (version %s): %w", dst, vo.VersionID, err)
	}
	got := aws.ToString(head.ChecksumSHA256)
	if vo.VersionID == "" {
		vo.VersionID = aws.ToString(head.VersionId)
	}
	switch {
	case aws.ToInt64(head.ContentLength) != p.size:
		return fmt.Errorf("vault copy %s: %d bytes, want %d: %w", dst, aws.ToInt64(head.ContentLength), p.size, ErrMismatch)
	case head.Metadata[metaSHA256] != p.sha256:
		return fmt.Errorf("vault copy %s: sha256 metadata %q, want %s: %w", dst, head.Metadata[metaSHA256], p.sha256, ErrMismatch)
	case head.ObjectLockMode != types.ObjectLockModeCompliance || head.ObjectLockRetainUntilDate == nil || head.ObjectLockRetainUntilDate.Before(retain.Add(-time.Second)):
		return fmt.Errorf("vault copy %s: object lock %q until %v, want COMPLIANCE until %s (is Object Lock enabled on the vault bucket?): %w",
			dst, head.ObjectLockMode, aws.ToTime(head.ObjectLockRetainUntilDate), retain.UTC().Format(time.RFC3339), ErrMismatch)
	}
	switch vo.Method {
	case methodCopy:
		if want := b64(p.sha256); got != want {
			return fmt.Errorf("vault copy %s: ChecksumSHA256 %q, want %s (the manifest's sha256 %s): %w", dst, got, want, p.sha256, ErrMismatch)
		}
	case methodMultipart:
		switch {
		case composite == "": // logged by copyMultipart
		case got != composite:
			return fmt.Errorf("vault copy %s: composite ChecksumSHA256 %q, want %s from its %d copied parts: %w", dst, got, composite, vo.Parts, ErrMismatch)
		}
	}
	vo.Checksum = got
	return nil
}

// partSizeFor is the part size for an object of size bytes: want, raised
// (in whole MiB) when the object would need more than S3's 10,000 parts.
func partSizeFor(size, want int64) int64 {
	if size > want*maxParts {
		want = (size + maxParts - 1) / maxParts
		want = (want + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return want
}

// compositeOf is S3's composite checksum of a multipart object from its
// parts' SHA-256s: base64(SHA-256(part sums...)) + "-" + parts. "" when a
// part has no usable checksum.
func compositeOf(parts []types.CompletedPart) string {
	h := sha256.New()
	for _, cp := range parts {
		c := aws.ToString(cp.ChecksumSHA256)
		if !isSHA256(c) {
			return ""
		}
		raw, _ := base64.StdEncoding.DecodeString(c)
		h.Write(raw)
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), len(parts))
}

// isSHA256 says whether c is a base64 SHA-256 (not a composite "…-N").
func isSHA256(c string) bool {
	raw, err := base64.StdEncoding.DecodeString(c)
	return err == nil && len(raw) == sha256.Size
}

// b64 turns a hex SHA-256 into S3's base64 ChecksumSHA256 ("" when not hex).
func b64(hexSum string) string {
	raw, err := hex.DecodeString(hexSum)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}
