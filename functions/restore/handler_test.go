package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/command"
)

// list: every snapshot of the host in S3, newest first, with its facts
// and flags read from its manifest, the objects and the vault catalog; a
// snapshot whose manifest is missing, unreadable or disagrees with its
// parts is listed with the cause; another host's are not.
func TestList(t *testing.T) {
	r := newRig(t)
	raw, err := r.invoke(t, string(readTestdata(t, "list.json")))
	if err != nil {
		t.Fatalf("list: function error %v", err)
	}
	var got ListResponse
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("list response %s: %v", raw, err)
	}
	type flags struct{ complete, verified, vaulted, restorable bool }
	want := []struct {
		id      string
		flags   flags
		parts   string
		problem string // prefix
	}{
		{snapNoManifest, flags{}, "", "incomplete: no manifest.json (the upload is in progress"},
		{snapNotVaulted, flags{complete: true, verified: true}, "db,data,code", "no vault copy yet"},
		{snapGood, flags{true, true, true, true}, "db,data,code", ""},
		{snapBadSize, flags{vaulted: true}, "db,data,code", "incomplete: data.tar.zst is 2047 bytes, the manifest says 2048"},
		{snapDBOnly, flags{complete: true, vaulted: true, restorable: true}, "db,code", ""},
		{snapGarbage, flags{vaulted: true}, "", "manifest.json unreadable: decode manifest: invalid character '<'"},
	}
	if len(got.Snapshots) != len(want) {
		t.Fatalf("%d snapshots listed, want %d: %s", len(got.Snapshots), len(want), raw)
	}
	for i, w := range want {
		s := got.Snapshots[i]
		f := flags{s.Complete, s.Verified, s.Vaulted, s.Restorable}
		if s.ID != w.id || f != w.flags || strings.Join(s.Parts, ",") != w.parts || !strings.HasPrefix(s.Problem, w.problem) || (w.problem == "") != (s.Problem == "") {
			t.Errorf("snapshot %d: %s %+v parts %q problem %q; want %s %+v parts %q problem %q…", i, s.ID, f, s.Parts, s.Problem, w.id, w.flags, w.parts, w.problem)
		}
	}
	if g := got.Snapshots[2]; g.Revision != "9f2c1e7" || g.Migration != "alembic 3b1d2a9c4e5f" || g.DBSize != 4096 || g.DataSize != 2048 ||
		g.Size != "7.0 KiB" || !g.CreatedAt.Equal(time.Date(2025, 3, 3, 17, 0, 3, 0, time.UTC)) || g.Trigger != "schedule" {
		t.Errorf("snapshot %s: %+v; want the manifest's revision, migration, sizes and time", snapGood, g)
	}
	golden(t, "list.golden.json", indent(t, raw))

	raw, err = r.invoke(t, `{"action":"list","host":"psyfit-stg"}`)
	if err != nil || json.Unmarshal(raw, &got) != nil || len(got.Snapshots) != 1 || got.Snapshots[0].ID != snapOtherHost || !got.Snapshots[0].Restorable {
		t.Errorf("list psyfit-stg: %s, %v; want its one restorable snapshot", raw, err)
	}
}

