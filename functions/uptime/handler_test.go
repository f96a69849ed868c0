package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/alert"
	"backstop/shared/testenv"
)

// A target that goes down raises exactly one down event after two failed
// runs, no more while it lasts, and one up event with the downtime when it
// has been back for two runs.
func TestDownThenRecovered(t *testing.T) {
	w := newWorld(t)
	web := newSite(t)
	h, metrics := w.handler(t, `{"locale":"ja","to":["ops@example.jp"],"targets":[
		{"name":"web","url":"`+web.url("/up")+`","conditions":["[STATUS] == 200"]},
		{"name":"health","url":"`+web.url("/api/v1/health")+`","conditions":["[BODY].status == ok"],"locale":"en","to":["dev@example.jp"]}]}`, nil)

	rep := runOnce(t, h, "r1")
	if rep.Up != 2 || rep.Down != 0 || len(rep.Events) != 0 {
		t.Fatalf("all up: %+v", rep)
	}
	web.status.Store(503)
	rep = runOnce(t, h, "r2")
	if rep.Down != 2 || len(rep.Events) != 0 {
		t.Fatalf("first failed run: want 2 down and no event yet, got %+v; events %s", rep, describe(w.events(t)))
	}
	runOnce(t, h, "r3")
	evs := w.events(t)
	if len(evs) != 2 {
		t.Fatalf("after two failed runs: want one down event per target, got %d: %s", len(evs), describe(evs))
	}
	byCheck := map[string]EventObject{}
	for _, e := range evs {
		if e.State != alert.Down || e.Kind != "" {
			t.Errorf("event %s: state %s kind %q, want down", e.Key, e.State, e.Kind)
		}
		byCheck[e.Check] = e
	}
	webDown, healthDown := byCheck["web"], byCheck["health"]
	if webDown.Summary != "[STATUS] (503) == 200" || webDown.Value != "HTTP 503" || webDown.Source != "uptime" ||
		webDown.Host != "127.0.0.1" || webDown.Locale != "ja" || strings.Join(webDown.To, ",") != "ops@example.jp" {
		t.Errorf("web down event: %+v", webDown)
	}
	if healthDown.Summary != "[BODY].status (down) == ok" || healthDown.Locale != "en" || strings.Join(healthDown.To, ",") != "dev@example.jp" {
		t.Errorf("health down event: %+v", healthDown)
	}
	if !strings.Contains(webDown.Detail, "GET "+web.url("/up")+" answered HTTP 503") {
		t.Errorf("web down detail: %q", webDown.Detail)
	}
	if webDown.Since.IsZero() || webDown.IncidentID == "" || webDown.DedupKey == "" || !strings.HasPrefix(webDown.Key, DefaultEventsPrefix) {
		t.Errorf("web down event identity: %+v", webDown)
	}

	runOnce(t, h, "r4") // still down: no reminder within the hour
	if evs := w.events(t); len(evs) != 2 {
		t.Fatalf("a third failed run raised more events: %s", describe(evs))
	}
	st := w.state(t)
	if cs := st.Tracker.Checks["web"]; cs == nil || cs.Level != alert.LevelDown || cs.Outage == nil || cs.Outage.ID != webDown.IncidentID {
		t.Fatalf("state: web should have the open incident %s: %+v", webDown.IncidentID, cs)
	}
	hist := st.Targets["web"]
	if len(hist.Days) != 1 || hist.Days[0].UpMinutes != 1 || hist.Days[0].DownMinutes != 3 || len(hist.LatencyMS) != 4 {
		t.Errorf("web history: %+v", hist)
	}
	if hist.LastAlert == nil || hist.LastAlert.Key != webDown.Key {
		t.Errorf("web last alert: %+v", hist.LastAlert)
	}

	web.status.Store(200)
	runOnce(t, h, "r5")
	if evs := w.events(t); len(evs) != 2 {
		t.Fatalf("one good run already closed the incident: %s", describe(evs))
	}
	runOnce(t, h, "r6")
	evs = w.events(t)
	if len(evs) != 4 {
		t.Fatalf("after two good runs: want one up event per target, got %s", describe(evs))
	}
	for _, e := range evs[2:] {
		if e.State != alert.Up || e.Kind != "" {
			t.Errorf("event %s: state %s kind %q, want up", e.Key, e.State, e.Kind)
		}
		if e.Check == "web" {
			if e.IncidentID != webDown.IncidentID || e.Cause != "[STATUS] (503) == 200" || !e.Since.Equal(webDown.Since) {
				t.Errorf("web up event does not close the down incident: %+v", e)
			}
			// Down from the first failed run to the first good one: the time between runs r2 and r5.
			if e.DowntimeSeconds < 0 || e.DowntimeSeconds > 60 {
				t.Errorf("web downtime %ds", e.DowntimeSeconds)
			}
		}
	}
	if cs := w.state(t).Tracker.Checks["web"]; cs.Level != alert.LevelOK || cs.Outage != nil {
		t.Errorf("state after recovery: %+v", cs)
	}

	// One EMF line per target per run: 6 runs x 2 targets.
	lines := emfLines(t, metrics.String())
	if len(lines) != 12 {
		t.Fatalf("EMF lines: got %d, want 12", len(lines))
	}
	first := lines[0]
	aws := first["_aws"].(map[string]any)
	dir := aws["CloudWatchMetrics"].([]any)[0].(map[string]any)
	if dir["Namespace"] != "Backstop/Uptime" || fmt.Sprint(dir["Dimensions"]) != "[[target]]" ||
		fmt.Sprint(dir["Metrics"]) != "[map[Name:latency_ms Unit:Milliseconds] map[Name:up Unit:Count]]" {
		t.Errorf("EMF directive: %v", dir)
	}
	if _, ok := aws["Timestamp"].(float64); !ok {
		t.Errorf("EMF Timestamp missing: %v", aws)
	}
	ups := map[string]float64{}
	for _, l := range lines {
		if _, ok := l["latency_ms"].(float64); !ok {
			t.Errorf("EMF line without latency_ms: %v", l)
		}
		ups[l["target"].(string)] += l["up"].(float64)
	}
	if ups["web"] != 3 || ups["health"] != 3 {
		t.Errorf("EMF up sums: %v, want 3 each (r1, r5, r6)", ups)
	}
}

