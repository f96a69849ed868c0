package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

const proxyHost = "app.test"

// kamalSetup is a Kamal-like host: the app's exited older containers, the
// running newest one and kamal-proxy pointed at it.
type kamalSetup struct {
	d        *testenv.DockerEnv
	app      string // container prefix and proxy service, unique per test
	v1Image  string // a second tag of the webapp image, only v1 runs from it
	v2Image  string
	proxy    *testenv.Container
	byName   map[string]*testenv.Container
	stateDir string
}

func testRandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newKamalSetup(t *testing.T) *kamalSetup {
	t.Helper()
	d := testenv.Docker(t)
	web := d.Image(t, "webapp")
	s := &kamalSetup{d: d, app: "psyfit-web-" + testRandHex(3), v2Image: web, byName: map[string]*testenv.Container{}, stateDir: t.TempDir()}

	// v1 runs from its own tag of the same image, so the image rule can
	// tell it from v2 by name, as Kamal's registry/app:<version> tags do.
	s.v1Image = "backstop-test/webapp:v1-" + testRandHex(4)
	ctx := t.Context()
	if _, err := d.Client.ImageTag(ctx, client.ImageTagOptions{Source: web, Target: s.v1Image}); err != nil {
		t.Fatalf("tag %s as %s: %v", web, s.v1Image, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := d.Client.ImageRemove(ctx, s.v1Image, client.ImageRemoveOptions{}); err != nil {
			t.Errorf("untag %s: %v", s.v1Image, err)
		}
	})

	health := &testenv.Healthcheck{Cmd: []string{"/webapp", "-healthcheck", "http://127.0.0.1:3000/up"}, Interval: 200 * time.Millisecond}
	run := func(version, image string, cmd []string, h *testenv.Healthcheck) *testenv.Container {
		c := d.Run(t, testenv.RunOpts{Image: image, Name: s.app + "-" + version, Env: []string{"VERSION=" + version}, Cmd: cmd, Health: h})
		s.byName[version] = c
		return c
	}
	// Older versions first (Created orders them), then stopped as Kamal
	// leaves them: v0 listens on the wrong port (the proxy's health check
	// fails), v0h also fails its own healthcheck.
	run("v0", web, []string{"-listen", ":3001"}, nil).Stop(t)
	run("v0h", web, []string{"-listen", ":3001"}, health).Stop(t)
	run("v1", s.v1Image, nil, health).Stop(t)
	v2 := run("v2", web, nil, health)
	v2.WaitHealth(t, "healthy")

	s.proxy = d.Run(t, testenv.RunOpts{
		Image: d.ImageAt(t, "kamalproxy", "/usr/local/bin/kamal-proxy"),
		Name:  "kamal-proxy-" + testRandHex(4),
		Ports: []int{80},
	})
	if code, out := s.exec(t, "kamal-proxy", "deploy", s.app, "--target", v2.IP+":3000", "--host", proxyHost); code != 0 {
		t.Fatalf("point the proxy at v2: exit %d: %s", code, out)
	}
	if got := s.version(t); got != "v2" {
		t.Fatalf("through the proxy before the rollback: version %q, want v2", got)
	}
	return s
}

func (s *kamalSetup) code(timeout time.Duration) *DockerCode {
	return NewDockerCode(s.d.Client, s.app, 3000, ProxyConfig{Container: s.proxy.Name, Host: proxyHost}, s.stateDir, timeout)
}

