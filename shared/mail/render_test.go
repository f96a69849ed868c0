package mail

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backstop/shared/alert"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var jst = time.FixedZone("JST", 9*3600)

func events() map[string]alert.Event {
	since := time.Date(2025, 3, 1, 9, 10, 0, 0, jst)
	base := alert.Event{
		Source: "probe", Host: "psyfit-prod", Check: "web-health", IncidentID: "20250301T001000Z-3fa2c1",
		Since: since,
	}
	down := base
	down.State, down.Summary, down.Value = alert.Down, "HTTP 502", "502"
	down.Detail = "GET http://127.0.0.1:3000/api/v1/health: [STATUS] == 200 failed (502)"
	down.At = since.Add(5 * time.Minute)
	down.DedupKey = "probe:psyfit-prod:web-health:20250301T001000Z-3fa2c1:down:0"

	rem := down
	rem.Kind, rem.At = alert.KindReminder, since.Add(60*time.Minute)
	rem.DedupKey = "probe:psyfit-prod:web-health:20250301T001000Z-3fa2c1:reminder:1"

	up := base
	up.State, up.Summary, up.Value, up.Cause = alert.Up, "HTTP 200", "200", "HTTP 502"
	up.At, up.DowntimeSeconds = since.Add(17*time.Minute), 12*60
	up.DedupKey = "probe:psyfit-prod:web-health:20250301T001000Z-3fa2c1:up:0"

	warn := base
	warn.Check, warn.State, warn.Summary, warn.Value = "tls", alert.Warn, "9 days left", "9d"
	warn.Detail = "psytech.jp:443 certificate expires 2025-03-10 09:00:00 +09:00 (<b>renew</b> & check)"
	warn.IncidentID, warn.At = "20250301T001000Z-77aa01", since.Add(5*time.Minute)
	warn.DedupKey = "probe:psyfit-prod:tls:20250301T001000Z-77aa01:warn:0"

	cleared := warn
	cleared.State, cleared.Kind, cleared.Summary, cleared.Value, cleared.Cause = alert.Up, alert.KindWarnCleared, "89 days left", "89d", "9 days left"
	cleared.Detail, cleared.At = "", since.Add(26*time.Hour)
	cleared.DedupKey = "probe:psyfit-prod:tls:20250301T001000Z-77aa01:warn-cleared:0"

	info := alert.Event{
		Source: "probe", Host: "psyfit-prod", Check: "backup", State: alert.Info,
		Summary: "snapshot 20250301T170000Z-a1b2c3 complete", Detail: "db 120 MB, data 3.4 GB",
		At: time.Date(2025, 3, 2, 2, 0, 0, 0, jst), DedupKey: "probe:psyfit-prod:backup::info:0",
	}
	return map[string]alert.Event{"down": down, "reminder": rem, "up": up, "warn": warn, "warn-cleared": cleared, "info": info}
}

func TestRenderGolden(t *testing.T) {
	for name, ev := range events() {
		for _, loc := range []string{"en", "ja"} {
			t.Run(name+"."+loc, func(t *testing.T) {
				ev.Locale = loc
				m := Render(ev)
				got := "Subject: " + m.Subject + "\n\n===== text/plain\n" + m.Text + "\n===== text/html\n" + m.HTML
				path := filepath.Join("testdata", name+"."+loc+".golden")
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
					t.Errorf("rendering differs from %s (go test -update rewrites it):\n%s", path, got)
				}
			})
		}
	}
}

func TestRenderSubjects(t *testing.T) {
	evs := events()
	cases := []struct {
		name, want string
	}{
		{"down", "[DOWN] psyfit-prod web-health — HTTP 502"},
		{"reminder", "[STILL DOWN] psyfit-prod web-health — HTTP 502 (since 1h)"},
		{"up", "[RECOVERED] psyfit-prod web-health after 17m"},
		{"warn", "[WARN] psyfit-prod tls — 9 days left"},
		{"warn-cleared", "[WARN CLEARED] psyfit-prod tls — 89 days left"},
		{"info", "[INFO] psyfit-prod backup — snapshot 20250301T170000Z-a1b2c3 complete"},
	}
	for _, c := range cases {
		for _, loc := range []string{"en", "ja"} {
			t.Run(c.name+"."+loc, func(t *testing.T) {
				ev := evs[c.name]
				ev.Locale = loc
				if got := Render(ev).Subject; got != c.want {
					t.Errorf("subject %q, want %q", got, c.want)
				}
			})
		}
	}
}

