package main

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"backstop/shared/alert"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"STATE_BUCKET": "psyfit-backstop", "SENDGRID_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:sendgrid",
		"ALERT_TO": "ops@example.jp, oncall@example.jp", "ALERT_FROM": "noreply@psytech.jp",
	}
	cases := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr []string
	}{
		{"defaults", nil, func(c Config) bool {
			return c.DigestThreshold == 10 && c.DigestWindow == 5*time.Minute && c.DigestWait == 20*time.Second &&
				c.Locale == "en" && c.Location == time.UTC && strings.Join(c.To, "|") == "ops@example.jp|oncall@example.jp"
		}, nil},
		{"overrides", map[string]string{"DIGEST_THRESHOLD": "0", "DIGEST_WINDOW": "10m", "DIGEST_WAIT": "5s", "ALERT_LOCALE": "ja",
			"ALERT_TIMEZONE": "Asia/Tokyo", "S3_PATH_STYLE": "true", "SENDGRID_ENDPOINT": "http://127.0.0.1:9"}, func(c Config) bool {
			return c.DigestThreshold == 0 && c.DigestWindow == 10*time.Minute && c.DigestWait == 5*time.Second && c.Locale == "ja" &&
				c.Location.String() == "Asia/Tokyo" && c.S3PathStyle && c.SendGridEndpoint == "http://127.0.0.1:9"
		}, nil},
		{"missing", map[string]string{"STATE_BUCKET": "", "SENDGRID_SECRET_ARN": "", "ALERT_TO": " , ", "ALERT_FROM": ""}, nil,
			[]string{"STATE_BUCKET: required", "SENDGRID_SECRET_ARN: required", "ALERT_FROM: required", "ALERT_TO: required"}},
		{"invalid", map[string]string{"DIGEST_THRESHOLD": "-1", "DIGEST_WINDOW": "5", "ALERT_LOCALE": "fr", "ALERT_TIMEZONE": "Mars/Olympus", "S3_PATH_STYLE": "yes please"}, nil,
			[]string{`DIGEST_THRESHOLD: "-1"`, `DIGEST_WINDOW: "5" is not a duration`, `ALERT_LOCALE: "fr" is not en or ja`, "ALERT_TIMEZONE: unknown time zone Mars/Olympus", `S3_PATH_STYLE: "yes please"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range c.env {
				env[k] = v
			}
			cfg, err := LoadConfig(func(k string) string { return env[k] })
			for _, w := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to name %q", err, w)
				}
			}
			if c.wantErr == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			if c.check != nil && !c.check(cfg) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

func TestAlarmEvent(t *testing.T) {
	var sns events.SNSEvent
	if err := json.Unmarshal(readTestdata(t, "sns-cloudwatch-alarm.json"), &sns); err != nil {
		t.Fatal(err)
	}
	var base events.CloudWatchAlarmSNSPayload
	if err := json.Unmarshal([]byte(sns.Records[0].SNS.Message), &base); err != nil {
		t.Fatal(err)
	}
	jst := time.FixedZone("JST", 9*3600)
	cases := []struct {
		name      string
		edit      func(*events.CloudWatchAlarmSNSPayload)
		wantState alert.State
		wantErr   string
	}{
		{"alarm is down", func(*events.CloudWatchAlarmSNSPayload) {}, alert.Down, ""},
		{"ok is info", func(a *events.CloudWatchAlarmSNSPayload) { a.NewStateValue, a.OldStateValue = "OK", "ALARM" }, alert.Info, ""},
		{"insufficient data is a warning", func(a *events.CloudWatchAlarmSNSPayload) { a.NewStateValue = "INSUFFICIENT_DATA" }, alert.Warn, ""},
		{"unknown state", func(a *events.CloudWatchAlarmSNSPayload) { a.NewStateValue = "PANIC" }, "", `state "PANIC"`},
		{"bad time", func(a *events.CloudWatchAlarmSNSPayload) { a.StateChangeTime = "yesterday" }, "", `StateChangeTime "yesterday"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := base
			c.edit(&a)
			ev, err := alarmEvent(a, "ja", jst)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v, want a malformed-input error with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.State != c.wantState || ev.Source != SourceCloudWatch || ev.Host != "aws:ap-northeast-1" || ev.Check != "backstop-alert-errors" || ev.Locale != "ja" {
				t.Errorf("event %+v", ev)
			}
			if got := ev.At.Format(time.RFC3339Nano); got != "2025-03-01T09:15:12.345+09:00" {
				t.Errorf("at %s, want the change time in the configured zone", got)
			}
			if want := "cloudwatch:" + a.AlarmARN + ":" + a.NewStateValue + ":2025-03-01T00:15:12.345Z"; ev.DedupKey != want {
				t.Errorf("dedup key %q, want %q", ev.DedupKey, want)
			}
		})
	}
}

