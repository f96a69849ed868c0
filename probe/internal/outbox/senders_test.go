package outbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"backstop/shared/alert"
)

func TestDirSenderWritesMailFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	o := open(t, t.TempDir())
	evs := incident(t, "web-health")
	for _, ev := range evs {
		ev.Locale = "ja"
		if err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	s := DirSender{Dir: dir, From: "noreply@psytech.jp", To: []string{"ops@example.jp", "cto@example.jp"}}
	if rep, err := o.Deliver(context.Background(), s, t0); err != nil || rep.Sent != 2 {
		t.Fatalf("Deliver %+v, %v", rep, err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	down := "20250301T000500Z-web-health-down-" + shortHash(evs[0].DedupKey, 6)
	up := "20250301T001500Z-web-health-up-" + shortHash(evs[1].DedupKey, 6)
	want := []string{down + ".eml", down + ".json", up + ".eml", up + ".json"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	data, _ := os.ReadFile(filepath.Join(dir, want[1]))
	var got alert.Event
	if err := json.Unmarshal(data, &got); err != nil || got.DedupKey != evs[0].DedupKey || got.State != alert.Down || got.Summary != "HTTP 502" {
		t.Errorf("event file %s: %+v, %v", data, got, err)
	}
	eml, _ := os.ReadFile(filepath.Join(dir, want[2]))
	for _, s := range []string{
		"From: noreply@psytech.jp\r\n",
		"To: ops@example.jp, cto@example.jp\r\n",
		"Subject: [RECOVERED] psyfit-prod web-health after 15m\r\n",
		"Date: Sat, 01 Mar 2025 09:15:00 +0900\r\n",
		"X-Backstop-Dedup-Key: " + evs[1].DedupKey + "\r\n",
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n【復旧】web-health（psyfit-prod）は正常に戻りました\r\n",
		"停止時間:       15分\r\n",
	} {
		if !strings.Contains(string(eml), s) {
			t.Errorf(".eml lacks %q:\n%s", s, eml)
		}
	}
}

// Two events of one check and state in the same second (a command's
// "started" and another event) both keep their files.
func TestDirSenderKeepsEventsOfTheSameSecond(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2025, 3, 1, 0, 5, 0, 0, time.UTC)
	for _, key := range []string{"restore:h:restore:a:start", "restore:h:restore:b:start"} {
		ev := alert.Event{Host: "h", Check: "restore", State: alert.Info, At: at, DedupKey: key}
		if err := (DirSender{Dir: dir}).Send(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Fatalf("%d files, want 4 (two events, .json and .eml each)", len(ents))
	}
}

func TestDirSenderNames(t *testing.T) {
	at := time.Date(2025, 3, 1, 0, 5, 0, 0, time.UTC)
	cases := []struct {
		name string
		ev   alert.Event
		want string
	}{
		{"reminder", alert.Event{Check: "web", State: alert.Down, Kind: alert.KindReminder, At: at}, "20250301T000500Z-web-down-reminder"},
		{"odd check name", alert.Event{Check: "../etc/passwd x", State: alert.Warn, At: at}, "20250301T000500Z-.._etc_passwd_x-warn"},
		{"dots only", alert.Event{Check: "..", State: alert.Info, At: at}, "20250301T000500Z-_-info"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.ev.Host, c.ev.DedupKey = "h", "k"
			if err := (DirSender{Dir: dir}).Send(context.Background(), c.ev); err != nil {
				t.Fatal(err)
			}
			for _, ext := range []string{".json", ".eml"} {
				if _, err := os.Stat(filepath.Join(dir, c.want+"-"+shortHash("k", 6)+ext)); err != nil {
					t.Errorf("%v", err)
				}
			}
		})
	}
}

func TestStoreSenderKeys(t *testing.T) {
	root := t.TempDir()
	ev := incident(t, "web-health")[0]
	cases := []struct {
		name, prefix, want string
	}{
		{"no prefix", "", "psyfit-prod/events/20250301T000500Z-" + shortHash(ev.DedupKey, 12) + ".json"},
		{"prefix", "backstop", "backstop/psyfit-prod/events/20250301T000500Z-" + shortHash(ev.DedupKey, 12) + ".json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := StoreSender{Store: DirStore{Root: root}, Prefix: c.prefix}
			if got := EventKey(c.prefix, ev); got != c.want {
				t.Errorf("key %s, want %s", got, c.want)
			}
			for range 2 { // a retry rewrites the same object
				if err := s.Send(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(c.want)))
			if err != nil {
				t.Fatal(err)
			}
			var got alert.Event
			if err := json.Unmarshal(data, &got); err != nil || !reflect.DeepEqual(got.DedupKey, ev.DedupKey) || !got.At.Equal(ev.At) {
				t.Errorf("stored %s: %v", data, err)
			}
			ents, _ := os.ReadDir(filepath.Dir(filepath.Join(root, filepath.FromSlash(c.want))))
			if len(ents) != 1 {
				t.Errorf("events dir holds %d files, want 1", len(ents))
			}
		})
	}
}

func TestDirStoreRefusesKeysOutsideRoot(t *testing.T) {
	root := t.TempDir()
	for _, key := range []string{"../x.json", "/etc/x.json", "a/../../x.json", ""} {
		err := DirStore{Root: root}.Put(context.Background(), key, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "key leaves the store") {
			t.Errorf("Put(%q): %v, want refused", key, err)
		}
	}
}

func TestStoreSenderWithoutHostIsPermanent(t *testing.T) {
	o := open(t, t.TempDir())
	ev := incident(t, "web-health")[0]
	ev.Host = ""
	if err := o.Enqueue(ev); err != nil {
		t.Fatal(err)
	}
	rep, err := o.Deliver(context.Background(), StoreSender{Store: DirStore{Root: t.TempDir()}}, t0)
	if err != nil || rep.FailedPermanent != 1 || rep.Pending != 1 || !strings.Contains(rep.Errors[0].Error(), "no host") {
		t.Errorf("report %+v, %v; want a kept permanent failure naming the missing host", rep, err)
	}
}
