package main

import (
	"backstop/shared/command"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testKey = "command-key-for-tests-0123456789" // what the probe's key file would hold
	host    = "psyfit-prod"
	other   = "psyfit-stg"
)

// now is the rig's clock: the morning after the newest snapshot.
var now = time.Date(2025, 3, 6, 9, 15, 0, 0, time.UTC)

// The snapshots every rig starts with, under psyfit-prod/snapshots/.
const (
	snapDBOnly     = "20250301T170003Z-111111" // complete, vaulted, no data part
	snapBadSize    = "20250302T170003Z-555555" // vaulted, data.tar.zst a byte short
	snapGood       = "20250303T170003Z-222222" // complete, verified, vaulted: the newest restorable
	snapNotVaulted = "20250305T170003Z-333333" // complete, verified, not in the vault
	snapNoManifest = "20250306T020000Z-444444" // db.dump.zst only: upload in progress
	snapGarbage    = "20250228T170003Z-666666" // manifest.json is not JSON
	snapOtherHost  = "20250306T000000Z-777777" // psyfit-stg's, vaulted there
)

// rig is one handler over real parts: versitygw (S3, object lock and
// versioning on) and moto_server (Secrets Manager).
type rig struct {
	s3     *testenv.S3Server
	s3c    *s3.Client
	moto   *testenv.MotoServer
	sm     *secretsmanager.Client
	secret string // ARN
	h      *Handler
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newRig starts the parts, creates the secret holding testKey and puts
// the fixture snapshots and vault catalogs in the bucket.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{s3: testenv.S3(t), moto: testenv.Moto(t), logs: &syncBuffer{}}
	r.s3c = r.s3.Client(t)
	r.sm = r.moto.SecretsManager()
	r.secret = r.moto.CreateSecret(t, "backstop/command-key", testKey+"\n")
	r.h = &Handler{
		S3:           r.s3c,
		Secrets:      r.sm,
		Bucket:       r.s3.Bucket,
		Hosts:        []string{host, other},
		SecretID:     r.secret,
		RequireVault: true,
		Now:          func() time.Time { return now },
		Log:          slog.New(slog.NewJSONHandler(r.logs, nil)),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", r.logs.String())
		}
		if strings.Contains(r.logs.String(), testKey) {
			t.Errorf("the log reveals the command key")
		}
	})
	r.putSnapshot(t, "", host, snapDBOnly, snapOpts{noData: true})
	r.putSnapshot(t, "", host, snapBadSize, snapOpts{dataShort: true})
	r.putSnapshot(t, "", host, snapGood, snapOpts{verified: true})
	r.putSnapshot(t, "", host, snapNotVaulted, snapOpts{verified: true})
	r.putSnapshot(t, "", host, snapNoManifest, snapOpts{noManifest: true})
	r.putSnapshot(t, "", host, snapGarbage, snapOpts{garbage: true})
	r.putSnapshot(t, "", other, snapOtherHost, snapOpts{})
	r.putVault(t, "", host, snapDBOnly, snapBadSize, snapGood, snapGarbage)
	r.putVault(t, "", other, snapOtherHost)
	return r
}

type snapOpts struct {
	verified   bool
	noData     bool // the snapshot has no data part
	dataShort  bool // data.tar.zst one byte shorter than the manifest says
	noManifest bool // parts uploaded, manifest not yet
	garbage    bool // manifest.json is not a manifest
}