// restore: the request is resolved and validated, and one command signed
// with the secret's key lands at <host>/commands/<id>.json; it verifies
// with shared/command.Verify for that host until it expires, and not for
// another host or under another key.
func TestRestoreWritesSignedCommand(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name         string
		payload      string
		requireVault bool
		snapshot     string
		parts        []string
		dryRun       bool
		by           string
		plan         []string // substrings, in order
	}{
		{
			name: "latest is the newest restorable snapshot", payload: string(readTestdata(t, "restore.json")), requireVault: true,
			snapshot: snapGood, parts: []string{"db", "data", "code"}, by: "console",
			plan: []string{"Restore psyfit-prod from snapshot " + snapGood, "verified, copied to the vault",
				"the database psyfit (PostgreSQL 15.6, 3 tables, 4.0 KiB compressed, alembic revision 3b1d2a9c4e5f), the data directory /var/data (42 entries, 2.0 KiB compressed) and the code (revision 9f2c1e7, image registry.example/psyfit-web:9f2c1e7)",
				"Reason: deploy v42 broke the appointments page (requested by console)", "it expires unrun at 2025-03-06T09:30:00Z",
				"Newer snapshots passed over: " + snapNoManifest + ": incomplete: no manifest.json", snapNotVaulted + ": no vault copy yet"},
		},
		{
			name:         "an id, the database only, dry run",
			payload:      `{"action":"restore","host":"psyfit-prod","snapshot":"` + snapDBOnly + `","parts":["db"],"reason":"check the plan","dry_run":true,"requested_by":"arn:aws:iam::123456789012:user/ops"}`,
			requireVault: true, snapshot: snapDBOnly, parts: []string{"db"}, dryRun: true, by: "arn:aws:iam::123456789012:user/ops",
			plan: []string{"Dry run (nothing is changed): plan a restore of psyfit-prod from snapshot " + snapDBOnly, "not verified since the backup",
				"the database psyfit", "it changes nothing"},
		},
		{
			name:    "no parts: every part the snapshot holds",
			payload: `{"action":"restore","host":"psyfit-prod","snapshot":"` + snapDBOnly + `","reason":"r"}`, requireVault: true,
			snapshot: snapDBOnly, parts: []string{"db", "code"}, by: "console",
			plan: []string{"the database psyfit", "and the code (revision 9f2c1e7"},
		},
		{
			name:    "REQUIRE_VAULT=false: latest need not be vaulted",
			payload: `{"action":"restore","host":"psyfit-prod","snapshot":"latest","parts":["data"],"reason":"r"}`, requireVault: false,
			snapshot: snapNotVaulted, parts: []string{"data"}, by: "console",
			plan: []string{"from snapshot " + snapNotVaulted, "the data directory /var/data", "passed over: " + snapNoManifest},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r.h.RequireVault = c.requireVault
			before := r.keysUnder(t, "psyfit-prod/commands/")
			raw, err := r.invoke(t, c.payload)
			if err != nil {
				t.Fatalf("function error %v", err)
			}
			var resp RestoreResponse
			if err := json.Unmarshal(raw, &resp); err != nil || resp.CommandID == "" {
				t.Fatalf("response %s: %v", raw, err)
			}
			if resp.Snapshot != c.snapshot || !slices.Equal(resp.Parts, c.parts) || resp.DryRun != c.dryRun || resp.Host != host ||
				!resp.ExpiresAt.Equal(now.Add(15*time.Minute)) {
				t.Errorf("response %s; want snapshot %s parts %v dry_run %v expiring at %s", raw, c.snapshot, c.parts, c.dryRun, now.Add(15*time.Minute))
			}
			rest := resp.Plan
			for _, p := range c.plan {
				i := strings.Index(rest, p)
				if i < 0 {
					t.Errorf("plan %q\nlacks (in order) %q", resp.Plan, p)
					break
				}
				rest = rest[i+len(p):]
			}
			key := "psyfit-prod/commands/" + resp.CommandID + ".json"
			if after := r.keysUnder(t, "psyfit-prod/commands/"); len(after) != len(before)+1 || !slices.Contains(after, key) {
				t.Errorf("commands after: %q, before %q; want %s added", after, before, key)
			}
			if want := `{"action":"status","host":"psyfit-prod","command_id":"` + resp.CommandID + `"}`; resp.Next != want || resp.Key != "s3://backstop-test/"+key {
				t.Errorf("next %s key %s; want %s at s3://backstop-test/%s", resp.Next, resp.Key, want, key)
			}

			stored := r.getObject(t, key)
			cmd, err := command.Decode(stored)
			if err != nil {
				t.Fatalf("stored command: %v\n%s", err, stored)
			}
			if err := command.Verify(cmd, []byte(testKey), host, now); err != nil {
				t.Errorf("Verify with the secret's key: %v", err)
			}
			if cmd.ID != resp.CommandID || cmd.Snapshot != c.snapshot || !slices.Equal(cmd.Parts, c.parts) || cmd.DryRun != c.dryRun ||
				cmd.RequestedBy != c.by || !cmd.IssuedAt.Equal(now) || !cmd.ExpiresAt.Equal(now.Add(command.TTL)) {
				t.Errorf("stored command %+v; want id %s snapshot %s parts %v dry_run %v by %q issued now", cmd, resp.CommandID, c.snapshot, c.parts, c.dryRun, c.by)
			}
			if enc, _ := command.Encode(cmd); string(enc) != string(stored) {
				t.Errorf("stored bytes are not command.Encode's:\n%s", stored)
			}
			for _, bad := range []struct {
				name string
				key  string
				host string
				at   time.Time
				want error
			}{
				{"another host", testKey, other, now, command.ErrWrongHost},
				{"another key", testKey + "x", host, now, command.ErrForged},
				{"15 minutes later", testKey, host, now.Add(15 * time.Minute), command.ErrExpired},
			} {
				if err := command.Verify(cmd, []byte(bad.key), bad.host, bad.at); !errors.Is(err, bad.want) {
					t.Errorf("Verify, %s: %v, want %v", bad.name, err, bad.want)
				}
			}
		})
	}
	golden(t, "plan-latest.golden.txt", []byte(planOf(t, r, string(readTestdata(t, "restore.json")))+"\n"))
}

