package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/alert"
	"backstop/shared/mail"
	"backstop/shared/mail/sendgridtest"
)

// A down event object announced by S3 becomes exactly one [DOWN] mail,
// rendered as shared/mail renders it, and neither a duplicate
// notification nor a Lambda retry of the invocation sends it again.
func TestDownEventMailedOnce(t *testing.T) {
	r := newRig(t, testKey)
	ev := downEvent(t, "")
	key := eventsDir + "20250301T001500Z-3fa2c1d4e5f6.json"
	r.putEvent(t, key, ev)
	note := r.s3Notification(t, s3obj{key: key})
	if !strings.Contains(string(note), "ops+team%2Fpsyfit-prod%2Fevents") {
		t.Fatalf("notification key is not URL-encoded as S3 sends it: %s", note)
	}

	res, err := r.invoke(t, note)
	if err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if res != (Result{Sent: 1}) {
		t.Errorf("first delivery: %+v, want one sent", res)
	}
	got := r.sg.Accepted()
	if len(got) != 1 {
		t.Fatalf("%d mails accepted, want 1", len(got))
	}
	want := mail.Render(ev)
	m := got[0]
	if m.Subject != "[DOWN] psyfit-prod web-health — HTTP 502" || m.Subject != want.Subject {
		t.Errorf("subject %q, want %q", m.Subject, want.Subject)
	}
	if m.Text != want.Text || m.HTML != want.HTML {
		t.Errorf("body differs from mail.Render:\ntext %q\nhtml %q", m.Text, m.HTML)
	}
	if m.From != testFrom || !slices.Equal(m.To, []string{testTo}) {
		t.Errorf("from %q to %v, want %q to [%s]", m.From, m.To, testFrom, testTo)
	}
	if c := r.claimOf(t, ev.DedupKey); c.Status != statusSent || c.Origin != "s3://"+r.s3.Bucket+"/"+key {
		t.Errorf("claim %+v, want sent from the object", c)
	}

	for _, name := range []string{"duplicate S3 notification", "Lambda retry"} {
		res, err := r.invoke(t, note)
		if err != nil || res != (Result{Duplicates: 1}) {
			t.Errorf("%s: %+v, %v; want one duplicate, no error", name, res, err)
		}
	}
	if n := len(r.sg.Accepted()); n != 1 {
		t.Errorf("%d mails after re-deliveries, want 1", n)
	}
}

// An event naming its own recipients (an uptime target's "to") is mailed
// to them, not to the configured ones.
func TestEventRecipientsOverrideConfigured(t *testing.T) {
	r := newRig(t, testKey)
	ev := downEvent(t, "")
	ev.To = []string{"oncall@example.jp", "clinic@example.jp"}
	key := eventsDir + "20250301T001500Z-0a0b0c0d0e0f.json"
	r.putEvent(t, key, ev)
	if _, err := r.invoke(t, r.s3Notification(t, s3obj{key: key})); err != nil {
		t.Fatal(err)
	}
	got := r.sg.Accepted()
	if len(got) != 1 || !slices.Equal(got[0].To, ev.To) {
		t.Fatalf("mails %+v, want one to %v", got, ev.To)
	}
}

// A direct invocation carries the event itself; Japanese and English
// events are rendered in their locale into the SendGrid request.
func TestDirectInvocationLocales(t *testing.T) {
	r := newRig(t, testKey)
	cases := []struct {
		name, locale string
		wantHTML     []string
	}{
		{"en", "en", []string{`<html lang="en">`, "DOWN: web-health-en on psyfit-prod", "What failed"}},
		{"ja", "ja", []string{`<html lang="ja">`, "【障害】web-health-ja（psyfit-prod）のチェックが失敗しています", "障害内容"}},
		{"no locale is en", "", []string{`<html lang="en">`, "The check is failing."}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := downEvent(t, c.name)
			ev.Check = "web-health-" + c.name
			ev.Locale = c.locale
			if _, err := r.invoke(t, mustJSON(t, ev)); err != nil {
				t.Fatal(err)
			}
			acc := r.sg.Accepted()
			if len(acc) != i+1 {
				t.Fatalf("%d mails, want %d", len(acc), i+1)
			}
			m := acc[i]
			for _, w := range c.wantHTML {
				if !strings.Contains(m.HTML, w) {
					t.Errorf("HTML lacks %q:\n%s", w, m.HTML)
				}
			}
			if !strings.HasPrefix(m.Subject, "[DOWN] "+ev.Host+" "+ev.Check) {
				t.Errorf("subject %q keeps no English tag", m.Subject)
			}
			ev.Locale = map[string]string{"ja": "ja"}[c.locale]
			if ev.Locale == "" {
				ev.Locale = "en"
			}
			if want := mail.Render(ev); m.Text != want.Text || m.HTML != want.HTML {
				t.Errorf("mail differs from mail.Render in %s", ev.Locale)
			}
		})
	}
}

