package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseTargetsSeed(t *testing.T) {
	data, err := os.ReadFile("testdata/targets.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseTargets(data)
	if err != nil {
		t.Fatalf("seed targets: %v", err)
	}
	if len(cfg.Targets) != 3 {
		t.Fatalf("targets: got %d, want 3", len(cfg.Targets))
	}
	up, health, cert := cfg.Targets[0], cfg.Targets[1], cfg.Targets[2]
	if up.Kind != KindHTTP || up.Method != "GET" || up.timeout != 10*time.Second || up.FailureThreshold != 2 || up.SuccessThreshold != 2 {
		t.Errorf("up target defaults: %+v", up)
	}
	if up.Locale != "ja" || len(up.To) != 1 || up.To[0] != "ops@example.jp" {
		t.Errorf("up target inherits locale and recipients: locale %q to %v", up.Locale, up.To)
	}
	if len(health.conds) != 2 || health.conds[1].String() != "[BODY].status == ok" {
		t.Errorf("health conditions: %v", health.Conditions)
	}
	if cert.Kind != KindCertificate || cert.addr != "psytech.jp:443" || cert.host != "psytech.jp" {
		t.Errorf("certificate target: kind %q addr %q host %q", cert.Kind, cert.addr, cert.host)
	}
	if cfg.reminder != time.Hour {
		t.Errorf("reminder: %v", cfg.reminder)
	}
}

func TestParseTargetsDefaults(t *testing.T) {
	cfg, err := ParseTargets([]byte(`[{"name":"a","url":"http://127.0.0.1:1/"},{"name":"c","kind":"certificate","url":"https://example.jp:8443/x"}]`))
	if err != nil {
		t.Fatal(err)
	}
	a, c := cfg.Targets[0], cfg.Targets[1]
	if got := a.Conditions; len(got) != 1 || got[0] != DefaultHTTPCondition {
		t.Errorf("http default conditions: %v", got)
	}
	if got := c.Conditions; len(got) != 1 || got[0] != DefaultCertCondition {
		t.Errorf("certificate default conditions: %v", got)
	}
	if a.Locale != "en" || c.addr != "example.jp:8443" {
		t.Errorf("locale %q, certificate address %q", a.Locale, c.addr)
	}
}

func TestParseTargetsErrors(t *testing.T) {
	ok := `{"name":"web","url":"https://example.jp/up"}`
	cases := []struct {
		name string
		doc  string
		want []string // every one must appear
	}{
		{"empty document", ``, []string{"targets: document is empty"}},
		{"no targets", `{"targets":[]}`, []string{"targets: none configured"}},
		{"not json", `{"targets":`, []string{"document: not a JSON targets object"}},
		{"unknown document field", `{"targetz":[]}`, []string{`document: not a JSON targets object: unknown field "targetz"`}},
		{"unknown target field", `[` + ok + `,{"name":"x","url":"https://a/","urll":"x"}]`, []string{`targets[1]: unknown field "urll"`}},
		{"wrong type", `[{"name":"x","url":"https://a/","failure_threshold":"2"}]`, []string{"targets[0]: failure_threshold: want int, got JSON string"}},
		{"ftp url", `[` + ok + `,` + ok[:1] + `"name":"b","url":"ftp://x/"}]`, []string{"targets[1].url: must be an http:// or https:// URL"}},
		{"url with password not echoed", `[{"name":"x","url":"ftp://u:hunter2@x/"}]`, []string{"targets[0].url: must be an http:// or https:// URL"}},
		{"missing url and name", `[{}]`, []string{"targets[0].name: required", "targets[0].url: required"}},
		{"duplicate name", `[` + ok + `,` + ok + `]`, []string{`targets[1].name: "web" is also the name of targets[0]`}},
		{"bad kind", `[{"name":"x","kind":"tcp","url":"https://a/"}]`, []string{`targets[0].kind: must be http or certificate, not "tcp"`}},
		{"certificate over http", `[{"name":"x","kind":"certificate","url":"http://a/"}]`, []string{"targets[0].url: a certificate target needs an https:// URL"}},
		{"certificate with headers", `[{"name":"x","kind":"certificate","url":"https://a/","headers":{"X":"1"}}]`, []string{"targets[0].kind: a certificate target sends no request"}},
		{"bad method", `[{"name":"x","url":"https://a/","method":"GE T"}]`, []string{`targets[0].method: "GE T" is not an HTTP method`}},
		{"bad header", `[{"name":"x","url":"https://a/","headers":{"X Y":"1"}}]`, []string{`targets[0].headers: "X Y" is not a header name`}},
		{"bad timeout", `[{"name":"x","url":"https://a/","timeout":"soon"}]`, []string{`targets[0].timeout: not a duration (like 5s, 500ms): "soon"`}},
		{"timeout too long", `[{"name":"x","url":"https://a/","timeout":"1h"}]`, []string{"targets[0].timeout: must be more than 0 and at most 5m0s, not 1h0m0s"}},
		{"bad condition", `[{"name":"x","url":"https://a/","conditions":["[STATUS] == 200","[STATUS] = 200"]}]`, []string{"targets[0].conditions[1]: invalid condition"}},
		{"bad threshold", `[{"name":"x","url":"https://a/","failure_threshold":-1,"success_threshold":101}]`, []string{"targets[0].failure_threshold: must be 1..100, not -1", "targets[0].success_threshold: must be 1..100, not 101"}},
		{"bad recipient", `[{"name":"x","url":"https://a/","to":["ops@"]}]`, []string{`targets[0].to[0]: "ops@" is not an e-mail address`}},
		{"bad target locale", `[{"name":"x","url":"https://a/","locale":"fr"}]`, []string{`targets[0].locale: must be ja or en, not "fr"`}},
		{"bad document fields", `{"locale":"de","to":["x"],"reminder":"often","targets":[` + ok + `]}`, []string{`locale: must be ja or en, not "de"`, `to[0]: "x" is not an e-mail address`, `reminder: not a duration (like 30m, 1h) or never: "often"`}},
		{"third target", `[` + ok + `,{"name":"b","url":"https://b/"},{"name":"c","url":"mailto:x@y"}]`, []string{"targets[2].url: must be an http:// or https:// URL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseTargets([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			if !errors.Is(err, ErrInvalidTargets) {
				t.Errorf("errors.Is(err, ErrInvalidTargets) is false for %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the URL's password: %v", err)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config, e envSettings)
	}{
		{"inline targets", map[string]string{"STATE_BUCKET": "b", "TARGETS": `[{"name":"a","url":"https://a/"}]`, "RETRY_PAUSE": "0s", "S3_PATH_STYLE": "true", "CONCURRENCY": "8"}, "",
			func(t *testing.T, c Config, e envSettings) {
				if string(c.TargetsInline) == "" || c.RetryPause >= 0 || !e.PathStyle || c.Concurrency != 8 {
					t.Errorf("got %+v %+v", c, e)
				}
			}},
		{"targets object defaults to the state bucket", map[string]string{"STATE_BUCKET": "b", "TARGETS_KEY": "uptime/targets.json", "INTERVAL": "5m"}, "",
			func(t *testing.T, c Config, e envSettings) {
				if c.TargetsBucket != "b" || c.TargetsKey != "uptime/targets.json" || c.Interval != 5*time.Minute {
					t.Errorf("got %+v", c)
				}
			}},
		{"no state bucket", map[string]string{"TARGETS_KEY": "k"}, "STATE_BUCKET: required", nil},
		{"no targets", map[string]string{"STATE_BUCKET": "b"}, "TARGETS or TARGETS_KEY: one is required", nil},
		{"both targets", map[string]string{"STATE_BUCKET": "b", "TARGETS": "[]", "TARGETS_KEY": "k"}, "TARGETS and TARGETS_KEY: set one, not both", nil},
		{"bad concurrency", map[string]string{"STATE_BUCKET": "b", "TARGETS_KEY": "k", "CONCURRENCY": "0"}, `CONCURRENCY: must be 1..1024, not "0"`, nil},
		{"bad pause", map[string]string{"STATE_BUCKET": "b", "TARGETS_KEY": "k", "RETRY_PAUSE": "2"}, `RETRY_PAUSE: not a duration (like 2s, 1m): "2"`, nil},
		{"bad path style", map[string]string{"STATE_BUCKET": "b", "TARGETS_KEY": "k", "S3_PATH_STYLE": "yes please"}, `S3_PATH_STYLE: want true or false, not "yes please"`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, e, err := configFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c, e)
		})
	}
}
