package testenv

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// TestDockerWebapp builds the webapp image, runs it and talks to it through
// its port published on 127.0.0.1 (never the bridge IP): the endpoints
// other packages' tests rely on.
func TestDockerWebapp(t *testing.T) {
	d := Docker(t)
	ref := d.Image(t, "webapp")
	if !strings.HasPrefix(ref, "backstop-test/webapp:") {
		t.Fatalf("image ref = %q, want backstop-test/webapp:<hash>", ref)
	}
	if again := d.Image(t, "webapp"); again != ref {
		t.Fatalf("second Image call = %q, want the cached %q", again, ref)
	}

	c := d.Run(t, RunOpts{Image: ref, NamePrefix: "backstop-testenv-web-", Env: []string{"READY=fail", "VERSION=v42"}, Ports: []int{3000}})
	if !strings.HasPrefix(c.Name, "backstop-testenv-web-") || len(c.Name) != len("backstop-testenv-web-")+10 {
		t.Fatalf("container name = %q, want backstop-testenv-web-<10 hex>", c.Name)
	}
	// The bridge IP is still read, for handing to other containers; it is
	// never dialled from here.
	if c.IP == "" {
		t.Fatalf("container %s has no bridge IP", c.Name)
	}
	checkPublishedOnLoopback(t, c, 3000)
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

	// Started again, the port is published anew (perhaps on another host
	// port) and URL follows it.
	c.Start(t)
	checkPublishedOnLoopback(t, c, 3000)
	if body := c.WaitHTTP(t, c.URL(3000, "/version")); body != "v42" {
		t.Fatalf("GET /version after restart = %q, want v42", body)
	}
}

// checkPublishedOnLoopback asserts that the engine bound the container's
// port to 127.0.0.1 only, on the host port Container.HostPorts holds, and
// that URL points there.
func checkPublishedOnLoopback(t *testing.T, c *Container, port int) {
	t.Helper()
	hp := c.HostPorts[port]
	if hp == 0 {
		t.Fatalf("HostPorts = %v, want a host port for %d", c.HostPorts, port)
	}
	want := "http://127.0.0.1:" + strconv.Itoa(hp) + "/up"
	if got := c.URL(port, "/up"); got != want {
		t.Fatalf("URL(%d, /up) = %q, want %q", port, got, want)
	}
	in := c.Inspect(t)
	key := network.MustParsePort(strconv.Itoa(port) + "/tcp")
	bindings := in.NetworkSettings.Ports[key]
	if len(bindings) != 1 || bindings[0].HostIP.String() != "127.0.0.1" || bindings[0].HostPort != strconv.Itoa(hp) {
		t.Fatalf("engine bindings for %s = %+v, want exactly 127.0.0.1:%d", key, bindings, hp)
	}
}

// TestDockerUnpublishedPort: a container port not asked for in
// RunOpts.Ports has no host address, and URL says so instead of
// returning an address that would dial the bridge.
func TestDockerUnpublishedPort(t *testing.T) {
	d := Docker(t)
	c := d.Run(t, RunOpts{Image: d.Image(t, "webapp"), NamePrefix: "backstop-testenv-nopub-"})
	if len(c.HostPorts) != 0 {
		t.Fatalf("HostPorts = %v, want none when RunOpts.Ports is empty", c.HostPorts)
	}
	if in := c.Inspect(t); len(in.NetworkSettings.Ports) != 0 {
		for p, b := range in.NetworkSettings.Ports {
			if len(b) > 0 {
				t.Fatalf("engine published %s on %+v, want nothing published", p, b)
			}
		}
	}
	defer func() {
		r := recover()
		want := "container " + c.Name + ": port 3000 is not published on 127.0.0.1: add it to RunOpts.Ports (published: map[])"
		if r != want {
			t.Fatalf("URL(3000) panic = %v, want %q", r, want)
		}
	}()
	c.URL(3000, "/up")
}

func TestDockerPublishedPorts(t *testing.T) {
	p3000 := network.MustParsePort("3000/tcp")
	p5432 := network.MustParsePort("5432/tcp")
	loop := netip.MustParseAddr("127.0.0.1")
	settings := func(m network.PortMap) container.InspectResponse {
		return container.InspectResponse{NetworkSettings: &container.NetworkSettings{Ports: m}}
	}
	tests := []struct {
		name    string
		in      container.InspectResponse
		want    []int
		got     map[int]int
		wantErr string
	}{
		{"nothing wanted", settings(nil), nil, map[int]int{}, ""},
		{"two ports on loopback", settings(network.PortMap{
			p3000: {{HostIP: loop, HostPort: "49153"}},
			p5432: {{HostIP: loop, HostPort: "49154"}},
		}), []int{3000, 5432}, map[int]int{3000: 49153, 5432: 49154}, ""},
		{"not published", settings(network.PortMap{p3000: {{HostIP: loop, HostPort: "49153"}}}), []int{3000, 5432}, map[int]int{3000: 49153}, "port 5432/tcp not published on 127.0.0.1"},
		{"no network settings", container.InspectResponse{}, []int{3000}, map[int]int{}, "port 3000/tcp not published on 127.0.0.1"},
		{"published on all interfaces", settings(network.PortMap{
			p3000: {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "49153"}},
		}), []int{3000}, map[int]int{}, "port 3000/tcp published on 0.0.0.0:49153, want only 127.0.0.1"},
		{"bad host port", settings(network.PortMap{p3000: {{HostIP: loop, HostPort: ""}}}), []int{3000}, map[int]int{}, `port 3000/tcp published on bad host port ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := publishedPorts(tc.in, tc.want)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("publishedPorts error = %v, want %q", err, tc.wantErr)
			}
			if !maps.Equal(got, tc.got) {
				t.Fatalf("publishedPorts = %v, want %v", got, tc.got)
			}
		})
	}
}

func TestDockerCheckLoopbackURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{"published port", "http://127.0.0.1:49153/up", ""},
		{"ipv6 loopback", "http://[::1]:49153/up", ""},
		{"bridge IP", "http://172.17.0.2:3000/up", `URL http://172.17.0.2:3000/up: host "172.17.0.2" is not a loopback address; dial the container through Container.URL (ports published on 127.0.0.1), never its bridge IP`},
		{"empty host from an unset IP", "http://:3000/up", `URL http://:3000/up: host "" is not a loopback address; dial the container through Container.URL (ports published on 127.0.0.1), never its bridge IP`},
		{"name, not an address", "http://localhost:3000/up", `URL http://localhost:3000/up: host "localhost" is not a loopback address; dial the container through Container.URL (ports published on 127.0.0.1), never its bridge IP`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLoopbackURL(tc.url)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("checkLoopbackURL(%q) = %v, want %q", tc.url, err, tc.wantErr)
			}
		})
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
	if err := checkLoopbackURL(url); err != nil {
		t.Fatal(err)
	}
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
