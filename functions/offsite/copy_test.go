package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"backstop/functions/internal/s3err"
	"backstop/shared/manifest"
	"backstop/shared/store"
)

// wantSums is each snapshot key's whole-object SHA-256 (hex): the
// manifest's for the parts, the manifest's own bytes for manifest.json.
func wantSums(t *testing.T, r *rig, s snapshot) map[string]string {
	t.Helper()
	out, err := r.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(s.ManifestKey)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	h := sha256.New()
	io.Copy(h, out.Body)
	return map[string]string{
		s.Keys[0]: s.Manifest.DB.SHA256,
		s.Keys[1]: s.Manifest.Data.SHA256,
		s.Keys[2]: hex.EncodeToString(h.Sum(nil)),
	}
}

func TestVaultCopyChecksumsMatch(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name    string
		payload func(snapshot) []byte
	}{
		{"S3 notification", r.s3Notification},
		{"EventBridge Object Created", r.eventBridge},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := "psyfit-" + strings.ReplaceAll(strings.ToLower(c.name), " ", "-")
			// A 7 MiB archive: the probe uploads it in two parts, so the
			// source has only a composite checksum.
			s := r.putSnapshot(t, host, time.Now().Add(-time.Hour), 200<<10, 7<<20)
			h := r.handler(t, r.config())
			before := time.Now()
			res := invoke(t, h, c.payload(s))

			if len(res.Vaulted) != 1 || res.Vaulted[0].Status != "vaulted" || res.Vaulted[0].Copied != 3 {
				t.Fatalf("result %+v, want one snapshot vaulted with 3 objects copied", res)
			}
			sums := wantSums(t, r, s)
			for _, key := range s.Keys {
				v, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(r.vault), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
				if err != nil {
					t.Fatalf("vault %s: %v", key, err)
				}
				src, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
				if err != nil {
					t.Fatal(err)
				}
				want := b64(sums[key])
				if got := aws.ToString(v.ChecksumSHA256); got != want {
					t.Errorf("vault %s ChecksumSHA256 = %s, want %s (the manifest's sha256)", key, got, want)
				}
				if sc := aws.ToString(src.ChecksumSHA256); sc != "" && !strings.Contains(sc, "-") && sc != want {
					t.Errorf("source %s ChecksumSHA256 = %s, vault %s", key, sc, want)
				}
				if aws.ToInt64(v.ContentLength) != aws.ToInt64(src.ContentLength) {
					t.Errorf("vault %s is %d bytes, source %d", key, aws.ToInt64(v.ContentLength), aws.ToInt64(src.ContentLength))
				}
				if v.Metadata[metaSHA256] != sums[key] {
					t.Errorf("vault %s metadata sha256 = %q, want %s", key, v.Metadata[metaSHA256], sums[key])
				}
				if v.ObjectLockMode != types.ObjectLockModeCompliance {
					t.Errorf("vault %s lock mode %q, want COMPLIANCE", key, v.ObjectLockMode)
				}
				if until := aws.ToTime(v.ObjectLockRetainUntilDate); until.Before(before.Add(24*time.Hour-time.Minute)) || until.After(time.Now().Add(24*time.Hour+time.Minute)) {
					t.Errorf("vault %s retained until %v, want about 24h from now", key, until)
				}
			}
			if !strings.Contains(mustHeadChecksum(t, r, r.srv.Bucket, s.Keys[1]), "-2") {
				t.Errorf("the source archive should be a two-part upload (composite checksum); the test no longer covers that case")
			}

			cat := r.catalog(t, host)
			e := cat.Snapshots[s.ID]
			if cat.Schema != 1 || cat.Host != host || e == nil {
				t.Fatalf("catalog %+v: want schema 1, host %s, snapshot %s", cat, host, s.ID)
			}
			if strings.Join(e.Keys, ",") != strings.Join(s.Keys, ",") {
				t.Errorf("catalog keys %v, want %v (manifest.json last)", e.Keys, s.Keys)
			}
			wantSize := s.Manifest.DB.Size + s.Manifest.Data.Size + mustHeadSize(t, r, r.srv.Bucket, s.ManifestKey)
			if e.VaultBucket != r.vault || e.Size != wantSize || e.RetainUntil.Sub(e.CopiedAt) > 24*time.Hour || e.RetainUntil.Sub(e.CopiedAt) < 24*time.Hour-time.Second || !e.CreatedAt.Equal(s.Manifest.CreatedAt) {
				t.Errorf("catalog entry %+v: want vault %s, size %d, retain_until = copied_at + 24h", e, r.vault, wantSize)
			}
			for _, o := range e.Objects {
				if o.Method != methodCopy || o.VersionID == "" || o.Checksum != b64(sums[o.Key]) {
					t.Errorf("catalog object %+v: want a copy with its version and checksum %s", o, b64(sums[o.Key]))
				}
			}
		})
	}
}

