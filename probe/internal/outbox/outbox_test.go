package outbox

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"backstop/shared/alert"
	"backstop/shared/mail"
	"backstop/shared/mail/sendgridtest"
)

const key = "SG.outbox-test-key"

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

// incident returns the events of a real incident of check, as the tracker
// produces them: down, then up.
func incident(t *testing.T, check string) []alert.Event {
	t.Helper()
	tr := alert.NewTracker("probe", "psyfit-prod", "en")
	var evs []alert.Event
	for i, lv := range []alert.Level{alert.LevelDown, alert.LevelDown, alert.LevelOK, alert.LevelOK} {
		evs = append(evs, tr.Observe(alert.Policy{}, alert.Observation{
			Check: check, Level: lv, Summary: map[alert.Level]string{alert.LevelDown: "HTTP 502", alert.LevelOK: "HTTP 200"}[lv],
			At: t0.Add(time.Duration(i) * 5 * time.Minute),
		})...)
	}
	if len(evs) != 2 {
		t.Fatalf("tracker gave %d events, want down and up", len(evs))
	}
	return evs
}

// mailer is a MailSender over a real SendGrid client pointed at the
// stand-in, one attempt per Send so the outbox does the retrying.
func mailer(url string) MailSender {
	return MailSender{Mailer: &mail.SendGrid{
		APIKey: key, From: "noreply@psytech.jp", To: []string{"ops@example.jp"},
		Endpoint: url, HTTPClient: &http.Client{Timeout: 10 * time.Second}, MaxAttempts: 1,
	}}
}

func open(t *testing.T, dir string) *Outbox {
	t.Helper()
	o, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func subjects(ms []sendgridtest.Mail) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Subject)
	}
	return out
}