// The retry absorbs a single failed request; flapping between runs never
// reaches the threshold; a failure on both tries counts.
func TestRetryAndFlapping(t *testing.T) {
	cases := []struct {
		name       string
		threshold  int
		runs       []func(*site) // set up each run
		wantEvents int
		wantHits   int32
	}{
		{"single blip absorbed by the retry", 1, []func(*site){
			func(s *site) { s.failNext.Store(1) },
			func(s *site) { s.failNext.Store(1) },
			func(s *site) { s.failNext.Store(1) },
		}, 0, 6},
		{"failing on both tries counts", 1, []func(*site){
			func(s *site) { s.failNext.Store(2) },
		}, 1, 2},
		{"flapping between runs never alerts", 2, []func(*site){
			func(s *site) { s.status.Store(503) },
			func(s *site) { s.status.Store(200) },
			func(s *site) { s.status.Store(503) },
			func(s *site) { s.status.Store(200) },
			func(s *site) { s.status.Store(503) },
		}, 0, 8},
	}
	w := newWorld(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			web := newSite(t)
			key := fmt.Sprintf("case%d/state.json", i)
			prefix := fmt.Sprintf("case%d/events/", i)
			h, metrics := w.handler(t, targetsJSON(fmt.Sprintf(`{"name":"web","url":%q,"failure_threshold":%d}`, web.url("/"), tc.threshold)),
				func(c *Config) { c.StateKey, c.EventsPrefix = key, prefix })
			events := 0
			for j, setup := range tc.runs {
				setup(web)
				rep := runOnce(t, h, fmt.Sprintf("%s-%d", tc.name, j))
				events += len(rep.Events)
			}
			if events != tc.wantEvents {
				t.Errorf("events: got %d, want %d", events, tc.wantEvents)
			}
			if got := web.hits.Load(); got != tc.wantHits {
				t.Errorf("requests: got %d, want %d", got, tc.wantHits)
			}
			if tc.name == "single blip absorbed by the retry" {
				for _, l := range emfLines(t, metrics.String()) {
					if l["up"] != 1.0 || l["retried"] != true {
						t.Errorf("EMF after an absorbed blip: %v", l)
					}
				}
			}
		})
	}
}

