package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/testenv"
)

// site is a loopback HTTP server whose answer a test switches: status
// (200 with {"status":"ok"} by default), and failNext requests answered
// 503 before that.
type site struct {
	srv      *httptest.Server
	status   atomic.Int32
	failNext atomic.Int32
	hits     atomic.Int32
}

func newSite(t testing.TB) *site {
	t.Helper()
	s := &site{}
	s.status.Store(200)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		code := int(s.status.Load())
		if s.failNext.Load() > 0 && s.failNext.Add(-1) >= 0 {
			code = 503
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == 200 {
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		} else {
			_, _ = io.WriteString(w, `{"status":"down"}`)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) url(path string) string { return s.srv.URL + path }

// world is one real S3 (versitygw) and the handlers a test builds on it.
type world struct {
	s3     *testenv.S3Server
	client *s3.Client
}

func newWorld(t testing.TB) *world {
	t.Helper()
	srv := testenv.S3(t)
	return &world{s3: srv, client: srv.Client(t)}
}

// syncBuffer is a bytes.Buffer safe for a handler and the test.
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

// handler builds a handler over the world's bucket with inline targets,
// a short retry pause, and metrics and log captured.
func (w *world) handler(t testing.TB, targets string, mod func(*Config)) (*Handler, *syncBuffer) {
	t.Helper()
	metrics := &syncBuffer{}
	cfg := Config{
		S3: w.client, StateBucket: w.s3.Bucket, TargetsInline: []byte(targets),
		RetryPause: 20 * time.Millisecond, Metrics: metrics, Log: testLog{t},
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("new handler: %v", err)
	}
	return h, metrics
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// scheduled returns testdata/scheduled-event.json with the given id.
func scheduled(t testing.TB, id string) events.EventBridgeEvent {
	t.Helper()
	data, err := os.ReadFile("testdata/scheduled-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("scheduled event: %v", err)
	}
	ev.ID = id
	return ev
}

func runOnce(t testing.TB, h *Handler, id string) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := h.Handle(ctx, scheduled(t, id))
	if err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	return rep
}

// events lists and reads every object under uptime/events/, by key.
func (w *world) events(t testing.TB) []EventObject {
	t.Helper()
	ctx := context.Background()
	out, err := w.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(w.s3.Bucket), Prefix: aws.String(DefaultEventsPrefix)})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	var evs []EventObject
	for _, o := range out.Contents {
		data, _, err := getObject(ctx, w.client, w.s3.Bucket, aws.ToString(o.Key))
		if err != nil {
			t.Fatal(err)
		}
		var ev EventObject
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("event %s: %v\n%s", aws.ToString(o.Key), err, data)
		}
		if ev.Key != "" {
			t.Errorf("event %s carries the outbox key field", aws.ToString(o.Key))
		}
		ev.Key = aws.ToString(o.Key)
		evs = append(evs, ev)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	return evs
}

func (w *world) state(t testing.TB) *State {
	t.Helper()
	data, _, err := getObject(context.Background(), w.client, w.s3.Bucket, DefaultStateKey)
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	st := newState()
	if err := json.Unmarshal(data, st); err != nil {
		t.Fatalf("state: %v\n%s", err, data)
	}
	return st
}

func (w *world) put(t testing.TB, key, body string) {
	t.Helper()
	if _, err := putObject(context.Background(), w.client, w.s3.Bucket, key, []byte(body), "", false); err != nil {
		t.Fatal(err)
	}
}

// describe prints events for failure messages.
func describe(evs []EventObject) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %s %s kind=%q incident=%s summary=%q", e.Key, e.Check, e.State, e.Kind, e.IncidentID, e.Summary)
	}
	return b.String()
}

// emfLines parses the metrics output.
func emfLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("EMF line is not JSON: %v: %s", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

func targetsJSON(ts ...string) string { return `{"targets":[` + strings.Join(ts, ",") + `]}` }
