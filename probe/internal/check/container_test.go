package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

func newContainerCheck(t *testing.T, names ...string) *ContainerCheck {
	t.Helper()
	ch, err := New(config.Check{Name: "containers", Type: "container", Containers: names, Timeout: config.Duration(20 * time.Second)})
	if err != nil {
		t.Fatalf("new container check: %v", err)
	}
	return ch.(*ContainerCheck)
}

func uniq(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// observedFor returns the Observed entry of the container configured as name.
func observedFor(t *testing.T, r Result, name string) map[string]any {
	t.Helper()
	list, _ := r.Observed["containers"].([]map[string]any)
	for _, o := range list {
		if o["config_name"] == name {
			return o
		}
	}
	t.Fatalf("no observed entry for %s in %#v", name, r.Observed)
	return nil
}

var healthURL = "http://127.0.0.1:3000/api/v1/health"

func TestContainerCheck(t *testing.T) {
	d := testenv.Docker(t)
	web := d.Image(t, "webapp")
	exiter := d.Image(t, "exiter")
	fastHealth := &testenv.Healthcheck{Cmd: []string{"/webapp", "-healthcheck", healthURL}, Interval: 200 * time.Millisecond, Retries: 2}

	t.Run("running and healthy twice", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, testenv.RunOpts{Image: web, NamePrefix: "bst-run-", Health: fastHealth})
		c.WaitHealth(t, "healthy")
		ch := newContainerCheck(t, c.Name)
		for round := 1; round <= 2; round++ {
			r := ch.Check(t.Context())
			if r.Status != OK || r.Value != "1/1 running" || r.Message != c.Name+" running (healthy)" || r.Type != "container" || r.Name != "containers" {
				t.Fatalf("round %d: %s %q %q (%s/%s), want ok \"1/1 running\" %q", round, r.Status, r.Value, r.Message, r.Name, r.Type, c.Name+" running (healthy)")
			}
			o := observedFor(t, r, c.Name)
			want := map[string]any{"name": c.Name, "id": c.ID[:12], "state": "running", "health": "healthy", "restart_count": 0, "image": web}
			for k, v := range want {
				if o[k] != v {
					t.Errorf("round %d: observed %s = %#v, want %#v", round, k, o[k], v)
				}
			}
		}
	})

	t.Run("exited", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, testenv.RunOpts{Image: exiter, NamePrefix: "bst-exit-", Cmd: []string{"-code", "3"}})
		c.WaitExited(t)
		r := newContainerCheck(t, c.Name).Check(t.Context())
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(c.Name) + `: exited \(code 3\) \d+s ago$`)
		if r.Status != Critical || r.Value != "0/1 running" || !re.MatchString(r.Message) {
			t.Fatalf("got %s %q %q, want critical \"0/1 running\" matching %s", r.Status, r.Value, r.Message, re)
		}
		if o := observedFor(t, r, c.Name); o["state"] != "exited" || o["health"] != "none" {
			t.Fatalf("observed %#v, want state exited, health none", o)
		}
	})

	t.Run("unhealthy", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, testenv.RunOpts{Image: web, NamePrefix: "bst-sick-", Env: []string{"HEALTH=fail"}, Health: fastHealth})
		c.WaitHealth(t, "unhealthy")
		r := newContainerCheck(t, c.Name).Check(t.Context())
		want := c.Name + ": unhealthy: GET " + healthURL + ": 503 Service Unavailable"
		if r.Status != Critical || r.Value != "1/1 running" || r.Message != want {
			t.Fatalf("got %s %q %q, want critical \"1/1 running\" %q", r.Status, r.Value, r.Message, want)
		}
	})

	t.Run("health starting", func(t *testing.T) {
		t.Parallel()
		// The first healthcheck runs after Interval: an hour keeps it starting.
		slow := &testenv.Healthcheck{Cmd: fastHealth.Cmd, Interval: time.Hour}
		c := d.Run(t, testenv.RunOpts{Image: web, NamePrefix: "bst-start-", Health: slow})
		c.WaitHealth(t, "starting")
		r := newContainerCheck(t, c.Name).Check(t.Context())
		if r.Status != Warn || r.Message != c.Name+": health starting" {
			t.Fatalf("got %s %q, want warn %q", r.Status, r.Message, c.Name+": health starting")
		}
	})

	t.Run("restart loop", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, testenv.RunOpts{Image: exiter, NamePrefix: "bst-loop-", Cmd: []string{"-code", "1", "-after", "200ms"}, Restart: "always"})
		c.WaitRestarts(t, 1)
		ch := newContainerCheck(t, c.Name)
		r1 := ch.Check(t.Context())
		n1, _ := observedFor(t, r1, c.Name)["restart_count"].(int)
		c.WaitRestarts(t, n1+2)
		r2 := ch.Check(t.Context())
		n2, _ := observedFor(t, r2, c.Name)["restart_count"].(int)
		want := "restarted " + strconv.Itoa(n2-n1) + " times since last check"
		if n2-n1 < 2 || r2.Status != Critical || !strings.HasPrefix(r2.Message, c.Name+": ") || !strings.HasSuffix(r2.Message, want) {
			t.Fatalf("round 2 after %d -> %d restarts: %s %q, want critical ending in %q", n1, n2, r2.Status, r2.Message, want)
		}
	})

	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		name := uniq("bst-missing-")
		r := newContainerCheck(t, name).Check(t.Context())
		want := name + ": no container named " + name + " or " + name + "-*"
		if r.Status != Critical || r.Value != "0/1 running" || r.Message != want {
			t.Fatalf("got %s %q %q, want critical \"0/1 running\" %q", r.Status, r.Value, r.Message, want)
		}
		if o := observedFor(t, r, name); o["state"] != "missing" {
			t.Fatalf("observed %#v, want state missing", o)
		}
	})

	t.Run("prefix picks the running version", func(t *testing.T) {
		t.Parallel()
		base := uniq("bst-kamal-")
		old := d.Run(t, testenv.RunOpts{Image: exiter, Name: base + "-v1", Cmd: []string{"-code", "1"}})
		old.WaitExited(t)
		cur := d.Run(t, testenv.RunOpts{Image: web, Name: base + "-v2"})
		r := newContainerCheck(t, base).Check(t.Context())
		if r.Status != OK || r.Message != cur.Name+" running" || r.Value != "1/1 running" {
			t.Fatalf("got %s %q %q, want ok %q", r.Status, r.Value, r.Message, cur.Name+" running")
		}
		if o := observedFor(t, r, base); o["id"] != cur.ID[:12] {
			t.Fatalf("observed %#v, want id %s", o, cur.ID[:12])
		}
	})

	t.Run("prefix picks the newest running version", func(t *testing.T) {
		t.Parallel()
		base := uniq("bst-deploy-")
		d.Run(t, testenv.RunOpts{Image: web, Name: base + "-v1"})
		newer := d.Run(t, testenv.RunOpts{Image: web, Name: base + "-v2", Env: []string{"HEALTH=fail"}, Health: fastHealth})
		newer.WaitHealth(t, "unhealthy")
		r := newContainerCheck(t, base).Check(t.Context())
		if r.Status != Critical || !strings.HasPrefix(r.Message, newer.Name+": unhealthy: ") {
			t.Fatalf("got %s %q, want critical about the newer %s", r.Status, r.Message, newer.Name)
		}
	})

	t.Run("exact name wins over prefix", func(t *testing.T) {
		t.Parallel()
		base := uniq("bst-exact-")
		d.Run(t, testenv.RunOpts{Image: web, Name: base + "-v2"})
		exact := d.Run(t, testenv.RunOpts{Image: exiter, Name: base, Cmd: []string{"-code", "2"}})
		exact.WaitExited(t)
		r := newContainerCheck(t, base).Check(t.Context())
		if r.Status != Critical || !strings.HasPrefix(r.Message, base+": exited (code 2)") {
			t.Fatalf("got %s %q, want critical about %s exited (code 2)", r.Status, r.Message, base)
		}
	})

	t.Run("several names: worst status, problems joined", func(t *testing.T) {
		t.Parallel()
		ok := d.Run(t, testenv.RunOpts{Image: web, NamePrefix: "bst-many-ok-"})
		bad := d.Run(t, testenv.RunOpts{Image: exiter, NamePrefix: "bst-many-bad-", Cmd: []string{"-code", "4"}})
		bad.WaitExited(t)
		missing := uniq("bst-many-missing-")
		r := newContainerCheck(t, ok.Name, bad.Name, missing).Check(t.Context())
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(bad.Name) + `: exited \(code 4\) \d+s ago; ` +
			regexp.QuoteMeta(missing+": no container named "+missing+" or "+missing+"-*") + `$`)
		if r.Status != Critical || r.Value != "1/3 running" || !re.MatchString(r.Message) {
			t.Fatalf("got %s %q %q, want critical \"1/3 running\" matching %s", r.Status, r.Value, r.Message, re)
		}
		if r.Observed["running"] != 1 || r.Observed["configured"] != 3 {
			t.Fatalf("observed %#v, want running 1 of 3", r.Observed)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		r := newContainerCheck(t, "psyfit-web").Check(ctx)
		want := "Docker engine not reachable at " + newContainerCheck(t, "x").host + ": cancelled"
		if r.Status != Unknown || r.Message != want {
			t.Fatalf("got %s %q, want unknown %q", r.Status, r.Message, want)
		}
	})
}

