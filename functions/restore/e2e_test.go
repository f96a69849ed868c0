package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"backstop/shared/command"
	"backstop/shared/testenv"
)

// The built bootstrap under the Lambda Runtime API harness, with
// versitygw and moto_server: the console's list, restore and status
// payloads (testdata/*.json, as the README tells operators to paste them)
// answer as the handler does, the command verifies with the secret's key,
// bad input is an error in the response, and a missing setting stops the
// function at start, naming it.
func TestBootstrapEndToEnd(t *testing.T) {
	r := newRig(t)
	bin := testenv.BuildBootstrap(t, "backstop/functions/restore")
	env := map[string]string{
		"BUCKET":                 r.s3.Bucket,
		"HOSTS":                  "psyfit-prod,psyfit-stg",
		"COMMAND_KEY_SECRET_ARN": r.secret,
		"S3_PATH_STYLE":          "true",
		"AWS_ENDPOINT_URL_S3":    r.s3.Endpoint,
		"AWS_ACCESS_KEY_ID":      r.s3.AccessKey, // moto takes any credentials
		"AWS_SECRET_ACCESS_KEY":  r.s3.SecretKey,
		"AWS_REGION":             r.s3.Region,
	}
	for k, v := range r.moto.Env() {
		env[k] = v
	}
	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: env})
	invoke := func(payload []byte, into any) {
		t.Helper()
		resp, fnErr := fn.Invoke(t, payload)
		if fnErr != nil {
			t.Fatalf("%s: function error %v", payload, fnErr)
		}
		if err := json.Unmarshal(resp, into); err != nil {
			t.Fatalf("%s: response %s: %v", payload, resp, err)
		}
	}

	var list ListResponse
	invoke(readTestdata(t, "list.json"), &list)
	if len(list.Snapshots) != 6 || list.Snapshots[2].ID != snapGood || !list.Snapshots[2].Restorable {
		t.Errorf("list: %+v; want the six snapshots, %s restorable", list.Snapshots, snapGood)
	}

	var issued RestoreResponse
	invoke(readTestdata(t, "restore.json"), &issued)
	if issued.Snapshot != snapGood || issued.CommandID == "" || !strings.HasPrefix(issued.Plan, "Restore psyfit-prod from snapshot "+snapGood) {
		t.Fatalf("restore: %+v; want a command for %s", issued, snapGood)
	}
	cmd, err := command.Decode(r.getObject(t, "psyfit-prod/commands/"+issued.CommandID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	// The bootstrap's clock is the real one.
	if err := command.Verify(cmd, []byte(testKey), host, issued.IssuedAt); err != nil || cmd.Snapshot != snapGood || cmd.Reason != "deploy v42 broke the appointments page" {
		t.Errorf("command %+v: %v; want it valid under the secret's key", cmd, err)
	}

	var st StatusResponse
	invoke([]byte(strings.Replace(string(readTestdata(t, "status.json")), "20250306T091500Z-1a2b3c4d", issued.CommandID, 1)), &st)
	if st.State != "pending" || !strings.HasPrefix(st.Summary, "not picked up yet: issued ") || st.Command == nil || st.Command.ID != issued.CommandID {
		t.Errorf("status: %+v; want pending", st)
	}

	before := r.versions(t)
	var bad ErrorResponse
	invoke([]byte(`{"action":"restore","host":"psyfit-prod","snapshot":"20250101T000000Z-abcdef","reason":"r"}`), &bad)
	if bad.Error != "snapshot 20250101T000000Z-abcdef: not found under s3://backstop-test/psyfit-prod/snapshots/ (list shows the snapshots)" {
		t.Errorf("bad snapshot: %+v", bad)
	}
	if after := r.versions(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("bad input wrote: %q", after)
	}
	if strings.Contains(fn.Logs(), testKey) {
		t.Errorf("the function's log reveals the command key")
	}

	delete(env, "HOSTS")
	broken := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: env})
	if _, fnErr := broken.Invoke(t, readTestdata(t, "list.json")); fnErr == nil || !broken.LogsContain("HOSTS: required", 5*time.Second) {
		t.Errorf("without HOSTS: %v, logs %q; want a failed start naming it", fnErr, broken.Logs())
	}
}