// A certificate 10 days from expiry is one warning (never down); a
// healthy one raises nothing; an untrusted one warns with the cause.
func TestCertificateTargets(t *testing.T) {
	ca := testenv.NewCA(t)
	other := testenv.NewCA(t)
	soon := testenv.TLSServer(t, ca.Leaf(t, testenv.LeafOpts{NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)}))
	fine := testenv.TLSServer(t, ca.Leaf(t, testenv.LeafOpts{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	untrusted := testenv.TLSServer(t, other.Leaf(t, testenv.LeafOpts{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))

	w := newWorld(t)
	h, metrics := w.handler(t, targetsJSON(
		`{"name":"soon","kind":"certificate","url":"https://`+soon+`/","conditions":["[CERTIFICATE_EXPIRATION] > 336h"]}`,
		`{"name":"fine","kind":"certificate","url":"https://`+fine+`/"}`,
		`{"name":"untrusted","kind":"certificate","url":"https://`+untrusted+`/"}`,
		`{"name":"https","url":"https://`+soon+`/"}`,
	), func(c *Config) { c.RootCAs = ca.Pool() })
	for i := range 4 {
		runOnce(t, h, fmt.Sprintf("cert-%d", i))
	}
	evs := w.events(t)
	got := map[string][]EventObject{}
	for _, e := range evs {
		got[e.Check] = append(got[e.Check], e)
		if e.State == alert.Down {
			t.Errorf("a certificate raised a down event: %+v", e)
		}
	}
	if len(evs) != 2 || len(got["soon"]) != 1 || len(got["untrusted"]) != 1 {
		t.Fatalf("want exactly one warning for soon and one for untrusted, got %s", describe(evs))
	}
	s := got["soon"][0]
	if s.State != alert.Warn || s.Summary != "certificate expires in 10 days" || s.Value != "10d" ||
		!strings.Contains(s.Detail, "[CERTIFICATE_EXPIRATION] (") || !strings.Contains(s.Detail, ") > 336h") {
		t.Errorf("soon warning: %+v", s)
	}
	u := got["untrusted"][0]
	if u.State != alert.Warn || !strings.Contains(u.Detail, "not trusted: x509: certificate signed by unknown authority") {
		t.Errorf("untrusted warning: %+v", u)
	}
	for _, l := range emfLines(t, metrics.String()) {
		want := map[string]float64{"soon": 0, "fine": 1, "untrusted": 0, "https": 1}[l["target"].(string)]
		if l["up"] != want {
			t.Errorf("EMF up for %v: %v, want %v", l["target"], l["up"], want)
		}
	}
}

// getGate holds each handler's first read of the state until both have
// read it, so both write against the same ETag and one must merge. It
// wraps the real S3 client; every call goes through to versitygw.
type getGate struct {
	ObjectStore
	key  string
	once sync.Once
	wg   *sync.WaitGroup
}

func (g *getGate) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := g.ObjectStore.GetObject(ctx, in, opts...)
	if aws.ToString(in.Key) == g.key {
		g.once.Do(func() {
			g.wg.Done()
			g.wg.Wait()
		})
	}
	return out, err
}

// Two overlapping runs never lose or double an incident: both read the
// same state, one write wins, the other re-reads and re-applies.
func TestOverlappingRuns(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := "no state yet (If-None-Match)"
		if existing {
			name = "existing state (If-Match)"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			web := newSite(t)
			targets := targetsJSON(`{"name":"web","url":"` + web.url("/") + `"}`)
			if existing {
				h, _ := w.handler(t, targets, nil)
				runOnce(t, h, "before")
			}
			web.status.Store(500)
			var wg sync.WaitGroup
			wg.Add(2)
			reps := make([]Report, 2)
			errs := make([]error, 2)
			var done sync.WaitGroup
			for i := range 2 {
				gate := &getGate{ObjectStore: w.client, key: DefaultStateKey, wg: &wg}
				h, _ := w.handler(t, targets, func(c *Config) { c.S3 = gate })
				done.Add(1)
				go func() {
					defer done.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					reps[i], errs[i] = h.Handle(ctx, scheduled(t, fmt.Sprintf("overlap-%d", i)))
				}()
			}
			done.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
			}
			if n := reps[0].SaveAttempts + reps[1].SaveAttempts; n != 3 {
				t.Errorf("save attempts %d+%d: want one run to merge once", reps[0].SaveAttempts, reps[1].SaveAttempts)
			}
			evs := w.events(t)
			if len(evs) != 1 || evs[0].State != alert.Down {
				t.Fatalf("want exactly one down event, got %s", describe(evs))
			}
			if len(reps[0].Events)+len(reps[1].Events) != 1 {
				t.Errorf("reports claim %v and %v", reps[0].Events, reps[1].Events)
			}
			st := w.state(t)
			cs := st.Tracker.Checks["web"]
			if cs.DownStreak != 2 || cs.Outage == nil || cs.Outage.ID != evs[0].IncidentID {
				t.Errorf("merged state: down streak %d, outage %+v; want 2 and incident %s", cs.DownStreak, cs.Outage, evs[0].IncidentID)
			}
			if !st.applied("overlap-0") || !st.applied("overlap-1") {
				t.Errorf("state runs %v: both runs must be recorded", st.Runs)
			}
			wantMin := 2.0
			if existing {
				wantMin = 3
			}
			if d := st.Targets["web"].Days[0]; d.UpMinutes+d.DownMinutes != wantMin {
				t.Errorf("history %+v: every run counted once", d)
			}
		})
	}
}