// TestContainerEngineUnreachable needs no engine: the socket is absent or
// nothing listens on it.
func TestContainerEngineUnreachable(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatalf("listen %s: %v", stale, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	missing := filepath.Join(dir, "docker.sock")
	tests := []struct {
		name   string
		socket string
		want   string
	}{
		{"no socket file", "unix://" + missing, "Docker engine not reachable at unix://" + missing + ": no socket file at " + missing},
		{"plain path", missing, "Docker engine not reachable at unix://" + missing + ": no socket file at " + missing},
		{"nobody listening", "unix://" + stale, "Docker engine not reachable at unix://" + stale + ": connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := New(config.Check{Name: "containers", Type: "container", Containers: []string{"psyfit-web"}, Socket: tc.socket})
			if err != nil {
				t.Fatalf("new: %v", err)
			}
			r := ch.Check(t.Context())
			if r.Status != Unknown || r.Message != tc.want || r.Value != "unknown" {
				t.Fatalf("got %s %q %q, want unknown %q", r.Status, r.Value, r.Message, tc.want)
			}
		})
	}
}

func TestContainerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		c    config.Check
		want string
	}{
		{"no containers", config.Check{Name: "c", Type: "container"}, `check "c": containers: name at least one container`},
		{"empty name", config.Check{Name: "c", Type: "container", Containers: []string{"a", " "}}, `check "c": containers[1]: empty name`},
		{"bad socket", config.Check{Name: "c", Type: "container", Containers: []string{"a"}, Socket: "ftp://x"}, `check "c": socket: must be unix:///path/docker.sock, /path/docker.sock or tcp://host:port (got "ftp://x")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.c)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"clock skew", -time.Second, "0s ago"},
		{"seconds", 45 * time.Second, "45s ago"},
		{"minutes", 2*time.Minute + 30*time.Second, "2m ago"},
		{"hours", 5 * time.Hour, "5h ago"},
		{"days", 72 * time.Hour, "3d ago"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ago(tc.d); got != tc.want {
				t.Fatalf("ago(%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}
