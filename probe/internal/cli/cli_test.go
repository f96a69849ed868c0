package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backstop/shared/mail/sendgridtest"
	"backstop/shared/testenv"
)

// run calls Main as the binary would and returns exit code, stdout, stderr.
func run(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, args, IO{Stdout: &out, Stderr: &errb, Env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// server answers 200 {"status":"ok"} on /ok and 502 on /bad.
func server(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCheckExitCodes(t *testing.T) {
	url := server(t)
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`
host: test-host
state_dir: %s
checks:
  - {name: web, type: http, url: "%s/ok", conditions: ["[STATUS] == 200", "[BODY].status == ok"]}
  - {name: broken, type: http, url: "%s/bad"}
  - {name: full, type: disk, paths: [%s], warn: 1, critical: 100}
  - {name: engine, type: container, containers: [psyfit-web], socket: "unix://%s/no.sock"}
`, dir, url, url, dir, dir))
	cases := []struct {
		name   string
		only   string
		code   int
		status string
	}{
		{"all ok", "web", 0, "OK"},
		{"a warning", "web,full", 1, "WARN"},
		{"a critical", "web,broken", 2, "CRITICAL"},
		{"unknown", "web,engine", 3, "UNKNOWN"},
		{"critical beats unknown", "", 2, "CRITICAL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"--config", cfg, "check"}
			if c.only != "" {
				args = append(args, "--only", c.only)
			}
			code, out, errOut := run(t, context.Background(), nil, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			if !strings.Contains(out, "test-host: "+c.status) {
				t.Errorf("summary line missing %q:\n%s", c.status, out)
			}
			if !strings.HasPrefix(out, "NAME") {
				t.Errorf("no table header:\n%s", out)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	url := server(t)
	cfg := writeConfig(t, fmt.Sprintf(`
host: test-host
checks:
  - {name: web, type: http, url: "%s/ok"}
  - {name: broken, type: http, url: "%s/bad"}
`, url, url))
	code, out, _ := run(t, context.Background(), nil, "--config", cfg, "check", "--json")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	var rep struct {
		Host     string `json:"host"`
		Status   string `json:"status"`
		ExitCode int    `json:"exit_code"`
		Checks   []struct {
			Name      string         `json:"name"`
			Status    string         `json:"status"`
			Message   string         `json:"message"`
			LatencyMS *float64       `json:"latency_ms"`
			Observed  map[string]any `json:"observed"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Host != "test-host" || rep.Status != "critical" || rep.ExitCode != 2 || len(rep.Checks) != 2 {
		t.Fatalf("report = %+v", rep)
	}
	if rep.Checks[0].Status != "ok" || rep.Checks[1].Status != "critical" || !strings.Contains(rep.Checks[1].Message, "502") {
		t.Errorf("checks = %+v", rep.Checks)
	}
	if rep.Checks[0].LatencyMS == nil || rep.Checks[0].Observed["status"] == nil {
		t.Errorf("latency_ms or observed missing: %+v", rep.Checks[0])
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	good := writeConfig(t, "host: h\nchecks:\n  - {name: d, type: disk, paths: [/]}\n")
	bad := writeConfig(t, "host: h\nchecks:\n  - {name: d, type: disk, paths: [/], warn: 150}\n  - {name: w, type: http, ulr: x}\n")
	badCond := writeConfig(t, "host: h\nchecks:\n  - {name: w, type: http, url: 'http://127.0.0.1:1/', conditions: ['[STATUS] = 200']}\n")
	openListen := writeConfig(t, "host: h\nlisten: 0.0.0.0:9187\nchecks:\n  - {name: d, type: disk, paths: [/]}\n")
	cases := []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		stdout   string
		envBadTZ bool
	}{
		{"no command", nil, ExitUsage, []string{"Usage:"}, "", false},
		{"unknown command", []string{"frobnicate"}, ExitUsage, []string{`unknown command "frobnicate"`}, "", false},
		{"--version", []string{"--version"}, ExitOK, nil, "probe dev", false},
		{"version", []string{"version"}, ExitOK, nil, "probe dev", false},
		{"help is true", []string{"--help"}, ExitOK, nil, "probe [--config FILE] check", false},
		{"config check ok", []string{"--config", good, "config", "check"}, ExitOK, nil, "ok (host h, 1 checks", false},
		{"config check names fields", []string{"--config", bad, "config", "check"}, ExitError,
			[]string{"checks[0].warn: must be 1..100", `checks[1].ulr: unknown key (did you mean "url"?)`}, "", false},
		{"config check warns of an open listener", []string{"--config", openListen, "config", "check"}, ExitOK,
			[]string{"warning: listen: 0.0.0.0:9187 is not a loopback address"}, "ok (host h", false},
		{"config check parses conditions", []string{"--config", badCond, "config", "check"}, ExitError,
			[]string{"checks[0]", "conditions[0]", `unknown operator "="`}, "", false},
		{"check with a bad config is unknown", []string{"--config", bad, "check"}, 3, []string{"checks[0].warn"}, "", false},
		{"check with a bad flag is unknown", []string{"--config", good, "check", "--jsn"}, 3, []string{"flag provided but not defined: -jsn"}, "", false},
		{"--only an unknown name", []string{"--config", good, "check", "--only", "nope"}, 3, []string{`--only: no check named "nope" (have d)`}, "", false},
		{"missing config file", []string{"--config", "/nonexistent/probe.yaml", "config", "check"}, ExitError, []string{"/nonexistent/probe.yaml", "no such file"}, "", false},
		{"config subcommand", []string{"--config", good, "config", "show"}, ExitUsage, []string{"only subcommand is 'check'"}, "", false},
		{"run with a bad config", []string{"--config", bad, "run"}, ExitError, []string{"checks[0].warn"}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, context.Background(), nil, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			for _, s := range c.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if !strings.Contains(out, c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, out)
			}
		})
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	cfg := writeConfig(t, "host: from-env\nchecks:\n  - {name: d, type: disk, paths: [/]}\n")
	code, out, errOut := run(t, context.Background(), map[string]string{"BACKSTOP_CONFIG": cfg}, "config", "check")
	if code != 0 || !strings.Contains(out, "host from-env") {
		t.Fatalf("BACKSTOP_CONFIG not used: %d %s %s", code, out, errOut)
	}
}

// TestSecretsNeverReachOutput runs probe check --json and probe run with
// every kind of secret failing, then looks for each secret in all output.
func TestSecretsNeverReachOutput(t *testing.T) {
	const (
		dbPW      = "db-pw-93a1c0"
		redisPW   = "redis-pw-77f2e4"
		headerTok = "Bearer hdr-tok-51d8aa"
		urlPW     = "url-pw-0c3e9b"
		sgKey     = "SG.live-key-4b7e21"
	)
	pg := testenv.Postgres(t)
	rd := testenv.Redis(t, "the-right-one")
	sg := sendgridtest.New(t, sgKey)
	badDSN := strings.Replace(pg.DSN("postgres"), ":"+pg.Password+"@", ":"+dbPW+"@", 1)
	dir := t.TempDir()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	t.Cleanup(srv.Close)
	withUser := strings.Replace(srv.URL, "http://", "http://admin:"+urlPW+"@", 1)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, fmt.Sprintf(`
host: test-host
state_dir: %s
listen: %s
checks:
  - {name: db, type: postgres, dsn: "${DATABASE_URL}", interval: 1s, timeout: 1s}
  - {name: cache, type: redis, address: "%s", password: "${REDIS_PASSWORD}", interval: 1s, timeout: 1s}
  - {name: api, type: http, url: "%s/x", headers: {Authorization: "${API_TOKEN}"}, interval: 1s, timeout: 1s}
alerts: {via: sendgrid, to: [ops@example.jp], from: probe@example.jp, sendgrid_endpoint: "%s", failure_threshold: 1}
`, dir, listen, rd.Addr, withUser, sg.URL))
	env := map[string]string{"DATABASE_URL": badDSN, "REDIS_PASSWORD": redisPW, "API_TOKEN": headerTok, "SENDGRID_API_KEY": sgKey}

	code, out, errOut := run(t, context.Background(), env, "--config", cfg, "check", "--json")
	if code != 2 {
		t.Fatalf("check exit %d, want 2 (all three failing)\n%s%s", code, out, errOut)
	}
	all := out + errOut

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runCode int
	var runOut, runErr string
	go func() {
		runCode, runOut, runErr = run(t, ctx, env, "--config", cfg, "run", "--debug")
		close(done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(sg.Accepted()) < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	if runCode != 0 {
		t.Errorf("run exit %d: %s", runCode, runErr)
	}
	mails := sg.Accepted()
	if len(mails) != 3 {
		t.Fatalf("SendGrid stand-in accepted %d mails, want 3 [DOWN] (one per check)", len(mails))
	}
	all += runOut + runErr
	for _, m := range mails {
		all += m.Subject + m.Text + m.HTML
	}
	state, _ := os.ReadFile(filepath.Join(dir, "alert-state.json"))
	all += string(state)
	for _, secret := range []string{dbPW, redisPW, "hdr-tok-51d8aa", urlPW, sgKey} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q reached the output", secret)
		}
	}
	for _, cause := range []string{"password authentication failed", "authentication failed", "401"} {
		if !strings.Contains(all, cause) {
			t.Errorf("output lacks the cause %q", cause)
		}
	}
}