func TestVaultedVersionCannotBeDeleted(t *testing.T) {
	r := newRig(t)
	s := r.putSnapshot(t, "psyfit-prod", time.Now(), 10<<10, 10<<10)
	invoke(t, r.handler(t, r.config()), r.s3Notification(s))
	e := r.catalog(t, "psyfit-prod").Snapshots[s.ID]
	for _, o := range e.Objects {
		_, err := r.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(r.vault), Key: aws.String(o.Key), VersionId: aws.String(o.VersionID)})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" || !strings.Contains(ae.ErrorMessage(), "object lock") {
			t.Errorf("delete %s version %s: %v, want AccessDenied by object lock", o.Key, o.VersionID, err)
		}
	}
	if got := r.versions(t, s.Host+"/"); len(got) != 3 {
		t.Errorf("vault versions after the refused deletes: %v, want the 3 objects", got)
	}
}

func TestDuplicateNotificationCopiesOnce(t *testing.T) {
	r := newRig(t)
	s := r.putSnapshot(t, "psyfit-prod", time.Now(), 50<<10, 6<<20)
	h := r.handler(t, r.config())
	first := invoke(t, h, r.s3Notification(s))
	if first.Vaulted[0].Copied != 3 {
		t.Fatalf("first notification: %+v", first)
	}
	for _, dup := range [][]byte{r.s3Notification(s), r.eventBridge(s)} {
		res := invoke(t, h, dup)
		if len(res.Vaulted) != 1 || res.Vaulted[0].Status != "already-vaulted" || res.Vaulted[0].Copied != 0 {
			t.Errorf("duplicate: %+v, want already-vaulted, nothing copied", res.Vaulted)
		}
	}
	// An invocation that died after copying, before the catalog: the
	// retry adopts the verified copies instead of copying again.
	if _, err := putJSON(context.Background(), r.s3, r.srv.Bucket, "psyfit-prod/"+CatalogFile, newCatalog("psyfit-prod"), mustETag(t, r, "psyfit-prod/"+CatalogFile)); err != nil {
		t.Fatal(err)
	}
	res := invoke(t, h, r.s3Notification(s))
	if res.Vaulted[0].Status != "vaulted" || res.Vaulted[0].Copied != 0 {
		t.Errorf("after the catalog was lost: %+v, want vaulted with 0 copied", res.Vaulted[0])
	}
	for _, o := range res.Vaulted[0].Objects {
		if o.Method != methodExisting {
			t.Errorf("%s: method %s, want existing", o.Key, o.Method)
		}
	}
	for key, vs := range r.versions(t, "psyfit-prod/") {
		if len(vs) != 1 {
			t.Errorf("vault %s has %d versions, want 1 (one copy)", key, len(vs))
		}
	}
	if e := r.catalog(t, "psyfit-prod").Snapshots[s.ID]; e == nil || len(e.Objects) != 3 {
		t.Errorf("catalog rebuilt: %+v", e)
	}
}

func TestMultipartCopyWithUploadPartCopy(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name     string
		upload   *store.S3
		fallback bool // S3 reports no usable part checksums
	}{
		// A source with a full-object SHA-256: the vault copy's composite
		// checksum is compared with the parts' checksums S3 reported.
		{"source in one PutObject", r.whole, false},
		// The probe's multipart upload: versitygw v1.8.0 reports the
		// source's composite checksum for each part, so the copy falls
		// back to no part checksums (size and sha256 metadata compared).
		{"source in parts", r.store, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := "psyfit-" + strings.ReplaceAll(c.name, " ", "-")
			s := r.putSnapshotVia(t, c.upload, host, time.Now(), 100<<10, 6<<20)
			cfg := r.config()
			cfg.PartSize, cfg.MultipartThreshold = 5<<20, 5<<20
			res := invoke(t, r.handler(t, cfg), r.s3Notification(s))
			objs := res.Vaulted[0].Objects
			if len(objs) != 3 || objs[0].Method != methodCopy || objs[1].Method != methodMultipart || objs[1].Parts != 2 || objs[2].Method != methodCopy {
				t.Fatalf("objects %+v: want the 6 MiB archive in 2 parts, the rest copied whole", objs)
			}
			data := objs[1]
			v, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(r.vault), Key: aws.String(data.Key), VersionId: aws.String(data.VersionID), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatal(err)
			}
			got := aws.ToString(v.ChecksumSHA256)
			if got != data.Checksum {
				t.Errorf("vault archive checksum %q, catalog %q", got, data.Checksum)
			}
			warned := strings.Contains(r.logs.String(), "no usable part checksums")
			if c.fallback != warned || !c.fallback && !strings.HasSuffix(got, "-2") {
				t.Errorf("checksum %q, fallback logged %v: want fallback %v (else a 2-part composite)", got, warned, c.fallback)
			}
			if v.Metadata[metaSHA256] != s.Manifest.Data.SHA256 || v.ObjectLockMode != types.ObjectLockModeCompliance || aws.ToInt64(v.ContentLength) != s.Manifest.Data.Size {
				t.Errorf("vault archive: metadata %v, lock %q, size %d", v.Metadata, v.ObjectLockMode, aws.ToInt64(v.ContentLength))
			}
			// The bytes themselves: the vault copy hashes to the manifest's sha256.
			out, err := r.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(r.vault), Key: aws.String(data.Key)})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Body.Close()
			sum := sha256.New()
			io.Copy(sum, out.Body)
			if got := hex.EncodeToString(sum.Sum(nil)); got != s.Manifest.Data.SHA256 {
				t.Errorf("vault archive sha256 %s, manifest %s", got, s.Manifest.Data.SHA256)
			}
			// No upload left behind by the fallback's aborted attempt.
			ups, err := r.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(r.vault)})
			if err != nil {
				t.Fatal(err)
			}
			if len(ups.Uploads) != 0 {
				t.Errorf("%d multipart uploads left in the vault", len(ups.Uploads))
			}
		})
	}
}