// exec runs a command in the proxy container; exit code and output.
func (s *kamalSetup) exec(t *testing.T, cmd ...string) (int, string) {
	t.Helper()
	ctx := t.Context()
	ex, err := s.d.Client.ExecCreate(ctx, s.proxy.ID, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	att, err := s.d.Client.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	defer att.Close()
	var out strings.Builder
	stdcopy.StdCopy(&out, &out, att.Reader)
	for {
		in, err := s.d.Client.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			t.Fatalf("exec %v: %v", cmd, err)
		}
		if !in.Running {
			return in.ExitCode, out.String()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// version GETs /version through the proxy's port published on 127.0.0.1.
func (s *kamalSetup) version(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.proxy.URL(80, "/version"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = proxyHost
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /version through the proxy: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.Status + ": " + string(b)
	}
	return string(b)
}

// running lists which of the app's versions run, e.g. "v2".
func (s *kamalSetup) running(t *testing.T) string {
	t.Helper()
	var on []string
	for _, v := range []string{"v0", "v0h", "v1", "v2"} {
		if in := s.byName[v].Inspect(t); in.State != nil && in.State.Status == container.StateRunning {
			on = append(on, v)
		}
	}
	return strings.Join(on, ",")
}

// assertServing checks the proxy serves want and only want runs.
func (s *kamalSetup) assertServing(t *testing.T, when, want string) {
	t.Helper()
	if got := s.version(t); got != want {
		t.Errorf("%s: through the proxy version %q, want %q", when, got, want)
	}
	if got := s.running(t); got != want {
		t.Errorf("%s: running %q, want only %q", when, got, want)
	}
}

func TestDockerCodeRollsBackAndReverts(t *testing.T) {
	s := newKamalSetup(t)
	cases := []struct {
		name string
		app  manifest.App
	}{
		{"image rule", manifest.App{Image: "", Revision: "no-such-version"}}, // Image set below
		{"revision rule", manifest.App{Image: "registry.example/psyfit-web:v1", Revision: "v1"}},
	}
	cases[0].app.Image = s.v1Image
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := manifest.Manifest{ID: "20250101T000000Z-abc123", App: c.app}
			txn := "txn" + string(rune('a'+i))
			code := s.code(30 * time.Second)

			plan, err := code.Plan(t.Context(), m)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			for _, want := range []string{
				"start " + s.app + "-v1 (exited ",
				"switch kamal-proxy " + s.app + " (host app.test) to " + s.app + "-v1:3000, stop " + s.app + "-v2",
			} {
				if !strings.Contains(plan, want) {
					t.Errorf("Plan = %q, want it to contain %q", plan, want)
				}
			}
			s.assertServing(t, "after Plan", "v2")

			if err := code.Apply(t.Context(), m, txn); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			s.assertServing(t, "after Apply", "v1")
			if _, out := s.exec(t, "kamal-proxy", "list"); !strings.Contains(out, s.byName["v1"].Inspect(t).NetworkSettings.Networks["bridge"].IPAddress.String()+":3000") {
				t.Errorf("kamal-proxy list after Apply = %q, want v1's address", out)
			}

			// Another process (probe revert TXN) knows the txn only from the
			// state directory.
			if err := s.code(30*time.Second).Revert(t.Context(), txn); err != nil {
				t.Fatalf("Revert from a fresh DockerCode: %v", err)
			}
			s.assertServing(t, "after Revert", "v2")
			// Idempotent: the in-memory record and the file both say done.
			for _, c := range []*DockerCode{code, s.code(30 * time.Second)} {
				if err := c.Revert(t.Context(), txn); err != nil {
					t.Fatalf("second Revert: %v", err)
				}
			}
			s.assertServing(t, "after a second Revert", "v2")
		})
	}
}

func TestDockerCodeRefusals(t *testing.T) {
	s := newKamalSetup(t)
	cases := []struct {
		name     string
		app      manifest.App
		proxy    string // "" = the setup's
		wantPlan string // "" = Plan succeeds
		wantErr  []string
	}{
		{name: "no container for the revision", app: manifest.App{Image: "registry.example/psyfit-web:v9", Revision: "v9"},
			wantPlan: `no container of image "registry.example/psyfit-web:v9" or named ` + s.app + `-v9 to roll back to`},
		{name: "nothing recorded", app: manifest.App{},
			wantPlan: "snapshot 20250101T000000Z-abc123 records no app image or revision"},
		{name: "proxy container missing", app: manifest.App{Revision: "v1"}, proxy: "no-such-proxy-" + testRandHex(3),
			wantPlan: "proxy container no-such-proxy-"},
		{name: "already running", app: manifest.App{Image: s.v2Image, Revision: "v2"}},
		{name: "proxy deploy fails", app: manifest.App{Revision: "v0"},
			wantErr: []string{
				"kamal-proxy deploy " + s.app + " --target ",
				":3000 in container " + s.proxy.Name + ": exit status 1: Error: target failed to become healthy within configured timeout (3s)",
				"(undone: " + s.app + "-v2 serves again)",
			}},
		{name: "healthcheck never passes", app: manifest.App{Revision: "v0h"},
			wantErr: []string{"container " + s.app + "-v0h not healthy within 3s: running, health ", "(undone: " + s.app + "-v2 serves again)"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := manifest.Manifest{ID: "20250101T000000Z-abc123", App: c.app}
			code := s.code(3 * time.Second)
			if c.proxy != "" {
				code = NewDockerCode(s.d.Client, s.app, 3000, ProxyConfig{Container: c.proxy, Host: proxyHost}, s.stateDir, 3*time.Second)
			}
			txn := "r" + string(rune('a'+i))
			plan, err := code.Plan(t.Context(), m)
			if c.wantPlan != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantPlan) {
					t.Fatalf("Plan = %q, %v; want error containing %q", plan, err, c.wantPlan)
				}
				if err := code.Apply(t.Context(), m, txn); err == nil || !strings.Contains(err.Error(), c.wantPlan) {
					t.Fatalf("Apply error = %v; want %q", err, c.wantPlan)
				}
				s.assertServing(t, "after the refused Apply", "v2")
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			err = code.Apply(t.Context(), m, txn)
			if c.wantErr == nil {
				if err != nil || !strings.Contains(plan, "already runs: code unchanged") {
					t.Fatalf("Plan %q, Apply %v; want nothing to do", plan, err)
				}
			} else {
				if err == nil {
					t.Fatalf("Apply succeeded; want %q", c.wantErr)
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Apply error = %q\nwant it to contain %q", err, w)
					}
				}
			}
			s.assertServing(t, "after Apply", "v2")
			if err := code.Revert(t.Context(), txn); err != nil {
				t.Fatalf("Revert after the failed Apply: %v", err)
			}
			s.assertServing(t, "after Revert", "v2")
		})
	}
}