func TestRenderBodies(t *testing.T) {
	evs := events()
	cases := []struct {
		name, loc string
		text      []string // substrings of the text body
	}{
		{"down", "en", []string{"DOWN: web-health on psyfit-prod", "What failed:", "HTTP 502", "Down since:     2025-03-01 09:10:00 +09:00", "Observed value: 502", "20250301T001000Z-3fa2c1"}},
		{"down", "ja", []string{"【障害】web-health（psyfit-prod）", "障害内容", "発生時刻", "2025-03-01 09:10:00 +09:00", "観測値"}},
		{"reminder", "ja", []string{"【障害継続】", "1時間経過"}},
		{"up", "en", []string{"after 17m of downtime", "Downtime:       17m", "What failed:    HTTP 502", "Now:            HTTP 200"}},
		{"up", "ja", []string{"【復旧】", "停止時間は17分でした", "停止時間"}},
		{"warn", "ja", []string{"【警告】tls", "障害ではありません"}},
		{"warn-cleared", "en", []string{"WARNING CLEARED: tls on psyfit-prod", "Warning:        9 days left"}},
		{"info", "ja", []string{"【お知らせ】backup（psyfit-prod）"}},
	}
	for _, c := range cases {
		t.Run(c.name+"."+c.loc, func(t *testing.T) {
			ev := evs[c.name]
			ev.Locale = c.loc
			m := Render(ev)
			for _, s := range c.text {
				if !strings.Contains(m.Text, s) {
					t.Errorf("text body lacks %q:\n%s", s, m.Text)
				}
			}
		})
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	ev := events()["warn"]
	ev.Check = `<script>alert("x")</script>`
	m := Render(ev)
	for _, bad := range []string{"<script>", "<b>renew</b>"} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("HTML body contains unescaped %q", bad)
		}
	}
	if !strings.Contains(m.HTML, "&lt;b&gt;renew&lt;/b&gt; &amp; check") {
		t.Errorf("HTML body lacks the escaped detail:\n%s", m.HTML)
	}
	if !strings.Contains(m.Text, "<b>renew</b> & check") {
		t.Errorf("text body altered the detail:\n%s", m.Text)
	}
}

func TestDuration(t *testing.T) {
	cases := []struct {
		d      time.Duration
		en, ja string
	}{
		{0, "0s", "0秒"},
		{45 * time.Second, "45s", "45秒"},
		{12*time.Minute + 30*time.Second, "12m", "12分"},
		{time.Hour, "1h", "1時間"},
		{65 * time.Minute, "1h5m", "1時間5分"},
		{51 * time.Hour, "2d3h", "2日3時間"},
		{48 * time.Hour, "2d", "2日"},
		{-time.Minute, "0s", "0秒"},
	}
	for _, c := range cases {
		t.Run(c.en, func(t *testing.T) {
			if got := words[en].dur(c.d); got != c.en {
				t.Errorf("en %v: %q, want %q", c.d, got, c.en)
			}
			if got := words[ja].dur(c.d); got != c.ja {
				t.Errorf("ja %v: %q, want %q", c.d, got, c.ja)
			}
		})
	}
}

// The downtime a recovery mail states is recovered-at minus down-since as
// the same mail prints them, whatever DowntimeSeconds the sender computed.
func TestRenderDowntimeAgrees(t *testing.T) {
	ev := events()["up"]
	ev.Since = time.Date(2025, 3, 1, 9, 10, 0, 900e6, jst)
	ev.At = time.Date(2025, 3, 1, 10, 15, 30, 100e6, jst)
	ev.DowntimeSeconds = 60
	for _, c := range []struct{ loc, since, at, down string }{
		{"en", "Down since:     2025-03-01 09:10:00 +09:00", "Recovered at:   2025-03-01 10:15:30 +09:00", "Downtime:       1h5m"},
		{"ja", "2025-03-01 09:10:00 +09:00", "2025-03-01 10:15:30 +09:00", "停止時間は1時間5分でした"},
	} {
		ev.Locale = c.loc
		m := Render(ev)
		for _, want := range []string{c.since, c.at, c.down} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("%s body lacks %q:\n%s", c.loc, want, m.Text)
			}
		}
		if want := "after 1h5m"; !strings.Contains(m.Subject, want) {
			t.Errorf("subject %q lacks %q", m.Subject, want)
		}
	}
}

// A Japanese title does not repeat the word of its 【tag】, and units read
// as Japanese.
func TestRenderJapaneseWording(t *testing.T) {
	for name, ev := range events() {
		ev.Locale = "ja"
		m := Render(ev)
		title, _, _ := strings.Cut(m.Text, "\n")
		tag, rest, ok := strings.Cut(strings.TrimPrefix(title, "【"), "】")
		if !ok {
			t.Fatalf("%s: title %q has no 【tag】", name, title)
		}
		for _, word := range []string{"障害", "復旧", "警告", "解除"} {
			if strings.Contains(tag, word) && strings.Contains(rest, word) {
				t.Errorf("%s: title %q repeats %q", name, title, word)
			}
		}
	}
	ev := events()["warn"]
	ev.Locale = "ja"
	if text := Render(ev).Text; !strings.Contains(text, "観測値") || !strings.Contains(text, " 9日\n") {
		t.Errorf("warn value not in Japanese units:\n%s", text)
	}
}