// SendGrid's 429 with Retry-After is waited out within the deadline, and
// the mail goes once.
func TestRateLimitedThenAccepted(t *testing.T) {
	r := newRig(t, testKey, sendgridtest.Reply{Status: 429, RetryAfter: "1"})
	res, err := r.invoke(t, mustJSON(t, downEvent(t, "429")))
	if err != nil || res.Sent != 1 {
		t.Fatalf("%+v, %v; want sent", res, err)
	}
	if got := statuses(r.sg.Requests()); !slices.Equal(got, []int{429, 202}) {
		t.Errorf("SendGrid answered %v, want [429 202]", got)
	}
	if n := len(r.sg.Accepted()); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}
}

// A send that fails for good in one invocation (5xx until the attempts
// run out) returns an error and frees its claim, so that Lambda's retry
// sends the mail — once.
func TestFailedSendRetriedByLambda(t *testing.T) {
	r := newRig(t, testKey, sendgridtest.Reply{Status: 503}, sendgridtest.Reply{Status: 503}, sendgridtest.Reply{Status: 503})
	ev := downEvent(t, "5xx")
	payload := mustJSON(t, ev)
	_, err := r.invoke(t, payload)
	if err == nil || errors.Is(err, mail.ErrPermanent) || !strings.Contains(err.Error(), "sendgrid: 503 Service Unavailable") {
		t.Fatalf("first invocation: %v, want a transient error naming the 503", err)
	}
	if c := r.claimOf(t, ev.DedupKey); c.Status != statusFailed || !strings.Contains(c.Error, "503") {
		t.Errorf("claim after the failure %+v, want failed with the cause", c)
	}
	res, err := r.invoke(t, payload)
	if err != nil || res.Sent != 1 {
		t.Fatalf("retry: %+v, %v; want sent", res, err)
	}
	if c := r.claimOf(t, ev.DedupKey); c.Status != statusSent || c.Attempt != 2 {
		t.Errorf("claim after the retry %+v, want sent on attempt 2", c)
	}
	if res, _ := r.invoke(t, payload); res.Duplicates != 1 {
		t.Errorf("third delivery %+v, want a duplicate", res)
	}
	if n := len(r.sg.Accepted()); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}
}

// Claims left by other invocations: one that died mid-send (lease over)
// is taken over; one whose holder may still be sending is not stolen.
func TestClaimLeftByAnotherInvocation(t *testing.T) {
	r := newRig(t, testKey)
	r.timeout = 5 * time.Second
	cases := []struct {
		name      string
		left      claim
		wantErr   string
		wantMails int
		wantState string
	}{
		{"crashed while sending, lease over", claim{Status: statusSending, Attempt: 1, LeaseUntil: time.Now().Add(-time.Minute)}, "", 1, statusSent},
		{"still sending, lease beyond our deadline", claim{Status: statusSending, Attempt: 1, LeaseUntil: time.Now().Add(time.Hour)},
			"another invocation is sending it (lease until", 0, statusSending},
		{"sent", claim{Status: statusSent, Attempt: 1}, "", 0, statusSent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := downEvent(t, strings.ReplaceAll(c.name, " ", "-"))
			c.left.DedupKey = ev.DedupKey
			r.putObject(t, claimKey(ev.DedupKey), mustJSON(t, c.left))
			before := len(r.sg.Accepted())
			_, err := r.invoke(t, mustJSON(t, ev))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
			if n := len(r.sg.Accepted()) - before; n != c.wantMails {
				t.Errorf("%d mails, want %d", n, c.wantMails)
			}
			if got := r.claimOf(t, ev.DedupKey); got.Status != c.wantState {
				t.Errorf("claim %+v, want %s", got, c.wantState)
			}
		})
	}
}

