package testenv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestDockerWebapp builds the webapp image, runs it and talks to it over
// the bridge network: the endpoints other packages' tests rely on.
func TestDockerWebapp(t *testing.T) {
	d := Docker(t)
	ref := d.Image(t, "webapp")
	if !strings.HasPrefix(ref, "backstop-test/webapp:") {
		t.Fatalf("image ref = %q, want backstop-test/webapp:<hash>", ref)
	}
	if again := d.Image(t, "webapp"); again != ref {
		t.Fatalf("second Image call = %q, want the cached %q", again, ref)
	}

	c := d.Run(t, RunOpts{Image: ref, NamePrefix: "backstop-testenv-web-", Env: []string{"READY=fail", "VERSION=v42"}})
	if !strings.HasPrefix(c.Name, "backstop-testenv-web-") || len(c.Name) != len("backstop-testenv-web-")+10 {
		t.Fatalf("container name = %q, want backstop-testenv-web-<10 hex>", c.Name)
	}
	if c.IP == "" {
		t.Fatalf("container %s has no bridge IP", c.Name)
	}
	if body := c.WaitHTTP(t, c.URL(3000, "/up")); body != "OK" {
		t.Fatalf("GET /up body = %q, want OK", body)
	}

	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"health ok", "/api/v1/health", 200, `{"status":"ok"}`},
		{"ready fails on READY=fail", "/readyz", 503, "not ready"},
		{"version from env", "/version", 200, "v42"},
		{"unknown path", "/nope", 404, "404 page not found\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, c.URL(3000, tc.path))
			if status != tc.wantStatus || body != tc.wantBody {
				t.Fatalf("GET %s = %d %q, want %d %q", tc.path, status, body, tc.wantStatus, tc.wantBody)
			}
		})
	}

	c.Stop(t)
	in := c.Inspect(t)
	if in.State.Status != container.StateExited || in.State.ExitCode != 0 {
		t.Fatalf("after Stop: state %s exit code %d, want exited 0 (webapp stops cleanly on SIGTERM)", in.State.Status, in.State.ExitCode)
	}
}

// TestDockerHealthcheck runs webapp as its own healthcheck: healthy with
// the default env, unhealthy with HEALTH=fail and the probe's output in the
// engine's health log.
func TestDockerHealthcheck(t *testing.T) {
	d := Docker(t)
	ref := d.Image(t, "webapp")
	tests := []struct {
		name       string
		env        []string
		wantHealth string
		wantOutput string
	}{
		{"healthy", nil, "healthy", "GET http://127.0.0.1:3000/api/v1/health: 200 OK"},
		{"unhealthy", []string{"HEALTH=fail"}, "unhealthy", "GET http://127.0.0.1:3000/api/v1/health: 503 Service Unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := d.Run(t, RunOpts{
				Image:      ref,
				NamePrefix: "backstop-testenv-hc-",
				Env:        tc.env,
				Health:     &Healthcheck{Cmd: []string{"/webapp", "-healthcheck", "http://127.0.0.1:3000/api/v1/health"}, Interval: 200 * time.Millisecond, Retries: 2},
			})
			in := c.WaitHealth(t, tc.wantHealth)
			log := in.State.Health.Log
			if got := strings.TrimSpace(log[len(log)-1].Output); got != tc.wantOutput {
				t.Fatalf("last health output = %q, want %q", got, tc.wantOutput)
			}
		})
	}
}

// TestDockerExiter checks the exit code and restart-loop behaviour tests of
// the container check rely on.
func TestDockerExiter(t *testing.T) {
	d := Docker(t)
	ref := d.Image(t, "exiter")

	t.Run("exits with code", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, RunOpts{Image: ref, NamePrefix: "backstop-testenv-exit-", Cmd: []string{"-code", "3", "-after", "100ms"}})
		if code := c.WaitExited(t); code != 3 {
			t.Fatalf("exit code = %d, want 3", code)
		}
		if logs := c.Logs(t); logs != "exiter: exiting with code 3 after 100ms\n" {
			t.Fatalf("logs = %q", logs)
		}
	})
	t.Run("restart always loops", func(t *testing.T) {
		t.Parallel()
		c := d.Run(t, RunOpts{Image: ref, NamePrefix: "backstop-testenv-loop-", Cmd: []string{"-code", "1"}, Restart: "always"})
		c.WaitRestarts(t, 2)
	})
}

func TestDockerImageUnknown(t *testing.T) {
	if _, err := imageSourceDir("no-such-image"); err == nil || !strings.Contains(err.Error(), "no program for it") {
		t.Fatalf("imageSourceDir(no-such-image) error = %v, want no program for it", err)
	}
	if _, err := imageSourceDir("../webapp"); err == nil || !strings.Contains(err.Error(), `bad image name "../webapp"`) {
		t.Fatalf("imageSourceDir(../webapp) error = %v, want bad image name", err)
	}
}

func TestSourceHashChangesWithSource(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		t.Helper()
		if err := writeFile(dir+"/main.go", s); err != nil {
			t.Fatal(err)
		}
		h, err := sourceHash(dir)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := write("package main\n")
	b := write("package main\n\nfunc main() {}\n")
	if a == b || len(a) != 12 {
		t.Fatalf("hashes %q and %q: want 12 hex digits that differ when the source changes", a, b)
	}
	if again := write("package main\n"); again != a {
		t.Fatalf("hash of the same source = %q, want %q", again, a)
	}
}

func TestDemuxLogs(t *testing.T) {
	frame := func(stream byte, s string) []byte {
		return append([]byte{stream, 0, 0, 0, 0, 0, 0, byte(len(s))}, s...)
	}
	raw := append(frame(1, "out\n"), frame(2, "err\n")...)
	if got := demuxLogs(raw); got != "out\nerr\n" {
		t.Fatalf("demuxLogs = %q, want %q", got, "out\nerr\n")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && !json.Valid(b) {
		t.Fatalf("GET %s: invalid JSON %q", url, b)
	}
	return resp.StatusCode, string(b)
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