func TestDeliverRetriesUntilAccepted(t *testing.T) {
	srv := sendgridtest.New(t, key, sendgridtest.Reply{Status: 500}, sendgridtest.Reply{Status: 500})
	dir := filepath.Join(t.TempDir(), "outbox")
	o := open(t, dir)
	for _, ev := range incident(t, "web-health") {
		if err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("outbox dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	ctx := context.Background()
	rounds := []struct {
		name        string
		at          time.Duration
		wantSent    int
		wantPending int
		wantReplies []int
		wantTry     time.Duration // next try of the head after the round, from t0
	}{
		{"first try fails", 0, 0, 2, []int{500}, 30 * time.Second},
		{"not due yet: nothing sent", 10 * time.Second, 0, 2, []int{500}, 30 * time.Second},
		{"second try fails", 31 * time.Second, 0, 2, []int{500, 500}, 91 * time.Second},
		{"third try: both go, in order", 2 * time.Minute, 2, 0, []int{500, 500, 202, 202}, 0},
		{"nothing left", 3 * time.Minute, 0, 0, []int{500, 500, 202, 202}, 0},
	}
	for _, r := range rounds {
		rep, err := o.Deliver(ctx, mailer(srv.URL), t0.Add(r.at))
		if err != nil {
			t.Fatalf("%s: Deliver: %v", r.name, err)
		}
		if rep.Sent != r.wantSent || rep.Pending != r.wantPending {
			t.Errorf("%s: report %+v, want sent %d pending %d", r.name, rep, r.wantSent, r.wantPending)
		}
		if got := statusesOf(srv); !reflect.DeepEqual(got, r.wantReplies) {
			t.Errorf("%s: stand-in answered %v, want %v", r.name, got, r.wantReplies)
		}
		items, _ := o.Items()
		if r.wantTry != 0 {
			if len(items) == 0 || !items[0].NextTry.Equal(t0.Add(r.wantTry)) {
				t.Fatalf("%s: items %+v, want head's next try at +%v", r.name, items, r.wantTry)
			}
			if !strings.Contains(items[0].LastError, "sendgrid: 500 Internal Server Error") || items[0].FailedPermanent {
				t.Errorf("%s: head %+v, want a transient 500 recorded", r.name, items[0])
			}
		}
	}
	want := []string{"[DOWN] psyfit-prod web-health — HTTP 502", "[RECOVERED] psyfit-prod web-health after 15m"}
	if got := subjects(srv.Accepted()); !reflect.DeepEqual(got, want) {
		t.Errorf("accepted %q, want exactly %q", got, want)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "queue")); len(ents) != 0 {
		t.Errorf("queue still holds %v", ents)
	}
}

func statusesOf(srv *sendgridtest.Server) []int {
	var out []int
	for _, r := range srv.Requests() {
		out = append(out, r.Status)
	}
	return out
}

func TestRestartDeliversQueuedWithoutDuplicates(t *testing.T) {
	srv := sendgridtest.New(t, key, sendgridtest.Reply{Status: 202}, sendgridtest.Reply{Status: 503})
	dir := t.TempDir()
	evs := append(incident(t, "web-health"), incident(t, "db")...)
	o := open(t, dir)
	for _, ev := range evs {
		if err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := o.Deliver(context.Background(), mailer(srv.URL), t0)
	if err != nil || rep.Sent != 1 || rep.Retrying != 1 || rep.Pending != 3 {
		t.Fatalf("first round %+v, %v; want 1 sent, 1 retrying, 3 pending", rep, err)
	}

	// Restart: a new Outbox on the same dir; the tracker replays its events.
	o2 := open(t, dir)
	for _, ev := range evs {
		if err := o2.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	pend, err := o2.Pending()
	if err != nil || len(pend) != 3 || pend[0].DedupKey != evs[1].DedupKey || pend[2].DedupKey != evs[3].DedupKey {
		t.Fatalf("pending after restart %+v, %v; want events 2..4 in order", pend, err)
	}
	rep, err = o2.Deliver(context.Background(), mailer(srv.URL), t0.Add(time.Minute))
	if err != nil || rep.Sent != 3 || rep.Pending != 0 {
		t.Fatalf("after restart %+v, %v; want 3 sent, none pending", rep, err)
	}
	want := []string{"[DOWN] psyfit-prod web-health — HTTP 502", "[RECOVERED] psyfit-prod web-health after 15m", "[DOWN] psyfit-prod db — HTTP 502", "[RECOVERED] psyfit-prod db after 15m"}
	if got := subjects(srv.Accepted()); !reflect.DeepEqual(got, want) {
		t.Errorf("accepted %q, want each once, in order: %q", got, want)
	}
}

func TestCrashBetweenSendAndRemoval(t *testing.T) {
	srv := sendgridtest.New(t, key)
	dir := t.TempDir()
	o := open(t, dir)
	ev := incident(t, "web-health")[0]
	if err := o.Enqueue(ev); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "queue"))
	file := filepath.Join(dir, "queue", ents[0].Name())
	saved, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := o.Deliver(context.Background(), mailer(srv.URL), t0); err != nil || rep.Sent != 1 {
		t.Fatalf("Deliver %+v, %v", rep, err)
	}
	// The file is back as if the process died after recording the send.
	if err := os.WriteFile(file, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	o2 := open(t, dir)
	rep, err := o2.Deliver(context.Background(), mailer(srv.URL), t0.Add(time.Minute))
	if err != nil || rep.Sent != 0 || rep.Pending != 0 {
		t.Errorf("after crash %+v, %v; want nothing sent and the file removed", rep, err)
	}
	if n := len(srv.Accepted()); n != 1 {
		t.Errorf("%d mails accepted, want 1", n)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("queued file still there: %v", err)
	}
}

func TestEnqueue(t *testing.T) {
	evs := incident(t, "web-health")
	cases := []struct {
		name    string
		enqueue []alert.Event
		deliver bool // deliver after the first event
		want    int  // pending
		wantErr string
	}{
		{"two events", evs, false, 2, ""},
		{"same dedup key twice", []alert.Event{evs[0], evs[0]}, false, 1, ""},
		{"again after it was sent", []alert.Event{evs[0], evs[0]}, true, 0, ""},
		{"no dedup key", []alert.Event{{Host: "h", Check: "web", State: alert.Down}}, false, 0, "enqueue web/down event for h: no dedup key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sendgridtest.New(t, key)
			o := open(t, t.TempDir())
			for i, ev := range c.enqueue {
				err := o.Enqueue(ev)
				if c.wantErr != "" {
					if err == nil || err.Error() != c.wantErr {
						t.Fatalf("error %v, want %q", err, c.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 && c.deliver {
					if _, err := o.Deliver(context.Background(), mailer(srv.URL), t0); err != nil {
						t.Fatal(err)
					}
				}
			}
			if p, err := o.Pending(); err != nil || len(p) != c.want {
				t.Errorf("pending %d, %v; want %d", len(p), err, c.want)
			}
		})
	}
}

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{0, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute, 15 * time.Minute}
	for n, w := range want {
		if got := Backoff(n); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, w)
		}
	}
	if got := Backoff(1000); got != MaxBackoff {
		t.Errorf("Backoff(1000) = %v, want the cap", got)
	}

	// Through Deliver: an unreachable service, retried each time it is due.
	o := open(t, t.TempDir())
	if err := o.Enqueue(incident(t, "web-health")[0]); err != nil {
		t.Fatal(err)
	}
	down := mailer("http://127.0.0.1:1") // nothing listens on port 1
	now := t0
	for n := 1; n <= 7; n++ {
		rep, err := o.Deliver(context.Background(), down, now)
		if err != nil || rep.Retrying != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Error(), "connection refused") {
			t.Fatalf("attempt %d: %+v, %v", n, rep, err)
		}
		items, _ := o.Items()
		if items[0].Attempts != n || !items[0].NextTry.Equal(now.Add(want[n])) {
			t.Fatalf("attempt %d: item %+v, want next try %v later", n, items[0], want[n])
		}
		now = items[0].NextTry
	}
}

