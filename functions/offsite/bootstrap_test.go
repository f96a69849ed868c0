package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"backstop/shared/testenv"
)

func lambdaEnv(r *rig, extra map[string]string) map[string]string {
	env := map[string]string{
		"SOURCE_BUCKET":         r.srv.Bucket,
		"VAULT_BUCKET":          r.vault,
		"VAULT_REGION":          r.srv.Region,
		"LOCK_DAYS":             "1",
		"S3_PATH_STYLE":         "true",
		"AWS_ENDPOINT_URL_S3":   r.srv.Endpoint,
		"AWS_ACCESS_KEY_ID":     r.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY": r.srv.SecretKey,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// TestBootstrapCopiesASnapshot runs the built function under the Lambda
// runtime harness: a manifest notification copies the snapshot (a 48 MiB
// archive in 5 MiB UploadPartCopy parts) without the bytes passing
// through the function: its peak RSS stays far below the archive's size.
func TestBootstrapCopiesASnapshot(t *testing.T) {
	r := newRig(t)
	bin := testenv.BuildBootstrap(t, "backstop/functions/offsite")
	s := r.putSnapshot(t, "psyfit-prod", time.Now().Add(-time.Hour), 1<<20, 48<<20)
	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{Timeout: 60 * time.Second, Env: lambdaEnv(r, map[string]string{
		"COPY_PART_SIZE": "5242880", "MULTIPART_THRESHOLD": "5242880", "HOSTS": "psyfit-prod",
	})})

	out, fnErr := fn.Invoke(t, r.s3Notification(s))
	if fnErr != nil {
		t.Fatalf("invoke: %v", fnErr)
	}
	var res Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("response %s: %v", out, err)
	}
	if len(res.Vaulted) != 1 || res.Vaulted[0].Status != "vaulted" || res.Vaulted[0].Copied != 3 || res.Vaulted[0].Objects[1].Parts != 10 {
		t.Fatalf("response %s: want the snapshot vaulted, the archive in 10 parts", out)
	}
	e := r.catalog(t, "psyfit-prod").Snapshots[s.ID]
	if e == nil || e.RetainUntil.Sub(e.CopiedAt) < 24*time.Hour-time.Second {
		t.Errorf("catalog entry %+v: want retention of LOCK_DAYS=1", e)
	}
	rss := fn.PeakRSS()
	t.Logf("bootstrap peak RSS %d MiB for a %d MiB archive", rss>>20, s.Manifest.Data.Size>>20)
	if rss == 0 || rss > 40<<20 {
		t.Errorf("bootstrap peak RSS %d bytes: want a measurement below 40 MiB (the archive is 48 MiB)", rss)
	}

	// The same binary answers the schedule.
	out, fnErr = fn.Invoke(t, readTestdata(t, "scheduled-event.json"))
	if fnErr != nil {
		t.Fatalf("scheduled invoke: %v", fnErr)
	}
	if !strings.Contains(string(out), `"newest_snapshot":"`+s.ID+`"`) {
		t.Errorf("scheduled response %s: want the newest snapshot %s", out, s.ID)
	}
}

func TestBootstrapRefusesBadConfig(t *testing.T) {
	r := newRig(t)
	bin := testenv.BuildBootstrap(t, "backstop/functions/offsite")
	fn := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: lambdaEnv(r, map[string]string{"LOCK_DAYS": "0"})})
	_, fnErr := fn.Invoke(t, readTestdata(t, "scheduled-event.json"))
	if fnErr == nil || fnErr.ErrorType != "Runtime.ExitError" || !fn.LogsContain("LOCK_DAYS: want a whole number of days 1..36500", 5*time.Second) {
		t.Errorf("error %v, logs:\n%s\nwant an exit naming LOCK_DAYS", fnErr, fn.Logs())
	}
}