func TestIsEventKey(t *testing.T) {
	cases := []struct {
		key  string
		want bool
	}{
		{"psyfit-prod/events/20250301T001500Z-3fa2c1d4e5f6.json", true},
		{"backstop/psyfit-prod/events/20250301T001500Z-3fa2c1d4e5f6.json", true},
		{"uptime/events/20250301T001500Z-psytech-up-down", true},
		{"uptime/events/", false},
		{"psyfit-prod/heartbeat.json", false},
		{"psyfit-prod/events/sub/x.json", false},
		{"psyfit-prod/events/x.txt", false},
		{"events/x.json", false},
		{"alerts/sent/abc.json", false},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			if got := isEventKey(c.key); got != c.want {
				t.Errorf("isEventKey(%q) = %v, want %v", c.key, got, c.want)
			}
		})
	}
}

// The digest mail in each locale, against golden files (go test -update
// rewrites them).
func TestRenderDigestGolden(t *testing.T) {
	jst := time.FixedZone("JST", 9*3600)
	at := time.Date(2025, 3, 1, 9, 15, 0, 0, jst)
	mk := func(check string, state alert.State, summary, detail string, min int) heldEvent {
		return heldEvent{Event: alert.Event{
			Source: "uptime", Host: "psyfit-prod", Check: check, State: state, Summary: summary, Detail: detail,
			At: at.Add(time.Duration(min) * time.Minute), Since: at, DedupKey: check + string(state), DowntimeSeconds: 120,
		}}
	}
	held := []heldEvent{
		mk("api-health", alert.Up, "HTTP 200", "", 3),
		mk("web-up", alert.Down, "HTTP 502", "GET https://psytech.jp/up: [STATUS] (502) == 200", 0),
		mk("tls", alert.Warn, "9 days left", "psytech.jp:443 <expires> & renew", 1),
		mk("api-health", alert.Down, "HTTP 503", "", 1),
	}
	for _, loc := range []string{"en", "ja"} {
		t.Run(loc, func(t *testing.T) {
			hs := append([]heldEvent(nil), held...)
			for i := range hs {
				hs[i].Event.Locale = loc
			}
			m := renderDigest("psyfit-prod", hs, "en", time.UTC)
			if want := "[DIGEST] psyfit-prod — 4 alerts: 2 DOWN, 1 WARN, 1 RECOVERED"; m.Subject != want {
				t.Errorf("subject %q, want %q", m.Subject, want)
			}
			if !strings.Contains(m.HTML, "&lt;expires&gt; &amp; renew") {
				t.Errorf("HTML does not escape the detail:\n%s", m.HTML)
			}
			got := "Subject: " + m.Subject + "\n\n===== text/plain\n" + m.Text + "\n===== text/html\n" + m.HTML
			path := filepath.Join("testdata", "digest."+loc+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("digest differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestNewHandlerNeedsTheLambdaEnvironment(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"complete", map[string]string{"AWS_REGION": "ap-northeast-1", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, ""},
		{"default region", map[string]string{"AWS_DEFAULT_REGION": "ap-northeast-1", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, ""},
		{"no region", map[string]string{"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, "AWS_REGION: not set"},
		{"no credentials", map[string]string{"AWS_REGION": "ap-northeast-1"}, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: not set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := NewHandler(func(k string) string { return c.env[k] }, Config{Bucket: "b", SecretID: "s", DigestThreshold: 10}, nil)
			switch {
			case c.wantErr == "" && (err != nil || h.Bucket != "b" || h.DigestThreshold != 10):
				t.Errorf("handler %+v, error %v", h, err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
		})
	}
}