// The API key is read once and cached across invocations; on 401 the
// secret is read again once: the same key is a permanent error, a
// rotated key is used at once.
func TestKeyCachedAndReReadOn401(t *testing.T) {
	const rotated = "SG.rotated-key-fedcba9876543210"
	r := newRig(t, testKey)
	ctx := context.Background()
	if _, err := r.invoke(t, mustJSON(t, downEvent(t, "prime"))); err != nil {
		t.Fatal(err)
	}
	// The cache, not the secret, serves the next invocation.
	if _, err := r.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(r.secret), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if res, err := r.invoke(t, mustJSON(t, downEvent(t, "cached"))); err != nil || res.Sent != 1 {
		t.Fatalf("with the secret deleted: %+v, %v; want sent with the cached key", res, err)
	}

	// SendGrid now wants another key; the secret is recreated with the
	// old one: 401, re-read, same key, permanent.
	r2 := newRig(t, rotated)
	ev := downEvent(t, "rotated")
	payload := mustJSON(t, ev)
	_, err := r2.invoke(t, payload)
	if !errors.Is(err, mail.ErrPermanent) || !strings.Contains(err.Error(), "sendgrid: 401 Unauthorized") ||
		!strings.Contains(err.Error(), "still holds the key SendGrid rejected") {
		t.Fatalf("error %v, want a permanent 401 saying the secret holds the same key", err)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error reveals the key")
	}
	// The operator rotates the key; Lambda's retry re-reads it on 401.
	if _, err := r2.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(r2.secret), SecretString: aws.String(`{"api_key": "` + rotated + `"}`)}); err != nil {
		t.Fatal(err)
	}
	res, err := r2.invoke(t, payload)
	if err != nil || res.Sent != 1 {
		t.Fatalf("after rotation: %+v, %v; want sent", res, err)
	}
	if got := statuses(r2.sg.Requests()); !slices.Equal(got, []int{401, 401, 202}) {
		t.Errorf("SendGrid answered %v, want [401 401 202] (one try per key, no blind retry)", got)
	}
	if n := len(r2.sg.Accepted()); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}
}

// An SNS message with a CloudWatch alarm becomes one mail; SNS's
// redelivery of it is a duplicate.
func TestCloudWatchAlarmOverSNS(t *testing.T) {
	r := newRig(t, testKey)
	payload := readTestdata(t, "sns-cloudwatch-alarm.json")
	res, err := r.invoke(t, payload)
	if err != nil || res.Sent != 1 {
		t.Fatalf("%+v, %v; want sent", res, err)
	}
	acc := r.sg.Accepted()
	if len(acc) != 1 {
		t.Fatalf("%d mails, want 1", len(acc))
	}
	m := acc[0]
	if want := "[DOWN] aws:ap-northeast-1 backstop-alert-errors — The alert function failed (OK → ALARM)"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	for _, w := range []string{"Threshold Crossed: 1 out of the last 1 datapoints", "AWS/Lambda/Errors {FunctionName=backstop-alert}", "aws:ap-northeast-1", "Source:         cloudwatch"} {
		if !strings.Contains(m.Text, w) {
			t.Errorf("text lacks %q:\n%s", w, m.Text)
		}
	}
	if res, err := r.invoke(t, payload); err != nil || res.Duplicates != 1 {
		t.Errorf("redelivery: %+v, %v; want a duplicate", res, err)
	}
}