// putSnapshot writes a snapshot as the probe uploads it: the parts
// (bodies of the manifest's sizes), then manifest.json.
func (r *rig) putSnapshot(t testing.TB, prefix, h, id string, o snapOpts) manifest.Manifest {
	t.Helper()
	m, err := manifest.Decode(readTestdata(t, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	created, _ := manifest.ParseID(id)
	m.ID, m.Host, m.CreatedAt, m.Offsite = id, h, created, nil
	m.Status, m.VerifiedAt = manifest.StatusComplete, time.Time{}
	if o.verified {
		m.Status, m.VerifiedAt = manifest.StatusVerified, created.Add(2*time.Minute)
	}
	if o.noData {
		m.Data = nil
	}
	dir := h + "/snapshots/" + id + "/"
	if prefix != "" {
		dir = prefix + "/" + dir
	}
	r.put(t, dir+m.DB.File, bytes.Repeat([]byte{'d'}, int(m.DB.Size)))
	if m.Data != nil {
		size := m.Data.Size
		if o.dataShort {
			size--
		}
		r.put(t, dir+m.Data.File, bytes.Repeat([]byte{'t'}, int(size)))
	}
	switch {
	case o.noManifest:
	case o.garbage:
		r.put(t, dir+manifest.ManifestFile, []byte("<html>not a manifest</html>"))
	default:
		data, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r.put(t, dir+manifest.ManifestFile, data)
	}
	return m
}

// putVault writes the host's vault catalog listing ids, in the shape
// testdata/vault-catalog.json shows.
func (r *rig) putVault(t testing.TB, prefix, h string, ids ...string) {
	t.Helper()
	var tmpl struct {
		Snapshots map[string]json.RawMessage `json:"snapshots"`
	}
	if err := json.Unmarshal(readTestdata(t, "vault-catalog.json"), &tmpl); err != nil {
		t.Fatal(err)
	}
	var entry json.RawMessage
	for _, e := range tmpl.Snapshots {
		entry = e
	}
	snaps := map[string]json.RawMessage{}
	for _, id := range ids {
		snaps[id] = entry
	}
	cat := map[string]any{"schema": 1, "host": h, "snapshots": snaps}
	key := h + "/" + vaultCatalogFile
	if prefix != "" {
		key = prefix + "/" + key
	}
	r.put(t, key, mustJSON(t, cat))
}

func (r *rig) put(t testing.TB, key string, data []byte) {
	t.Helper()
	if _, err := r.s3c.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(r.s3.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
	}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func (r *rig) getObject(t testing.TB, key string) []byte {
	t.Helper()
	out, err := r.s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(r.s3.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b.Bytes()
}

// versions lists every version of every object in the bucket ("key
// version-id"), sorted: equal before and after means nothing was written,
// not even a new version of an existing key.
func (r *rig) versions(t testing.TB) []string {
	t.Helper()
	var out []string
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(r.s3.Bucket)}
	for {
		page, err := r.s3c.ListObjectVersions(context.Background(), in)
		if err != nil {
			t.Fatalf("list object versions: %v", err)
		}
		for _, v := range page.Versions {
			out = append(out, aws.ToString(v.Key)+" "+aws.ToString(v.VersionId))
		}
		for _, d := range page.DeleteMarkers {
			out = append(out, aws.ToString(d.Key)+" delete-marker "+aws.ToString(d.VersionId))
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
	sort.Strings(out)
	return out
}

// keysUnder lists the keys under prefix.
func (r *rig) keysUnder(t testing.TB, prefix string) []string {
	t.Helper()
	out, err := r.s3c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(r.s3.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// invoke runs one invocation with a deadline, as Lambda would, through
// Handle, and returns its response as JSON.
func (r *rig) invoke(t testing.TB, payload string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := r.h.Handle(ctx, json.RawMessage(payload))
	if err != nil {
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error reveals the command key: %v", err)
		}
		return nil, err
	}
	return mustJSON(t, resp), nil
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func indent(t testing.TB, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// signedStatus is st as the probe writes it: signed with testKey.
func signedStatus(t testing.TB, st command.Status) []byte {
	t.Helper()
	if err := command.SignStatus(&st, []byte(testKey)); err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, st)
}

// signedResult is r as the probe writes it: signed with testKey.
func signedResult(t testing.TB, r command.Result) []byte {
	t.Helper()
	if err := command.SignResult(&r, []byte(testKey)); err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, r)
}
