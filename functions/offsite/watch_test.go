package main

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/alert"
)

// events reads every event object under offsite/events/, by key.
func (r *rig) events(t *testing.T) map[string]alert.Event {
	t.Helper()
	out, err := r.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(r.srv.Bucket), Prefix: aws.String(EventsPrefix)})
	if err != nil {
		t.Fatal(err)
	}
	evs := map[string]alert.Event{}
	for _, o := range out.Contents {
		var ev alert.Event
		if _, _, err := getJSON(context.Background(), r.s3, r.srv.Bucket, aws.ToString(o.Key), "", &ev); err != nil {
			t.Fatal(err)
		}
		evs[aws.ToString(o.Key)] = ev
	}
	return evs
}

func (r *rig) putHeartbeat(t *testing.T, host string) {
	t.Helper()
	if _, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(r.srv.Bucket), Key: aws.String(host + "/" + HeartbeatFile), Body: strings.NewReader(`{"at":"now"}`),
	}); err != nil {
		t.Fatal(err)
	}
}

// newEvents returns the events not in seen (and adds them), as
// "host check state" lines, sorted.
func newEvents(t *testing.T, r *rig, seen map[string]bool) ([]string, []alert.Event) {
	t.Helper()
	var lines []string
	var evs []alert.Event
	for key, ev := range r.events(t) {
		if seen[key] {
			continue
		}
		seen[key] = true
		if ev.Source != "offsite" || ev.DedupKey == "" || ev.At.IsZero() || ev.Locale != "en" {
			t.Errorf("event %s: %+v: want source offsite, a dedup key, a time, locale en", key, ev)
		}
		lines = append(lines, ev.Host+" "+ev.Check+" "+string(ev.State))
		evs = append(evs, ev)
	}
	sort.Strings(lines)
	return lines, evs
}

func TestDeadMansSwitch(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	cfg := r.config("psyfit-prod", "psyfit-gone")
	cfg.MaxHeartbeatAge = 3 * time.Second
	h := r.handler(t, cfg)
	scheduled := readTestdata(t, "scheduled-event.json")
	seen := map[string]bool{}
	step := func(name string, want ...string) []alert.Event {
		t.Helper()
		res, err := h.Handle(ctx, scheduled)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, evs := newEvents(t, r, seen)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: new events\n%s\nwant\n%s\n(reports %+v)", name, strings.Join(got, "\n"), strings.Join(want, "\n"), res.Watched)
		}
		return evs
	}

	// The last snapshot that reached the vault is 27 h old; the probe is alive.
	old := r.putSnapshot(t, "psyfit-prod", time.Now().Add(-27*time.Hour), 10<<10, 10<<10)
	invoke(t, h, r.s3Notification(old))
	r.putHeartbeat(t, "psyfit-prod")

	evs := step("no snapshot for 26 h",
		"psyfit-gone heartbeat down", "psyfit-gone vault-snapshot down", "psyfit-prod vault-snapshot down")
	for _, ev := range evs {
		if ev.Host == "psyfit-prod" && (!strings.Contains(ev.Summary, "newest vaulted snapshot is 27h0m0s old (limit 26h0m0s)") || !strings.Contains(ev.Detail, old.ID)) {
			t.Errorf("snapshot alert: summary %q, detail %q", ev.Summary, ev.Detail)
		}
		if ev.Host == "psyfit-gone" && ev.Check == CheckSnapshot && ev.Summary != "no snapshot in the vault" {
			t.Errorf("host without a catalog: summary %q", ev.Summary)
		}
	}
	step("the same, again: alerted once")

	time.Sleep(cfg.MaxHeartbeatAge + 1500*time.Millisecond) // the heartbeat goes stale
	evs = step("heartbeat stale", "psyfit-prod heartbeat down")
	if len(evs) == 1 && !strings.Contains(evs[0].Summary, "old (limit 3s)") {
		t.Errorf("heartbeat alert summary %q", evs[0].Summary)
	}
	step("still stale: alerted once")

	// Both back: a new snapshot is vaulted and the probe writes its heartbeat.
	fresh := r.putSnapshot(t, "psyfit-prod", time.Now(), 10<<10, 10<<10)
	invoke(t, h, r.eventBridge(fresh))
	r.putHeartbeat(t, "psyfit-prod")
	evs = step("both back", "psyfit-prod heartbeat up", "psyfit-prod vault-snapshot up")
	for _, ev := range evs {
		if !strings.Contains(ev.Cause, "old (limit") || ev.Since.IsZero() {
			t.Errorf("resolved event %s: cause %q, since %v: want what had failed and since when", ev.Check, ev.Cause, ev.Since)
		}
	}
	step("still fine: nothing")

	var st State
	if _, _, err := getJSON(ctx, r.s3, r.srv.Bucket, StateKey, "", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Outbox) != 0 || st.Hosts["psyfit-prod"].Level(CheckSnapshot) != alert.LevelOK || st.Hosts["psyfit-gone"].Level(CheckHeartbeat) != alert.LevelDown {
		t.Errorf("state: outbox %d, psyfit-prod snapshot %s, psyfit-gone heartbeat %s", len(st.Outbox),
			st.Hosts["psyfit-prod"].Level(CheckSnapshot), st.Hosts["psyfit-gone"].Level(CheckHeartbeat))
	}
	for key := range seen {
		if !strings.HasPrefix(key, EventsPrefix) || !strings.HasSuffix(key, ".json") {
			t.Errorf("event key %s: want %s<time>-<hash>.json", key, EventsPrefix)
		}
	}
}