// Objects that are gone, records that are not events, and malformed
// events: the good records of a batch are still mailed; only malformed
// input fails the invocation, naming what is wrong.
func TestRecordsThatAreNotMailed(t *testing.T) {
	r := newRig(t, testKey)
	ctx := context.Background()

	good := downEvent(t, "good")
	goodKey := eventsDir + "20250301T001500Z-000000000001.json"
	r.putEvent(t, goodKey, good)
	deleted := downEvent(t, "deleted")
	deletedKey := eventsDir + "20250301T001500Z-000000000002.json"
	deletedVersion := r.putEvent(t, deletedKey, deleted)
	if _, err := r.s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(r.s3.Bucket), Key: aws.String(deletedKey)}); err != nil {
		t.Fatal(err)
	}
	badKey := eventsDir + "20250301T001500Z-000000000003.json"
	r.putObject(t, badKey, []byte(`{"source":"probe","host":"psyfit-prod","state":"down","at":"2025-03-01T09:15:00+09:00"}`))

	cases := []struct {
		name    string
		payload []byte
		want    Result
		wantErr []string
	}{
		{"s3 test event", readTestdata(t, "s3-test-event.json"), Result{Ignored: 1}, nil},
		{"missing object", r.s3Notification(t, s3obj{key: eventsDir + "20250301T001500Z-ffffffffffff.json"}), Result{Missing: 1}, nil},
		{"not an event key", r.s3Notification(t, s3obj{key: "psyfit-prod/heartbeat.json"}), Result{Ignored: 1}, nil},
		{"object removed", r.s3Notification(t, s3obj{key: goodKey, eventName: "ObjectRemoved:Delete"}), Result{Ignored: 1}, nil},
		{"deleted after the notification: its version is read", r.s3Notification(t, s3obj{key: deletedKey, version: deletedVersion}), Result{Sent: 1}, nil},
		{"malformed beside a good one", r.s3Notification(t, s3obj{key: badKey}, s3obj{key: goodKey}), Result{Sent: 1},
			[]string{"record 0: event s3://" + r.s3.Bucket + "/" + badKey + `: alert event "": missing check, dedup_key`}},
		{"the same batch retried", r.s3Notification(t, s3obj{key: badKey}, s3obj{key: goodKey}), Result{Duplicates: 1}, []string{"missing check, dedup_key"}},
		{"not JSON", []byte(`{"Records": [`), Result{}, []string{"decode payload"}},
		{"direct event without state", []byte(`{"source":"probe","host":"h","check":"c","dedup_key":"k","at":"2025-03-01T00:00:00Z","state":"sideways"}`), Result{},
			[]string{`direct invocation: alert event "k": state "sideways" is not down, up, warn or info`}},
		{"unknown record", []byte(`{"Records":[{"eventSource":"aws:sqs"}]}`), Result{}, []string{`record 0: event source "aws:sqs"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := r.invoke(t, c.payload)
			if res != c.want {
				t.Errorf("result %+v, want %+v", res, c.want)
			}
			if len(c.wantErr) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			for _, w := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) || !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v, want a malformed-input error containing %q", err, w)
				}
			}
		})
	}
	if got := r.subjects(); !slices.Equal(got, []string{"[DOWN] psyfit-prod web-health-deleted — HTTP 502", "[DOWN] psyfit-prod web-health-good — HTTP 502"}) {
		t.Errorf("mails %q, want the deleted-after-notification one and the good one, once each", got)
	}
}

// More than K events for one host within the window: the first K are
// mailed one by one, the rest become one digest, and a retried batch
// sends nothing more.
func TestStormBecomesOneDigest(t *testing.T) {
	r := newRig(t, testKey)
	var objs []s3obj
	var evs []alert.Event
	for i := range 15 {
		ev := downEvent(t, "storm"+string(rune('a'+i)))
		ev.At = ev.At.Add(time.Duration(i) * time.Second)
		key := eventsDir + "20250301T0015" + string(rune('a'+i)) + ".json"
		r.putEvent(t, key, ev)
		objs = append(objs, s3obj{key: key})
		evs = append(evs, ev)
	}
	batch := r.s3Notification(t, objs...)
	res, err := r.invoke(t, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Sent: 10, Held: 5, Digests: 1}) {
		t.Errorf("result %+v, want 10 sent, 5 held, 1 digest", res)
	}
	acc := r.sg.Accepted()
	if len(acc) != 11 {
		t.Fatalf("%d mails %q, want 10 + 1 digest", len(acc), r.subjects())
	}
	d := acc[10]
	if want := "[DIGEST] psyfit-prod — 5 alerts: 5 DOWN"; d.Subject != want {
		t.Errorf("digest subject %q, want %q", d.Subject, want)
	}
	for _, ev := range evs[10:] {
		if !strings.Contains(d.Text, mail.Render(ev).Subject) || !strings.Contains(d.HTML, ev.Check) {
			t.Errorf("digest lacks %s", ev.Check)
		}
	}
	for _, ev := range evs[:10] {
		if strings.Contains(d.Text, ev.Check+" ") {
			t.Errorf("digest repeats %s, which was mailed alone", ev.Check)
		}
	}
	for _, ev := range evs {
		if c := r.claimOf(t, ev.DedupKey); c.Status != statusSent {
			t.Errorf("claim of %s: %+v, want sent", ev.Check, c)
		}
	}
	res, err = r.invoke(t, batch)
	if err != nil || res != (Result{Duplicates: 15}) {
		t.Errorf("retried batch: %+v, %v; want 15 duplicates", res, err)
	}
	if n := len(r.sg.Accepted()); n != 11 {
		t.Errorf("%d mails after the retry, want 11", n)
	}
}

// A storm spread over concurrent invocations (one event each, as S3
// sends them) still gives one digest: one invocation leads and collects,
// the others wait for it.
func TestStormAcrossInvocations(t *testing.T) {
	r := newRig(t, testKey)
	r.h.DigestThreshold, r.h.DigestWait = 3, 3*time.Second
	for i := range 3 {
		if res, err := r.invoke(t, mustJSON(t, downEvent(t, "solo"+string(rune('a'+i))))); err != nil || res.Sent != 1 {
			t.Fatalf("event %d: %+v, %v", i, res, err)
		}
	}
	type outcome struct {
		res Result
		err error
	}
	out := make(chan outcome, 4)
	for i := range 4 {
		ev := downEvent(t, "burst"+string(rune('a'+i)))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			defer cancel()
			res, err := r.h.Handle(ctx, mustJSON(t, ev))
			out <- outcome{res, err}
		}()
	}
	var total Result
	for range 4 {
		o := <-out
		if o.err != nil {
			t.Errorf("burst invocation: %v", o.err)
		}
		total.Held += o.res.Held
		total.Digests += o.res.Digests
		total.Sent += o.res.Sent
	}
	if total != (Result{Held: 4, Digests: 1}) {
		t.Errorf("burst: %+v, want 4 held in 1 digest", total)
	}
	subj := r.subjects()
	if len(subj) != 4 || subj[3] != "[DIGEST] psyfit-prod — 4 alerts: 4 DOWN" {
		t.Errorf("mails %q, want 3 alone and one digest of 4", subj)
	}
}

// template.yaml routes S3's events through EventBridge: the "Object
// Created" shape is read like a notification (the key as given, or
// URL-decoded when only that exists), once.
func TestEventBridgeObjectCreated(t *testing.T) {
	r := newRig(t, testKey)
	raw := readTestdata(t, "eventbridge-s3-object-created.json")
	if !strings.Contains(string(raw), `"name": "`+r.s3.Bucket+`"`) {
		t.Fatalf("testdata names another bucket than %s", r.s3.Bucket)
	}
	ev := downEvent(t, "eventbridge")
	r.putEvent(t, eventsDir+"20250301T001500Z-3fa2c1d4e5f6.json", ev)
	enc := downEvent(t, "eventbridge-encoded")
	r.putEvent(t, eventsDir+"20250301T001500Z-0000000000ee.json", enc)
	cases := []struct {
		name    string
		payload string
		want    Result
	}{
		{"object created", string(raw), Result{Sent: 1}},
		{"delivered again", string(raw), Result{Duplicates: 1}},
		{"URL-encoded key", strings.Replace(strings.Replace(string(raw), "ops team", "ops+team", 1), "3fa2c1d4e5f6", "0000000000ee", 1), Result{Sent: 1}},
		{"missing object", strings.Replace(string(raw), "3fa2c1d4e5f6", "ffffffffffff", 1), Result{Missing: 1}},
		{"object deleted", strings.Replace(string(raw), `"Object Created"`, `"Object Deleted"`, 1), Result{Ignored: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := r.invoke(t, []byte(c.payload))
			if err != nil || res != c.want {
				t.Errorf("%+v, %v; want %+v", res, err, c.want)
			}
		})
	}
	if got := r.subjects(); !slices.Equal(got, []string{"[DOWN] psyfit-prod web-health-eventbridge — HTTP 502", "[DOWN] psyfit-prod web-health-eventbridge-encoded — HTTP 502"}) {
		t.Errorf("mails %q", got)
	}
}