func planOf(t *testing.T, r *rig, payload string) string {
	t.Helper()
	r.h.RequireVault = true
	raw, err := r.invoke(t, payload)
	var resp RestoreResponse
	if err != nil || json.Unmarshal(raw, &resp) != nil || resp.Plan == "" {
		t.Fatalf("restore: %s, %v", raw, err)
	}
	return resp.Plan
}

// Bad input is answered with {"error": ...} naming the fault — not a
// function error — and writes nothing: every object version in the bucket
// is the same before and after.
func TestBadInputWritesNothing(t *testing.T) {
	r := newRig(t)
	raw, err := r.invoke(t, `{"action":"restore","host":"psyfit-prod","snapshot":"latest","reason":"an existing command"}`)
	var issued RestoreResponse
	if err != nil || json.Unmarshal(raw, &issued) != nil || issued.CommandID == "" {
		t.Fatalf("restore: %s, %v", raw, err)
	}
	restore := func(fields string) string {
		return `{"action":"restore","host":"psyfit-prod","reason":"r",` + fields + `}`
	}
	cases := []struct {
		name, payload string
		want          string // the error, exactly, or its prefix when it ends in "…"
	}{
		{"unknown action", `{"action":"delete","host":"psyfit-prod"}`, `unknown action "delete": want list, restore or status`},
		{"no action", `{"host":"psyfit-prod"}`, `unknown action "": want list, restore or status`},
		{"unknown host", `{"action":"restore","host":"psyfit-dev","snapshot":"latest","reason":"r"}`, `host "psyfit-dev": unknown (this function serves psyfit-prod, psyfit-stg; HOSTS)`},
		{"no host", `{"action":"list"}`, `host: required (one of psyfit-prod, psyfit-stg)`},
		{"host with a path", `{"action":"list","host":"psyfit-prod/snapshots"}`, `host "psyfit-prod/snapshots": unknown (this function serves psyfit-prod, psyfit-stg; HOSTS)`},
		{"malformed snapshot id", restore(`"snapshot":"2025-03-03"`), `snapshot "2025-03-03": neither "latest" nor a snapshot id like 20250301T020000Z-3fa2c1 (list shows them)`},
		{"snapshot id with a path", restore(`"snapshot":"../psyfit-stg/snapshots/` + snapOtherHost + `"`), `snapshot "../psyfit-stg/snapshots/` + snapOtherHost + `": neither "latest" nor a snapshot id…`},
		{"snapshot that does not exist", restore(`"snapshot":"20250101T000000Z-abcdef"`), `snapshot 20250101T000000Z-abcdef: not found under s3://backstop-test/psyfit-prod/snapshots/ (list shows the snapshots)`},
		{"another host's snapshot", restore(`"snapshot":"` + snapOtherHost + `"`), `snapshot ` + snapOtherHost + `: not found under s3://backstop-test/psyfit-prod/snapshots/ (list shows the snapshots)`},
		{"snapshot without its manifest", restore(`"snapshot":"` + snapNoManifest + `"`), `snapshot ` + snapNoManifest + `: incomplete: no manifest.json (the upload is in progress, or failed and ` + "`probe push`" + ` has not finished it)`},
		{"snapshot with a part short", restore(`"snapshot":"` + snapBadSize + `"`), `snapshot ` + snapBadSize + `: incomplete: data.tar.zst is 2047 bytes, the manifest says 2048`},
		{"snapshot with an unreadable manifest", restore(`"snapshot":"` + snapGarbage + `"`), `snapshot ` + snapGarbage + `: manifest.json unreadable: decode manifest: invalid character '<'…`},
		{"snapshot not in the vault", restore(`"snapshot":"` + snapNotVaulted + `"`), `snapshot ` + snapNotVaulted + `: no vault copy yet (s3://backstop-test/psyfit-prod/vault-catalog.json lists 4 snapshots; the offsite function copies each snapshot after its manifest lands)`},
		{"a part the snapshot lacks", restore(`"snapshot":"` + snapDBOnly + `","parts":["data"]`), `snapshot ` + snapDBOnly + ` has no data part (it holds db, code)`},
		{"unknown part", restore(`"parts":["db","config"]`), `parts: unknown part "config" (want db, data or code)`},
		{"part twice", restore(`"parts":["db","data","db"]`), `parts: "db" given twice`},
		{"no reason", `{"action":"restore","host":"psyfit-prod","snapshot":"latest"}`, `reason: required — say why; it goes into the probe's restore log, the result and the mails`},
		{"a misspelt field", restore(`"dryrun":true`), `the input is not a request {"action":"list|restore|status","host":"..."}: json: unknown field "dryrun"`},
		{"not JSON", `restore everything`, `the input is not a request {"action":"list|restore|status","host":"..."}: invalid character…`},
		{"parts not a list", restore(`"parts":"db"`), `the input is not a request {"action":"list|restore|status","host":"..."}: json: cannot unmarshal string…`},
		{"status without an id", `{"action":"status","host":"psyfit-prod"}`, `command_id: required (restore returned it)`},
		{"status of a malformed id", `{"action":"status","host":"psyfit-prod","command_id":"../../psyfit-stg/heartbeat"}`, `command_id "../../psyfit-stg/heartbeat": not a command id like 20250301T051500Z-1a2b3c4d`},
		{"status of an unknown id", `{"action":"status","host":"psyfit-prod","command_id":"20250306T091500Z-00000000"}`, `command 20250306T091500Z-00000000: not found under s3://backstop-test/psyfit-prod/commands/ (issued for another host?)`},
		{"status under another host", `{"action":"status","host":"psyfit-stg","command_id":"` + issued.CommandID + `"}`, `command ` + issued.CommandID + `: not found under s3://backstop-test/psyfit-stg/commands/ (issued for another host?)`},
	}
	before := r.versions(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := r.invoke(t, c.payload)
			if err != nil {
				t.Fatalf("function error %v; want an error in the response", err)
			}
			var got map[string]string
			if err := json.Unmarshal(raw, &got); err != nil || len(got) != 1 {
				t.Fatalf("response %s; want only {\"error\": ...}", raw)
			}
			if p, ok := strings.CutSuffix(c.want, "…"); ok && !strings.HasPrefix(got["error"], p) || !ok && got["error"] != c.want {
				t.Errorf("error %q\nwant     %q", got["error"], c.want)
			}
		})
	}
	if after := r.versions(t); !slices.Equal(before, after) {
		t.Errorf("bad input wrote to the bucket:\nbefore %q\nafter  %q", before, after)
	}
}

