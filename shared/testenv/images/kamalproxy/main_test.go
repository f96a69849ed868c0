package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// backend is a loopback server answering /up with up and anything else
// with its name.
func backend(t *testing.T, name string, up int) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/up" {
			w.WriteHeader(up)
			return
		}
		io.WriteString(w, name+" "+r.Host)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func cli(t *testing.T, state string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KAMAL_PROXY_STATE", state)
	var out, errb bytes.Buffer
	code := realMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func get(t *testing.T, proxy, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, proxy+"/version", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET through proxy: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDeploySwitchesAndRefusesUnhealthy(t *testing.T) {
	state := filepath.Join(t.TempDir(), "sub", "state.json")
	proxy := httptest.NewServer(&router{statePath: state})
	t.Cleanup(proxy.Close)
	v1, v2, sick := backend(t, "v1", 200), backend(t, "v2", 200), backend(t, "sick", 503)

	if code, _ := get(t, proxy.URL, "app.test"); code != http.StatusNotFound {
		t.Fatalf("before any deploy: HTTP %d, want 404", code)
	}
	steps := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
		wantBody string // through the proxy with Host app.test afterwards
	}{
		{"first deploy", []string{"deploy", "web", "--target", v1, "--host", "app.test"}, 0, "", "v1 app.test"},
		{"flags before the service", []string{"deploy", "--target=" + v2, "--host=app.test", "web"}, 0, "", "v2 app.test"},
		{"unhealthy target refused", []string{"deploy", "web", "--target", sick, "--host", "app.test", "--deploy-timeout", "200ms", "--health-check-interval", "50ms"}, 1,
			"Error: target failed to become healthy within configured timeout (200ms): GET http://" + sick + "/up: HTTP 503 Service Unavailable", "v2 app.test"},
		{"no target", []string{"deploy", "web"}, 1, `Error: deploy: required flag "target" not set`, "v2 app.test"},
		{"two services", []string{"deploy", "web", "other", "--target", v1}, 1, "Error: deploy: want exactly one service name, got 2 arguments", "v2 app.test"},
	}
	for _, s := range steps {
		code, _, stderr := cli(t, state, s.args...)
		if code != s.wantCode || !strings.Contains(stderr, s.wantErr) {
			t.Fatalf("%s: exit %d, stderr %q; want exit %d, stderr containing %q", s.name, code, stderr, s.wantCode, s.wantErr)
		}
		if code, body := get(t, proxy.URL, "app.test"); code != 200 || body != s.wantBody {
			t.Fatalf("%s: through the proxy HTTP %d %q, want 200 %q", s.name, code, body, s.wantBody)
		}
	}
	if code, _ := get(t, proxy.URL, "other.test"); code != http.StatusNotFound {
		t.Errorf("Host other.test: HTTP %d, want 404 (web serves only app.test)", code)
	}
	_, out, _ := cli(t, state, "list")
	if !strings.Contains(out, "web") || !strings.Contains(out, v2) || strings.Contains(out, v1) {
		t.Errorf("list = %q, want web -> %s", out, v2)
	}
}
