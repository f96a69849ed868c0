package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/alert"
	"backstop/shared/mail"
	"backstop/shared/mail/sendgridtest"
	"backstop/shared/testenv"
)

const (
	testKey   = "SG.test-key-0123456789abcdef"
	testFrom  = "noreply@psytech.jp"
	testTo    = "ops@example.jp"
	eventsDir = "ops team/psyfit-prod/events/"
)

// rig is one handler over real parts: versitygw (S3), moto_server
// (Secrets Manager) and the strict SendGrid stand-in.
type rig struct {
	s3      *testenv.S3Server
	s3c     *s3.Client
	moto    *testenv.MotoServer
	sm      *secretsmanager.Client
	secret  string // ARN
	sg      *sendgridtest.Server
	h       *Handler
	logs    *syncBuffer
	timeout time.Duration
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

// newRig starts the parts; sgKey is the key the stand-in accepts, and the
// secret starts out holding testKey.
func newRig(t *testing.T, sgKey string, script ...sendgridtest.Reply) *rig {
	t.Helper()
	r := &rig{s3: testenv.S3(t), moto: testenv.Moto(t), sg: sendgridtest.New(t, sgKey, script...), logs: &syncBuffer{}, timeout: 30 * time.Second}
	r.s3c = r.s3.Client(t)
	r.sm = r.moto.SecretsManager()
	r.secret = r.moto.CreateSecret(t, "backstop/sendgrid", testKey)
	r.h = &Handler{
		S3:       r.s3c,
		Secrets:  r.sm,
		Bucket:   r.s3.Bucket,
		SecretID: r.secret,
		Mail: mail.SendGrid{
			From: testFrom, To: []string{testTo}, Endpoint: r.sg.URL,
			MaxAttempts: 3, Backoff: 10 * time.Millisecond,
		},
		DigestThreshold: 10,
		DigestWindow:    5 * time.Minute,
		DigestWait:      0,
		AlarmLocale:     "en",
		Log:             slog.New(slog.NewJSONHandler(r.logs, nil)),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", r.logs.String())
		}
		if strings.Contains(r.logs.String(), testKey) {
			t.Errorf("the log reveals the API key")
		}
	})
	return r
}

// invoke runs one invocation with a deadline, as Lambda would.
func (r *rig) invoke(t *testing.T, payload []byte) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	res, err := r.h.Handle(ctx, payload)
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Errorf("error reveals the API key: %v", err)
	}
	return res, err
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// downEvent is testdata/event-down.json with its dedup key made unique
// by suffix (and the check renamed, so subjects tell events apart).
func downEvent(t testing.TB, suffix string) alert.Event {
	t.Helper()
	var ev alert.Event
	if err := json.Unmarshal(readTestdata(t, "event-down.json"), &ev); err != nil {
		t.Fatal(err)
	}
	if suffix != "" {
		ev.DedupKey += ":" + suffix
		ev.Check += "-" + suffix
	}
	return ev
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putEvent writes ev as an event object (as the probe's store sender
// does) and returns its key and version id.
func (r *rig) putEvent(t testing.TB, key string, ev alert.Event) string {
	t.Helper()
	return r.putObject(t, key, mustJSON(t, ev))
}

func (r *rig) putObject(t testing.TB, key string, data []byte) string {
	t.Helper()
	out, err := r.s3c.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(r.s3.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
	})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return aws.ToString(out.VersionId)
}

// s3Notification is testdata/s3-notification.json with one record per
// object (key URL-encoded as S3 does, version id when given).
func (r *rig) s3Notification(t testing.TB, objs ...s3obj) []byte {
	t.Helper()
	var n map[string][]map[string]any
	if err := json.Unmarshal(readTestdata(t, "s3-notification.json"), &n); err != nil {
		t.Fatal(err)
	}
	tmpl := mustJSON(t, n["Records"][0])
	var recs []map[string]any
	for _, o := range objs {
		var rec map[string]any
		if err := json.Unmarshal(tmpl, &rec); err != nil {
			t.Fatal(err)
		}
		s3m := rec["s3"].(map[string]any)
		s3m["bucket"].(map[string]any)["name"] = r.s3.Bucket
		obj := s3m["object"].(map[string]any)
		obj["key"] = url.QueryEscape(o.key)
		if o.version != "" {
			obj["versionId"] = o.version
		}
		if o.eventName != "" {
			rec["eventName"] = o.eventName
		}
		recs = append(recs, rec)
	}
	n["Records"] = recs
	return mustJSON(t, n)
}

type s3obj struct{ key, version, eventName string }

// claimOf reads the claim of a dedup key.
func (r *rig) claimOf(t testing.TB, dedupKey string) claim {
	t.Helper()
	out, err := r.s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(r.s3.Bucket), Key: aws.String(claimKey(dedupKey))})
	if err != nil {
		t.Fatalf("get claim of %s: %v", dedupKey, err)
	}
	defer out.Body.Close()
	var c claim
	b, _ := io.ReadAll(out.Body)
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("claim of %s: %v: %s", dedupKey, err, b)
	}
	return c
}

// subjects lists the subjects of the mails the stand-in accepted.
func (r *rig) subjects() []string {
	var s []string
	for _, m := range r.sg.Accepted() {
		s = append(s, m.Subject)
	}
	return s
}

func statuses(reqs []sendgridtest.Request) []int {
	var s []int
	for _, r := range reqs {
		s = append(s, r.Status)
	}
	return s
}