// constReader yields the same byte forever: two commands issued in the
// same second get the same id.
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// A command id that already exists is never overwritten (If-None-Match:
// *): the second restore gets a clear error and the first command stays
// as it was.
func TestCommandIDCollision(t *testing.T) {
	r := newRig(t)
	r.h.Rand = constReader(0xab)
	first, err := r.invoke(t, restoreReason("first"))
	var resp RestoreResponse
	if err != nil || json.Unmarshal(first, &resp) != nil || resp.CommandID != "20250306T091500Z-abababab" {
		t.Fatalf("first restore: %s, %v; want command 20250306T091500Z-abababab", first, err)
	}
	before := r.versions(t)
	raw, err := r.invoke(t, restoreReason("second"))
	if err != nil {
		t.Fatalf("second restore: function error %v; want an error in the response", err)
	}
	want := `{"error":"command 20250306T091500Z-abababab already exists at s3://backstop-test/psyfit-prod/commands/20250306T091500Z-abababab.json: nothing was overwritten and no new command was written; invoke again for a new id"}`
	if string(raw) != want {
		t.Errorf("second restore: %s\nwant %s", raw, want)
	}
	if after := r.versions(t); !slices.Equal(before, after) {
		t.Errorf("the collision wrote to the bucket:\nbefore %q\nafter  %q", before, after)
	}
	cmd, err := command.Decode(r.getObject(t, "psyfit-prod/commands/20250306T091500Z-abababab.json"))
	if err != nil || cmd.Reason != "first" || command.Verify(cmd, []byte(testKey), host, now) != nil {
		t.Errorf("stored command %+v, %v; want the first, still valid", cmd, err)
	}
}

