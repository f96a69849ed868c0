package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

// app is a real HTTP server whose health the test flips.
type app struct {
	healthy atomic.Bool
	srv     *httptest.Server
}

func newApp(t *testing.T) *app {
	a := &app{}
	a.healthy.Store(true)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if a.healthy.Load() {
			io.WriteString(w, `{"status":"ok"}`)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"status":"down"}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

type fixture struct {
	dir, mail, listen string
	cfg               *config.Config
	logs              *strings.Builder
}

func newFixture(t *testing.T, a *app) *fixture {
	dir := t.TempDir()
	f := &fixture{dir: dir, mail: filepath.Join(dir, "mail"), listen: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), logs: &strings.Builder{}}
	y := fmt.Sprintf(`
host: test-host
state_dir: %s
listen: %s
checks:
  - {name: web, type: http, url: "%s/health", conditions: ["[STATUS] == 200", "[BODY].status == ok"], interval: 1s, timeout: 900ms}
alerts: {via: dir, dir: %s, to: [ops@example.jp], from: probe@example.jp, failure_threshold: 2, success_threshold: 2}
`, filepath.Join(dir, "state"), f.listen, a.srv.URL, f.mail)
	cfg, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	return f
}

// start runs a daemon until the returned stop is called; stop reports how
// Run ended.
func (f *fixture) start(t *testing.T) (stop func() error) {
	t.Helper()
	d, err := New(f.cfg, slog.New(slog.NewJSONHandler(&syncWriter{b: f.logs}, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once atomic.Bool
	stop = func() error {
		if !once.CompareAndSwap(false, true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(ShutdownGrace + 10*time.Second):
			return fmt.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

type syncWriter struct {
	mu atomic.Int32
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	for !w.mu.CompareAndSwap(0, 1) {
	}
	defer w.mu.Store(0)
	return w.b.Write(p)
}

// mails returns the subjects of the .eml files written so far.
func (f *fixture) mails(t *testing.T) []string {
	ents, _ := filepath.Glob(filepath.Join(f.mail, "*.eml"))
	var subjects []string
	for _, p := range ents {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				subjects = append(subjects, strings.TrimSpace(s))
				break
			}
		}
	}
	return subjects
}

func count(subjects []string, prefix string) int {
	n := 0
	for _, s := range subjects {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to limit; a hang detector, not a timing assertion.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", limit, what)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOutageAlertsOnceAndRecovers(t *testing.T) {
	a := newApp(t)
	f := newFixture(t, a)
	stop := f.start(t)

	hb := filepath.Join(f.cfg.StateDir, "heartbeat.json")
	waitFor(t, "the first heartbeat", 10*time.Second, func() bool { _, err := os.Stat(hb); return err == nil })
	var beat Heartbeat
	data, _ := os.ReadFile(hb)
	if err := json.Unmarshal(data, &beat); err != nil || beat.Host != "test-host" || beat.Checks["web"] != "ok" {
		t.Fatalf("heartbeat = %s (%v)", data, err)
	}
	if code, body := get(t, "http://"+f.listen+"/healthz"); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("/healthz = %d %s", code, body)
	}

	a.healthy.Store(false)
	waitFor(t, "a [DOWN] mail", 15*time.Second, func() bool { return count(f.mails(t), "[DOWN] test-host web") == 1 })
	_, metrics := get(t, "http://"+f.listen+"/metrics")
	for _, want := range []string{`backstop_check_status{check="web",type="http"} 2`, `backstop_check_up{check="web",type="http"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(metrics, `backstop_check_consecutive_failures{check="web",type="http"}`) {
		t.Errorf("/metrics lacks consecutive failures")
	}
	// Several more failing rounds: still one DOWN (reminders are hourly).
	time.Sleep(2500 * time.Millisecond)
	if n := count(f.mails(t), "[DOWN]"); n != 1 {
		t.Fatalf("%d [DOWN] mails during one outage, want 1: %v", n, f.mails(t))
	}

	a.healthy.Store(true)
	waitFor(t, "a [RECOVERED] mail", 15*time.Second, func() bool { return count(f.mails(t), "[RECOVERED] test-host web") == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	subjects := f.mails(t)
	if len(subjects) != 2 {
		t.Errorf("mails = %v, want exactly one DOWN and one RECOVERED", subjects)
	}
	if strings.Contains(f.logs.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", f.logs.String())
	}
}

func TestIncidentSurvivesRestart(t *testing.T) {
	a := newApp(t)
	f := newFixture(t, a)
	a.healthy.Store(false)
	stop := f.start(t)
	waitFor(t, "a [DOWN] mail", 15*time.Second, func() bool { return count(f.mails(t), "[DOWN] test-host web") == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The restarted daemon remembers the open incident: no second DOWN,
	// and the recovery closes the incident the first one opened.
	stop = f.start(t)
	time.Sleep(2500 * time.Millisecond)
	if n := count(f.mails(t), "[DOWN]"); n != 1 {
		t.Fatalf("%d [DOWN] mails after restart, want still 1: %v", n, f.mails(t))
	}
	a.healthy.Store(true)
	waitFor(t, "a [RECOVERED] mail", 15*time.Second, func() bool { return count(f.mails(t), "[RECOVERED] test-host web") == 1 })
	stop()
}

func TestSecondDaemonOnSameStateDirRefused(t *testing.T) {
	a := newApp(t)
	f := newFixture(t, a)
	f.start(t)
	hb := filepath.Join(f.cfg.StateDir, "heartbeat.json")
	waitFor(t, "the first heartbeat", 10*time.Second, func() bool { _, err := os.Stat(hb); return err == nil })

	d2, err := New(f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	err = d2.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another probe run holds") {
		t.Fatalf("second Run: %v, want the lock message", err)
	}
}

func TestStopsPromptlyWhileACheckHangs(t *testing.T) {
	// A server that never answers: the check is in flight at SIGTERM and
	// must be cancelled within the grace period, not waited for.
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); srv.Close() })
	a := &app{srv: srv}
	f := newFixture(t, a)
	f.cfg.Checks[0].Interval = config.Duration(30 * time.Second)
	f.cfg.Checks[0].Timeout = config.Duration(29 * time.Second)
	stop := f.start(t)
	time.Sleep(500 * time.Millisecond) // the first round is in flight
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