func TestPermanentFailureKeptAndDoesNotBlock(t *testing.T) {
	srv := sendgridtest.New(t, key, sendgridtest.Reply{Status: 400, Body: `{"errors":[{"message":"Invalid content","field":"content","help":null}]}`})
	o := open(t, t.TempDir())
	evs := incident(t, "web-health")
	for _, ev := range evs {
		if err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := o.Deliver(context.Background(), mailer(srv.URL), t0)
	if err != nil || rep.FailedPermanent != 1 || rep.Sent != 1 || rep.Pending != 1 {
		t.Fatalf("report %+v, %v; want 1 failed permanently, 1 sent, 1 pending", rep, err)
	}
	if !errors.Is(rep.Errors[0], mail.ErrPermanent) || !strings.Contains(rep.Errors[0].Error(), "sendgrid: 400 Bad Request: Invalid content (content)") {
		t.Errorf("error %v, want the permanent 400", rep.Errors[0])
	}
	items, _ := o.Items()
	if len(items) != 1 || !items[0].FailedPermanent || items[0].Event.DedupKey != evs[0].DedupKey || !items[0].NextTry.Equal(t0.Add(MaxBackoff)) {
		t.Fatalf("items %+v, want the down event kept, marked failed, retried at +15m", items)
	}
	// Retried at the cap interval; the stand-in now accepts it.
	if rep, _ := o.Deliver(context.Background(), mailer(srv.URL), t0.Add(10*time.Minute)); rep.Sent != 0 {
		t.Errorf("retried before the cap interval: %+v", rep)
	}
	if rep, _ := o.Deliver(context.Background(), mailer(srv.URL), t0.Add(MaxBackoff)); rep.Sent != 1 || rep.Pending != 0 {
		t.Errorf("at the cap interval %+v, want it delivered", rep)
	}
}

func TestCorruptItemReportedNotDropped(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir)
	ev := incident(t, "web-health")[0]
	if err := o.Enqueue(ev); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "queue"))
	bad := filepath.Join(dir, "queue", ents[0].Name())
	os.WriteFile(bad, []byte("{torn"), 0o600)
	srv := sendgridtest.New(t, key)
	rep, err := o.Deliver(context.Background(), mailer(srv.URL), t0)
	if err != nil || rep.Pending != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Error(), "read outbox item "+bad) {
		t.Errorf("report %+v, %v; want the torn file reported and kept", rep, err)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("torn file removed: %v", err)
	}
}