// A retried invocation (same event id) counts nothing twice, and an event
// lost between the state save and its write is written by the next run.
func TestRetriedRunAndLostEvent(t *testing.T) {
	w := newWorld(t)
	web := newSite(t)
	web.status.Store(500)
	h, _ := w.handler(t, targetsJSON(`{"name":"web","url":"`+web.url("/")+`"}`), nil)
	runOnce(t, h, "a")
	rep := runOnce(t, h, "a")
	if !rep.AlreadyApplied || len(rep.Events) != 0 {
		t.Fatalf("retried run: %+v", rep)
	}
	if cs := w.state(t).Tracker.Checks["web"]; cs.DownStreak != 1 {
		t.Fatalf("a retried run counted twice: down streak %d", cs.DownStreak)
	}
	// As if the function died after saving the state and before writing
	// the event: the event writes fail (S3 refuses them), the save worked.
	broken, _ := w.handler(t, targetsJSON(`{"name":"web","url":"`+web.url("/")+`"}`), func(c *Config) {
		c.S3 = refuseEvents{w.client}
	})
	rep, err := broken.Handle(context.Background(), scheduled(t, "b"))
	if err == nil || !strings.Contains(err.Error(), "write event: put s3://"+w.s3.Bucket+"/uptime/events/") || !strings.Contains(err.Error(), "injected: events unwritable") {
		t.Fatalf("a failed event write must fail the run: %v", err)
	}
	if len(rep.Events) != 1 {
		t.Fatalf("second failed run: %+v", rep)
	}
	if evs := w.events(t); len(evs) != 0 {
		t.Fatalf("event written: %s", describe(evs))
	}
	if st := w.state(t); len(st.Outbox) != 1 || st.Outbox[0].Key != rep.Events[0] {
		t.Fatalf("state outbox %+v: the event must wait there until confirmed", st.Outbox)
	}
	runOnce(t, h, "c")
	evs := w.events(t)
	if len(evs) != 1 || evs[0].Key != rep.Events[0] || evs[0].State != alert.Down {
		t.Fatalf("the next run must write the lost event once: %s", describe(evs))
	}
	if st := w.state(t); len(st.Outbox) != 0 {
		t.Errorf("outbox not emptied once confirmed: %+v", st.Outbox)
	}
}

