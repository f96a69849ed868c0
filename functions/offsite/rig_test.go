package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/manifest"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// rig is a real S3 server (versitygw) with the source bucket (testenv's,
// Object Lock enabled) and a vault bucket created with Object Lock.
type rig struct {
	srv   *testenv.S3Server
	s3    *s3.Client
	store *store.S3 // the probe's uploader, writing snapshots as the probe does (5 MiB parts)
	whole *store.S3 // the same with 16 MiB parts: files up to 16 MiB in one PutObject
	vault string
	logs  *syncBuffer
}

const testVault = "backstop-vault"

func newRig(t testing.TB) *rig {
	t.Helper()
	srv := testenv.S3(t)
	r := &rig{srv: srv, s3: srv.Client(t), vault: testVault, logs: &syncBuffer{}}
	if _, err := r.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{
		Bucket: aws.String(r.vault), ObjectLockEnabledForBucket: aws.Bool(true),
	}); err != nil {
		t.Fatalf("create vault bucket: %v", err)
	}
	for _, s := range []struct {
		to   **store.S3
		part int64
	}{{&r.store, store.MinPartSize}, {&r.whole, 16 << 20}} {
		st, err := store.NewS3(context.Background(), store.S3Config{
			Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint, PathStyle: true,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: s.part,
		})
		if err != nil {
			t.Fatal(err)
		}
		*s.to = st
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", r.logs.String())
		}
	})
	return r
}

// config is the function's config for this rig.
func (r *rig) config(hosts ...string) Config {
	return Config{
		SourceBucket:       r.srv.Bucket,
		VaultBucket:        r.vault,
		Retention:          24 * time.Hour,
		PartSize:           DefaultPartSize,
		MultipartThreshold: DefaultMultipartThreshold,
		Hosts:              hosts,
		MaxSnapshotAge:     DefaultMaxSnapshotAge,
		MaxHeartbeatAge:    DefaultMaxHeartbeatAge,
		Locale:             "en",
		PathStyle:          true,
	}
}

func (r *rig) handler(t *testing.T, cfg Config) *Handler {
	t.Helper()
	h, err := NewHandler(cfg, r.s3, r.s3, slog.New(slog.NewTextHandler(r.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshot is one snapshot put in the source bucket.
type snapshot struct {
	Host, ID    string
	Manifest    manifest.Manifest
	ManifestKey string
	Keys        []string // db, data, manifest
	Version     string   // the manifest's version id
}

// putSnapshot writes a snapshot the way the probe does (through
// shared/store: parts of 5 MiB with SHA-256 each, manifest last): a dump
// of dbSize random bytes and a data archive of dataSize.
func (r *rig) putSnapshot(t *testing.T, host string, at time.Time, dbSize, dataSize int) snapshot {
	t.Helper()
	return r.putSnapshotVia(t, r.store, host, at, dbSize, dataSize)
}

// putSnapshotVia is putSnapshot through the given uploader.
func (r *rig) putSnapshotVia(t *testing.T, st *store.S3, host string, at time.Time, dbSize, dataSize int) snapshot {
	t.Helper()
	ctx := context.Background()
	id := manifest.NewID(at, nil)
	dir := host + "/snapshots/" + id + "/"
	put := func(name string, size int) store.Object {
		o, err := st.Put(ctx, dir+name, io.LimitReader(rand.Reader, int64(size)), store.PutOptions{Size: int64(size)})
		if err != nil {
			t.Fatalf("put %s: %v", dir+name, err)
		}
		return o
	}
	db := put(manifest.DBFile, dbSize)
	data := put(manifest.DataFile, dataSize)
	m := manifest.Manifest{
		Schema: manifest.Schema, ID: id, Host: host, CreatedAt: at.UTC(), Trigger: manifest.TriggerSchedule,
		App: manifest.App{Revision: "abc123"},
		DB: &manifest.DB{Database: "psyfit", ServerVersion: "15.8", Migration: manifest.Migration{Tool: manifest.ToolNone},
			File: manifest.DBFile, Size: db.Size, SHA256: db.SHA256, Compression: manifest.CompressionZstd, Tables: map[string]int64{"public.users": 3}},
		Data:   &manifest.Data{Path: "/var/data", File: manifest.DataFile, Size: data.Size, SHA256: data.SHA256, Entries: 4},
		Status: manifest.StatusComplete,
	}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(dir + manifest.ManifestFile), Body: bytes.NewReader(raw)})
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{Host: host, ID: id, Manifest: m, ManifestKey: dir + manifest.ManifestFile,
		Keys: []string{dir + manifest.DBFile, dir + manifest.DataFile, dir + manifest.ManifestFile}, Version: aws.ToString(out.VersionId)}
}

// s3Notification is an S3 event notification for the snapshot's
// manifest, its key URL-encoded as S3 sends it.
func (r *rig) s3Notification(s snapshot) []byte {
	return fmt.Appendf(nil, `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
"eventTime":"2025-03-01T02:00:01.482Z","eventName":"ObjectCreated:Put",
"s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},
"object":{"key":%q,"size":900,"versionId":%q,"sequencer":"0067C2521D3F5A2B81"}}}]}`,
		r.srv.Bucket, r.srv.Bucket, strings.ReplaceAll(s.ManifestKey, " ", "+"), s.Version)
}

// eventBridge is the EventBridge "Object Created" event for the manifest.
func (r *rig) eventBridge(s snapshot) []byte {
	return fmt.Appendf(nil, `{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
"source":"aws.s3","account":"123456789012","time":"2025-03-01T02:00:01Z","region":"us-east-1",
"resources":["arn:aws:s3:::%s"],"detail":{"version":"0","bucket":{"name":%q},
"object":{"key":%q,"size":900,"version-id":%q,"sequencer":"0067C2521D3F5A2B81"},"reason":"PutObject"}}`,
		r.srv.Bucket, r.srv.Bucket, s.ManifestKey, s.Version)
}

// versions lists the vault's object versions under prefix: key -> version ids.
func (r *rig) versions(t *testing.T, prefix string) map[string][]string {
	t.Helper()
	out, err := r.s3.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(r.vault), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list vault versions: %v", err)
	}
	if len(out.DeleteMarkers) > 0 {
		t.Errorf("vault has %d delete markers; the function must never create one", len(out.DeleteMarkers))
	}
	m := map[string][]string{}
	for _, v := range out.Versions {
		m[aws.ToString(v.Key)] = append(m[aws.ToString(v.Key)], aws.ToString(v.VersionId))
	}
	return m
}

// catalog reads a host's vault catalog from the source bucket.
func (r *rig) catalog(t *testing.T, host string) *Catalog {
	t.Helper()
	out, err := r.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(host + "/" + CatalogFile)})
	if err != nil {
		t.Fatalf("get catalog of %s: %v", host, err)
	}
	defer out.Body.Close()
	var c Catalog
	if err := json.NewDecoder(out.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func invoke(t *testing.T, h *Handler, payload []byte) Result {
	t.Helper()
	res, err := h.Handle(context.Background(), payload)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return res
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