func restoreReason(reason string) string {
	return `{"action":"restore","host":"psyfit-prod","snapshot":"latest","reason":"` + reason + `"}`
}

// status follows a command through the probe's objects: pending (with the
// heartbeat's age), expired unrun, claimed, running, succeeded; a
// rejected command shows the probe's reason.
func TestStatus(t *testing.T) {
	r := newRig(t)
	issue := func(reason string) string {
		r.h.Now = func() time.Time { return now }
		raw, err := r.invoke(t, restoreReason(reason))
		var resp RestoreResponse
		if err != nil || json.Unmarshal(raw, &resp) != nil || resp.CommandID == "" {
			t.Fatalf("restore: %s, %v", raw, err)
		}
		return resp.CommandID
	}
	id, rejectedID := issue("status test"), issue("to be rejected")
	dir := "psyfit-prod/commands/"
	txn := "20250306T091530Z-4e5f60"
	stages := []struct {
		name    string
		at      time.Time
		setup   func(t *testing.T)
		id      string
		state   string
		summary string // exactly
		hb      string
	}{
		{
			name: "pending, no heartbeat", at: now.Add(40 * time.Second), id: id, state: "pending",
			summary: "not picked up yet: issued 40s ago, expires in 14m (the probe polls every commands.poll, 15 s by default)",
			hb:      "no s3://backstop-test/psyfit-prod/heartbeat.json: the probe has never written its heartbeat to the store",
		},
		{
			name: "pending, heartbeat", at: now.Add(40 * time.Second), id: id, state: "pending",
			setup: func(t *testing.T) {
				r.put(t, "psyfit-prod/heartbeat.json", []byte(`{"host":"psyfit-prod","at":"2025-03-06T09:15:20Z","status":"ok"}`))
			},
			summary: "not picked up yet: issued 40s ago, expires in 14m (the probe polls every commands.poll, 15 s by default)",
			hb:      "the probe's last heartbeat: 20s ago (2025-03-06T09:15:20Z)",
		},
		{
			name: "expired unrun", at: now.Add(16 * time.Minute), id: id, state: "expired",
			summary: "expired unrun: issued 16m ago, no probe picked it up before 2025-03-06T09:30:00Z; a probe refuses it now — issue a new one once the probe runs",
			hb:      "the probe's last heartbeat: 15m ago (2025-03-06T09:15:20Z)",
		},
		{
			name: "claimed", at: now.Add(time.Minute), id: id, state: "claimed",
			setup:   func(t *testing.T) { r.put(t, dir+id+".claim", []byte(`{"probe":"psyfit-prod pid 4242"}`)) },
			summary: "claimed by the probe; no status written yet",
			hb:      "the probe's last heartbeat: 40s ago (2025-03-06T09:15:20Z)",
		},
		{
			name: "running", at: now.Add(time.Minute), id: id, state: "running",
			setup: func(t *testing.T) {
				r.put(t, dir+id+".status.json", signedStatus(t, command.Status{ID: id, Host: host, State: command.StateRunning, Step: "restore",
					Message: "restoring db, data, code from " + snapGood, At: now.Add(50 * time.Second), Snapshot: snapGood, Txn: txn}))
			},
			summary: "running: restoring db, data, code from " + snapGood + " (as of 2025-03-06T09:15:50Z, 10s ago); no result yet",
		},
		{
			name: "succeeded", at: now.Add(3 * time.Minute), id: id, state: "succeeded",
			setup: func(t *testing.T) {
				r.put(t, dir+id+".status.json", signedStatus(t, command.Status{ID: id, Host: host, State: command.StateSucceeded, Step: "done",
					Message: "restored", At: now.Add(2 * time.Minute), Snapshot: snapGood, Txn: txn}))
				r.put(t, dir+id+".result.json", signedResult(t, command.Result{ID: id, Host: host, State: command.StateSucceeded,
					Message: "restore " + txn + " of snapshot " + snapGood + " done", Snapshot: snapGood, Parts: []string{"db", "data", "code"},
					Txn: txn, StartedAt: now.Add(30 * time.Second), FinishedAt: now.Add(2 * time.Minute), DurationMS: 90000}))
			},
			summary: "succeeded: restore " + txn + " of snapshot " + snapGood + " done (transaction " + txn + "; `probe revert " + txn +
				"` on the host undoes it). Finished 2025-03-06T09:17:00Z, 1m ago.",
		},
		{
			// A bucket writer's result (unsigned) and a status signed with
			// another key are ignored and named, never reported.
			name: "forged result ignored", at: now.Add(3 * time.Minute), id: id, state: "claimed",
			setup: func(t *testing.T) {
				st := command.Status{ID: id, Host: host, State: command.StateSucceeded, Message: "all fine", At: now}
				if err := command.SignStatus(&st, []byte("another key, also 32 bytes long!")); err != nil {
					t.Fatal(err)
				}
				r.put(t, dir+id+".status.json", mustJSON(t, st))
				r.put(t, dir+id+".result.json", mustJSON(t, command.Result{ID: id, Host: host, State: command.StateSucceeded,
					Message: "restored by the attacker", RequestedBy: "ceo@example.jp"}))
			},
			summary: "ignored s3://backstop-test/" + dir + id + ".status.json: status of " + id + ": signature does not verify: not written by the probe holding the command key. " +
				"ignored s3://backstop-test/" + dir + id + ".result.json: result of " + id + ": signature does not verify: not written by the probe holding the command key. " +
				"claimed by the probe; no status written yet",
			hb: "the probe's last heartbeat: 2m ago (2025-03-06T09:15:20Z)",
		},
		{
			name: "rejected", at: now.Add(time.Minute), id: rejectedID, state: "rejected",
			setup: func(t *testing.T) {
				r.put(t, dir+rejectedID+".status.json", signedStatus(t, command.Status{ID: rejectedID, Host: host, State: command.StateRejected,
					Step: "verify", Reason: command.ReasonReplayed, Message: "replayed: command id already seen", At: now.Add(20 * time.Second)}))
			},
			summary: "rejected: replayed: command id already seen (as of 2025-03-06T09:15:20Z, 40s ago)",
		},
	}
	for _, s := range stages {
		t.Run(s.name, func(t *testing.T) {
			if s.setup != nil {
				s.setup(t)
			}
			r.h.Now = func() time.Time { return s.at }
			raw, err := r.invoke(t, `{"action":"status","host":"psyfit-prod","command_id":"`+s.id+`"}`)
			if err != nil {
				t.Fatalf("function error %v", err)
			}
			var got StatusResponse
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("response %s: %v", raw, err)
			}
			if got.CommandID != s.id || got.State != s.state || got.Summary != s.summary || got.Heartbeat != s.hb {
				t.Errorf("state %q summary %q heartbeat %q\nwant  %q summary %q heartbeat %q", got.State, got.Summary, got.Heartbeat, s.state, s.summary, s.hb)
			}
			if got.Command == nil || got.Command.ID != s.id || got.Command.Snapshot != snapGood {
				t.Errorf("command %+v; want the stored one", got.Command)
			}
			if (got.Result != nil) != (s.state == "succeeded") || (got.Status != nil) != slices.Contains([]string{"running", "succeeded", "rejected"}, s.state) {
				t.Errorf("status %+v result %+v; want them as the probe wrote them", got.Status, got.Result)
			}
		})
	}
}