// refuseEvents passes everything to S3 but event writes, which fail.
type refuseEvents struct{ ObjectStore }

func (r refuseEvents) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), DefaultEventsPrefix) {
		return nil, errors.New("injected: events unwritable")
	}
	return r.ObjectStore.PutObject(ctx, in, opts...)
}

// A run that reaches its deadline saves what it observed and returns an
// error naming the targets it missed.
func TestDeadline(t *testing.T) {
	w := newWorld(t)
	fast := newSite(t)
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		_, _ = io.WriteString(rw, "late")
	}))
	t.Cleanup(slow.Close)
	h, metrics := w.handler(t, targetsJSON(
		`{"name":"fast","url":"`+fast.url("/")+`"}`,
		`{"name":"slow","url":"`+slow.URL+`/","timeout":"30s"}`,
	), func(c *Config) { c.Reserve = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := h.Handle(ctx, scheduled(t, "deadline"))
	if err == nil || !strings.Contains(err.Error(), "uptime run deadline: 1 of 2 targets not checked before the deadline") {
		t.Fatalf("error %v, want the missed target named", err)
	}
	if rep.Up != 1 || rep.NotObserved != 1 || rep.Down != 0 {
		t.Errorf("report %+v", rep)
	}
	st := w.state(t)
	if st.Targets["fast"] == nil || st.Targets["slow"] != nil {
		t.Errorf("state history: fast %+v, slow %+v: want fast saved, slow not observed", st.Targets["fast"], st.Targets["slow"])
	}
	if cs := st.Tracker.Checks["slow"]; cs != nil && cs.DownStreak != 0 {
		t.Errorf("the deadline counted as a failure of slow: %+v", cs)
	}
	if lines := emfLines(t, metrics.String()); len(lines) != 1 || lines[0]["target"] != "fast" {
		t.Errorf("EMF lines: %v", lines)
	}
}

// Targets in S3 are validated on load: a bad document stops the run with
// the field at fault and writes nothing.
func TestTargetsFromS3(t *testing.T) {
	w := newWorld(t)
	web := newSite(t)
	h, _ := w.handler(t, "", func(c *Config) { c.TargetsBucket, c.TargetsKey = w.s3.Bucket, "uptime/targets.json" })

	_, err := h.Handle(context.Background(), scheduled(t, "missing"))
	if err == nil || !strings.Contains(err.Error(), "load targets: get s3://"+w.s3.Bucket+"/uptime/targets.json: no such key") {
		t.Fatalf("missing targets object: %v", err)
	}
	w.put(t, "uptime/targets.json", targetsJSON(`{"name":"web","url":"`+web.url("/")+`"}`, `{"name":"b","url":"https://b/"}`, `{"name":"c","url":"gopher://x/"}`))
	_, err = h.Handle(context.Background(), scheduled(t, "invalid"))
	if err == nil || !errors.Is(err, ErrInvalidTargets) ||
		!strings.Contains(err.Error(), "targets s3://"+w.s3.Bucket+"/uptime/targets.json: targets[2].url: must be an http:// or https:// URL") {
		t.Fatalf("invalid targets object: %v", err)
	}
	if _, _, err := getObject(context.Background(), w.client, w.s3.Bucket, DefaultStateKey); !errors.Is(err, errNotFound) {
		t.Errorf("a run with invalid targets wrote state (err %v)", err)
	}
	if web.hits.Load() != 0 {
		t.Errorf("a run with invalid targets checked something")
	}

	w.put(t, "uptime/targets.json", targetsJSON(`{"name":"web","url":"`+web.url("/")+`"}`))
	if rep := runOnce(t, h, "valid"); rep.Up != 1 {
		t.Errorf("valid targets object: %+v", rep)
	}
}

func TestNewRejectsInlineTargets(t *testing.T) {
	_, err := New(Config{S3: (*s3.Client)(nil), StateBucket: "b", TargetsInline: []byte(`[{"name":"x","url":"tcp://x"}]`)})
	if err == nil || err.Error() != "targets (TARGETS): targets[0].url: must be an http:// or https:// URL" {
		t.Fatalf("got %v", err)
	}
}