func TestSourceDisagreeingWithManifestIsNotVaulted(t *testing.T) {
	for _, c := range []struct {
		name    string
		tamper  func(*manifest.Manifest)
		wantErr string
	}{
		{"dump checksum", func(m *manifest.Manifest) { m.DB.SHA256 = strings.Repeat("ab", 32) },
			"db.dump.zst: ChecksumSHA256 "},
		{"archive size", func(m *manifest.Manifest) { m.Data.Size++ },
			"data.tar.zst: 6291456 bytes, its manifest says 6291457"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			s := r.putSnapshot(t, "psyfit-prod", time.Now(), 10<<10, 6<<20)
			c.tamper(&s.Manifest)
			raw, err := s.Manifest.Encode()
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(s.ManifestKey), Body: strings.NewReader(string(raw))})
			if err != nil {
				t.Fatal(err)
			}
			s.Version = aws.ToString(out.VersionId)
			_, err = r.handler(t, r.config()).Handle(context.Background(), r.s3Notification(s))
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want ErrMismatch with %q", err, c.wantErr)
			}
			if strings.Contains(c.name, "archive") {
				// The dump was fine and is in the vault; the archive is not.
				if got := r.versions(t, "psyfit-prod/"); len(got) != 1 {
					t.Errorf("vault holds %v, want the dump only", got)
				}
			} else if got := r.versions(t, "psyfit-prod/"); len(got) != 0 {
				t.Errorf("vault holds %v, want nothing", got)
			}
			if _, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String("psyfit-prod/" + CatalogFile)}); !s3err.IsNotFound(err) {
				t.Errorf("catalog written for a snapshot that failed: %v", err)
			}
		})
	}
}

func TestNotificationsNotForManifestsAreIgnored(t *testing.T) {
	r := newRig(t)
	s := r.putSnapshot(t, "psyfit-prod", time.Now(), 10<<10, 10<<10)
	dump := s
	dump.ManifestKey, dump.Version = s.Keys[0], ""
	other := s
	res := invoke(t, r.handler(t, r.config()), r.s3Notification(dump))
	if len(res.Vaulted) != 0 || len(res.Ignored) != 1 || !strings.HasPrefix(res.Ignored[0], "not a snapshot manifest") {
		t.Errorf("dump notification: %+v", res)
	}
	cfg := r.config()
	cfg.SourceBucket = "another-bucket"
	res = invoke(t, r.handler(t, cfg), r.s3Notification(other))
	if len(res.Vaulted) != 0 || len(res.Ignored) != 1 || !strings.HasPrefix(res.Ignored[0], "not SOURCE_BUCKET") {
		t.Errorf("other bucket: %+v", res)
	}
	if got := r.versions(t, ""); len(got) != 0 {
		t.Errorf("vault holds %v, want nothing", got)
	}
}

func mustHeadChecksum(t *testing.T, r *rig, bucket, key string) string {
	t.Helper()
	out, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ChecksumSHA256)
}

func mustETag(t *testing.T, r *rig, key string) string {
	t.Helper()
	out, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ETag)
}

func mustHeadSize(t *testing.T, r *rig, bucket, key string) int64 {
	t.Helper()
	out, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToInt64(out.ContentLength)
}