// The HMAC key comes from Secrets Manager once and is cached across warm
// invocations; a missing or too-short secret is a function error that
// names the secret, never its value, and writes nothing.
func TestCommandKeySecret(t *testing.T) {
	r := newRig(t)
	if _, err := r.invoke(t, restoreReason("first")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(r.secret), SecretString: aws.String("rotated-key-0123456789abcdef")}); err != nil {
		t.Fatal(err)
	}
	raw, err := r.invoke(t, restoreReason("second, key cached"))
	var resp RestoreResponse
	if err != nil || json.Unmarshal(raw, &resp) != nil {
		t.Fatalf("restore: %s, %v", raw, err)
	}
	cmd, err := command.Decode(r.getObject(t, "psyfit-prod/commands/"+resp.CommandID+".json"))
	if err != nil || command.Verify(cmd, []byte(testKey), host, now) != nil {
		t.Errorf("command after the rotation: %v; want it signed with the cached key", err)
	}

	short := r.moto.CreateSecret(t, "backstop/short-key", "tiny-key")
	cases := []struct {
		name, secret, want string
	}{
		{"no such secret", "backstop/none", "restore psyfit-prod: read secret backstop/none: "},
		{"a key too short", short, "restore psyfit-prod: secret " + short + ": HMAC key is 8 bytes, want at least 16"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &Handler{S3: r.s3c, Secrets: r.sm, Bucket: r.s3.Bucket, Hosts: []string{host}, SecretID: c.secret, RequireVault: true}
			before := r.versions(t)
			_, err := h.Handle(ctx, json.RawMessage(restoreReason("r")))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "tiny-key") {
				t.Errorf("error %v; want a function error starting %q, without the secret's value", err, c.want)
			}
			if after := r.versions(t); !slices.Equal(before, after) {
				t.Errorf("wrote to the bucket: %q", after)
			}
		})
	}
}

