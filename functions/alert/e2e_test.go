package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"backstop/shared/testenv"
)

// The built bootstrap, run under the Lambda Runtime API harness with
// versitygw, moto_server and the SendGrid stand-in: an S3 notification
// (and an EventBridge event) for an event object is one mail, and the
// same invocation again is still one; malformed input is a function error; a missing setting
// stops the function at start, naming it.
func TestBootstrapEndToEnd(t *testing.T) {
	r := newRig(t, testKey)
	bin := testenv.BuildBootstrap(t, "backstop/functions/alert")
	env := map[string]string{
		"STATE_BUCKET":          r.s3.Bucket,
		"SENDGRID_SECRET_ARN":   r.secret,
		"ALERT_TO":              testTo + ", oncall@example.jp",
		"ALERT_FROM":            "backstop <" + testFrom + ">",
		"SENDGRID_ENDPOINT":     r.sg.URL,
		"S3_PATH_STYLE":         "true",
		"AWS_ENDPOINT_URL_S3":   r.s3.Endpoint,
		"AWS_ACCESS_KEY_ID":     r.s3.AccessKey, // moto takes any credentials
		"AWS_SECRET_ACCESS_KEY": r.s3.SecretKey,
		"AWS_REGION":            r.s3.Region,
		"ALERT_TIMEZONE":        "Asia/Tokyo",
	}
	for k, v := range r.moto.Env() {
		env[k] = v
	}
	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: env})
	t.Logf("cold start (process start to its first /next): %s", fn.ColdStart()) // a figure, not a pass/fail

	ev := downEvent(t, "e2e")
	key := eventsDir + "20250301T001500Z-e2e000000000.json"
	r.putEvent(t, key, ev)
	note := r.s3Notification(t, s3obj{key: key})

	cases := []struct {
		name string
		want Result
	}{
		{"first delivery", Result{Sent: 1}},
		{"the same invocation again", Result{Duplicates: 1}},
	}
	for _, c := range cases {
		resp, fnErr := fn.Invoke(t, note)
		if fnErr != nil {
			t.Fatalf("%s: function error %v", c.name, fnErr)
		}
		var got Result
		if err := json.Unmarshal(resp, &got); err != nil || got != c.want {
			t.Errorf("%s: response %s, want %+v", c.name, resp, c.want)
		}
	}
	acc := r.sg.Accepted()
	if len(acc) != 1 {
		t.Fatalf("%d mails, want 1", len(acc))
	}
	if m := acc[0]; m.Subject != "[DOWN] psyfit-prod web-health-e2e — HTTP 502" || m.From != testFrom ||
		strings.Join(m.To, ",") != testTo+",oncall@example.jp" || !strings.Contains(m.HTML, "<h2") {
		t.Errorf("mail %+v, want the [DOWN] mail with HTML to both recipients", m)
	}

	// As template.yaml delivers them: S3 -> EventBridge -> the function.
	r.putEvent(t, eventsDir+"20250301T001500Z-3fa2c1d4e5f6.json", downEvent(t, "e2e-eventbridge"))
	for _, want := range []Result{{Sent: 1}, {Duplicates: 1}} {
		resp, fnErr := fn.Invoke(t, readTestdata(t, "eventbridge-s3-object-created.json"))
		var got Result
		if fnErr != nil || json.Unmarshal(resp, &got) != nil || got != want {
			t.Errorf("EventBridge event: %s, %v; want %+v", resp, fnErr, want)
		}
	}

	_, fnErr := fn.Invoke(t, []byte(`{"source":"probe","host":"psyfit-prod","state":"down"}`))
	if fnErr == nil || !strings.Contains(fnErr.ErrorMessage, "missing check, dedup_key, at") {
		t.Errorf("malformed direct invocation: %v, want a function error naming the missing fields", fnErr)
	}
	if strings.Contains(fn.Logs(), testKey) {
		t.Errorf("the function's log reveals the API key")
	}

	delete(env, "STATE_BUCKET")
	bad := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: env})
	if _, fnErr := bad.Invoke(t, note); fnErr == nil || !bad.LogsContain("STATE_BUCKET: required", 5*time.Second) {
		t.Errorf("without STATE_BUCKET: %v, logs %q; want a failed start naming it", fnErr, bad.Logs())
	}
	if got := r.subjects(); !slices.Equal(got, []string{"[DOWN] psyfit-prod web-health-e2e — HTTP 502", "[DOWN] psyfit-prod web-health-e2e-eventbridge — HTTP 502"}) {
		t.Errorf("mails in the end %q, want one per event", got)
	}
}
