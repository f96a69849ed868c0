package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"backstop/shared/alert"
	"backstop/shared/testenv"
)

// lambdaEnv is the built function's environment against the world's S3.
func (w *world) lambdaEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"STATE_BUCKET":          w.s3.Bucket,
		"TARGETS_KEY":           "uptime/targets.json",
		"AWS_ENDPOINT_URL_S3":   w.s3.Endpoint,
		"AWS_ACCESS_KEY_ID":     w.s3.AccessKey,
		"AWS_SECRET_ACCESS_KEY": w.s3.SecretKey,
		"AWS_REGION":            w.s3.Region,
		"S3_PATH_STYLE":         "true",
		"RETRY_PAUSE":           "50ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func scheduledPayload(t *testing.T, id string) []byte {
	t.Helper()
	data, err := json.Marshal(scheduled(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The real bootstrap under the Lambda Runtime API: a target that goes down
// raises exactly one down event after two failed runs, the recovery one up
// event; a certificate 10 days from expiry is one warning, never down.
// Each invocation writes one EMF line per target to stdout.
func TestBootstrapEndToEnd(t *testing.T) {
	bin := testenv.BuildBootstrap(t, "backstop/functions/uptime")
	w := newWorld(t)
	web := newSite(t)
	ca := testenv.NewCA(t)
	soon := testenv.TLSServer(t, ca.Leaf(t, testenv.LeafOpts{NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)}))
	caFile := testenv.WriteFile(t, "ca.pem", ca.CAPEM())
	w.put(t, "uptime/targets.json", `{"locale":"ja","to":["ops@example.jp"],"targets":[
		{"name":"web","url":"`+web.url("/up")+`","conditions":["[STATUS] == 200"]},
		{"name":"tls","kind":"certificate","url":"https://`+soon+`/","conditions":["[CERTIFICATE_EXPIRATION] > 336h"]}]}`)

	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{
		Env:     w.lambdaEnv(map[string]string{"SSL_CERT_FILE": caFile}),
		Timeout: 20 * time.Second,
	})
	if cs := fn.ColdStart(); cs > 0 {
		t.Logf("cold start %s", cs)
	}
	invoke := func(id string) Report {
		t.Helper()
		resp, fnErr := fn.Invoke(t, scheduledPayload(t, id))
		if fnErr != nil {
			t.Fatalf("invoke %s: %v\nlogs:\n%s", id, fnErr, fn.Logs())
		}
		var rep Report
		if err := json.Unmarshal(resp, &rep); err != nil {
			t.Fatalf("response %s: %v", resp, err)
		}
		return rep
	}

	if rep := invoke("e1"); rep.Up != 1 || rep.Warn != 1 || len(rep.Events) != 0 {
		t.Fatalf("first run: %+v", rep)
	}
	web.status.Store(502)
	if rep := invoke("e2"); rep.Down != 1 || len(rep.Events) != 1 {
		// the certificate's second warn run raises its warning here
		t.Fatalf("second run: %+v", rep)
	}
	invoke("e3")
	invoke("e3") // Lambda retrying the same scheduled event
	evs := w.events(t)
	var downs, warns []EventObject
	for _, e := range evs {
		switch {
		case e.Check == "web" && e.State == alert.Down:
			downs = append(downs, e)
		case e.Check == "tls" && e.State == alert.Warn:
			warns = append(warns, e)
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	if len(downs) != 1 || len(warns) != 1 {
		t.Fatalf("want one down (web) and one warn (tls), got %s", describe(evs))
	}
	if d := downs[0]; d.Summary != "[STATUS] (502) == 200" || d.Locale != "ja" || strings.Join(d.To, ",") != "ops@example.jp" {
		t.Errorf("down event: %+v", d)
	}
	if warns[0].Summary != "certificate expires in 10 days" {
		t.Errorf("warn event: %+v", warns[0])
	}

	web.status.Store(200)
	invoke("e4")
	invoke("e5")
	evs = w.events(t)
	if len(evs) != 3 || evs[2].Check != "web" || evs[2].State != alert.Up || evs[2].IncidentID != downs[0].IncidentID {
		t.Fatalf("after recovery want one up event for web's incident, got %s", describe(evs))
	}
	if fn.Processes() != 1 {
		t.Errorf("the function restarted: %d processes", fn.Processes())
	}

	logs := fn.Logs()
	emf := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, `{"_aws":`) {
			emf++
		}
	}
	// 6 invocations (the retried e3 checks too, it only counts nothing) x 2 targets.
	if emf != 12 {
		t.Errorf("EMF lines in the function's output: %d, want 12\n%s", emf, logs)
	}
}

// A bootstrap whose targets do not validate fails its invocation with the
// field at fault; a bad environment fails at start.
func TestBootstrapConfigErrors(t *testing.T) {
	bin := testenv.BuildBootstrap(t, "backstop/functions/uptime")
	w := newWorld(t)
	w.put(t, "uptime/targets.json", `[{"name":"web","url":"https://a/"},{"name":"web","url":"ftp://b/"}]`)
	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: w.lambdaEnv(nil)})
	_, fnErr := fn.Invoke(t, scheduledPayload(t, "bad"))
	want := fmt.Sprintf("targets s3://%s/uptime/targets.json: targets[1].url: must be an http:// or https:// URL\ntargets[1].name: %q is also the name of targets[0]", w.s3.Bucket, "web")
	if fnErr == nil || fnErr.ErrorMessage != want {
		t.Fatalf("function error %v\nwant %q", fnErr, want)
	}

	bad := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: w.lambdaEnv(map[string]string{"TARGETS": `[{"name":"x","url":"https://x/","timeout":"forever"}]`, "TARGETS_KEY": ""})})
	_, fnErr = bad.Invoke(t, scheduledPayload(t, "init"))
	if fnErr == nil || !bad.LogsContain(`uptime: targets (TARGETS): targets[0].timeout: not a duration (like 5s, 500ms): "forever"`, 5*time.Second) {
		t.Fatalf("init failure: %v\nlogs:\n%s", fnErr, bad.Logs())
	}
}