// With KEY_PREFIX (the probe's store.s3.prefix) every key the function
// reads and writes is under it.
func TestKeyPrefix(t *testing.T) {
	r := newRig(t)
	r.putSnapshot(t, "ops", host, snapGood, snapOpts{verified: true})
	r.putVault(t, "ops", host, snapGood)
	r.h.KeyPrefix = "ops"
	raw, err := r.invoke(t, `{"action":"list","host":"psyfit-prod"}`)
	var list ListResponse
	if err != nil || json.Unmarshal(raw, &list) != nil || len(list.Snapshots) != 1 || !list.Snapshots[0].Restorable {
		t.Fatalf("list: %s, %v; want the one snapshot under ops/", raw, err)
	}
	raw, err = r.invoke(t, restoreReason("prefixed"))
	var resp RestoreResponse
	if err != nil || json.Unmarshal(raw, &resp) != nil || resp.Snapshot != snapGood {
		t.Fatalf("restore: %s, %v", raw, err)
	}
	if keys := r.keysUnder(t, "ops/psyfit-prod/commands/"); !slices.Equal(keys, []string{"ops/psyfit-prod/commands/" + resp.CommandID + ".json"}) {
		t.Errorf("commands under ops/: %q", keys)
	}
	if keys := r.keysUnder(t, "psyfit-prod/commands/"); len(keys) != 0 {
		t.Errorf("commands outside the prefix: %q", keys)
	}
	raw, err = r.invoke(t, `{"action":"status","host":"psyfit-prod","command_id":"`+resp.CommandID+`"}`)
	var st StatusResponse
	if err != nil || json.Unmarshal(raw, &st) != nil || st.State != "pending" {
		t.Errorf("status: %s, %v; want pending", raw, err)
	}
}
