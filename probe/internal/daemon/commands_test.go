package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/probe/internal/config"
	"backstop/shared/alert"
	"backstop/shared/command"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

const cmdKey = "a command key of at least 16 bytes"

// cmdFixture is a host with a database, a data dir, a real S3 store and a
// command key, configured for command polling every second.
type cmdFixture struct {
	dir, data string
	pg        *testenv.PG
	st        store.Store
	cfg       *config.Config
}

func newCmdFixture(t *testing.T) *cmdFixture {
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	f := &cmdFixture{dir: t.TempDir(), pg: testenv.Postgres(t)}
	f.pg.CreateDB(t, "app")
	f.pg.Exec(t, "app", "CREATE TABLE users (id int); INSERT INTO users VALUES (1), (2)")
	f.data = filepath.Join(f.dir, "data")
	os.MkdirAll(f.data, 0o700)
	os.WriteFile(filepath.Join(f.data, "a.txt"), []byte("v1"), 0o600)
	os.WriteFile(filepath.Join(f.dir, "command.key"), []byte(cmdKey+"\n"), 0o600)
	y := fmt.Sprintf(`
host: cmd-host
state_dir: %[1]s/state
listen: 127.0.0.1:0
checks:
  - {name: d, type: disk, paths: [/], interval: 1m}
alerts: {via: store}
store: {s3: {bucket: %[2]s, region: %[3]s, endpoint: "%[4]s"}}
backup: {dir: %[1]s/backups, database: {dsn: "%[5]s"}, data_dir: %[6]s}
rollback: {log: %[1]s/rollback.log}
commands: {poll: 1s, hmac_key_file: %[1]s/command.key}
`, f.dir, srv.Bucket, srv.Region, srv.Endpoint, f.pg.DSN("app"), f.data)
	var err error
	if f.cfg, err = config.Parse([]byte(y), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	f.st, err = store.NewS3(context.Background(), store.S3Config{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// issue writes a signed command as the restore function does.
func (f *cmdFixture) issue(t *testing.T, parts []string, dryRun bool) string {
	t.Helper()
	return f.issueWith(t, parts, dryRun, []byte(cmdKey))
}

func (f *cmdFixture) issueWith(t *testing.T, parts []string, dryRun bool, key []byte) string {
	t.Helper()
	now := time.Now()
	c := command.Command{ID: command.NewID(now, nil), Host: "cmd-host", Snapshot: command.Latest, Parts: parts,
		Reason: "test restore", RequestedBy: "ops@example.jp", IssuedAt: now, ExpiresAt: now.Add(command.TTL), DryRun: dryRun}
	if err := command.Sign(&c, key); err != nil {
		t.Fatal(err)
	}
	data, err := command.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Put(context.Background(), command.Key("cmd-host", c.ID), bytes.NewReader(data), store.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// result waits for the command's result object.
func (f *cmdFixture) result(t *testing.T, id string) command.Result {
	t.Helper()
	var res command.Result
	waitFor(t, "the result of command "+id, 90*time.Second, func() bool {
		rc, _, err := f.st.Get(context.Background(), command.ResultKey("cmd-host", id))
		if err != nil {
			return false
		}
		defer rc.Close()
		return json.NewDecoder(rc).Decode(&res) == nil
	})
	return res
}

func (f *cmdFixture) users(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDaemonRunsRestoreCommands: a running probe picks a signed command up
// from S3 within a few polls and runs it through the real restore engine —
// a dry run that changes nothing, then a database restore — and writes the
// status and result and mails the outcome.
func TestDaemonRunsRestoreCommands(t *testing.T) {
	f := newCmdFixture(t)
	d, err := New(f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	d.backup(context.Background()) // the snapshot: 2 users, a.txt v1, uploaded
	f.pg.Exec(t, "app", "INSERT INTO users VALUES (3), (4), (5)")
	os.WriteFile(filepath.Join(f.data, "a.txt"), []byte("v2"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	dry := f.issue(t, []string{command.PartDB, command.PartData}, true)
	res := f.result(t, dry)
	if res.State != command.StateSucceeded || !res.DryRun || len(res.Plan) == 0 || res.Snapshot == "" ||
		!strings.HasPrefix(res.Message, "dry run: snapshot "+res.Snapshot+" verified, nothing changed") {
		t.Fatalf("dry run result %+v", res)
	}
	if n := f.users(t); n != 5 {
		t.Errorf("a dry run changed the database: %d users", n)
	}

	// Signed with another key: rejected, never run.
	forged := f.issueWith(t, []string{command.PartDB}, false, []byte("an attacker's key, 32 bytes long"))
	waitFor(t, "the forged command's status", 30*time.Second, func() bool {
		rc, _, err := f.st.Get(context.Background(), command.StatusKey("cmd-host", forged))
		if err != nil {
			return false
		}
		defer rc.Close()
		var st command.Status
		return json.NewDecoder(rc).Decode(&st) == nil && st.State == command.StateRejected && st.Reason == command.ReasonForged
	})
	if n := f.users(t); n != 5 {
		t.Errorf("a forged command changed the database: %d users", n)
	}

	real := f.issue(t, []string{command.PartDB}, false)
	res = f.result(t, real)
	if res.State != command.StateSucceeded || res.DryRun || res.Txn == "" || res.Steps[0].Step != "db" || res.Steps[0].Status != "ok" {
		t.Fatalf("restore result %+v", res)
	}
	if n := f.users(t); n != 2 {
		t.Errorf("after the db restore: %d users, want the snapshot's 2", n)
	}
	if b, _ := os.ReadFile(filepath.Join(f.data, "a.txt")); string(b) != "v2" {
		t.Errorf("the data dir was restored too (parts: db only): a.txt = %q", b)
	}
	var st command.Status
	rc, _, err := f.st.Get(context.Background(), command.StatusKey("cmd-host", real))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(rc).Decode(&st)
	rc.Close()
	if st.State != command.StateSucceeded || st.Txn != res.Txn {
		t.Errorf("status %+v", st)
	}
	log, _ := os.ReadFile(f.cfg.Rollback.Log)
	if !strings.Contains(string(log), "ROLLBACK id="+res.Txn+" step=db status=ok") {
		t.Errorf("rollback log lacks the db step of %s:\n%s", res.Txn, log)
	}
	// The outcome reaches the alert function (alerts.via store): events
	// for the command's start and end, beside the restore engine's own.
	waitFor(t, "the command's events in the store", 20*time.Second, func() bool {
		objs, _ := f.st.List(context.Background(), "cmd-host/events/")
		var started, succeeded bool
		for _, o := range objs {
			rc, _, err := f.st.Get(context.Background(), o.Key)
			if err != nil {
				continue
			}
			var ev alert.Event
			json.NewDecoder(rc).Decode(&ev)
			rc.Close()
			started = started || ev.Summary == "restore command "+real+" started (db of snapshot latest)"
			succeeded = succeeded || ev.Summary == "restore command "+real+" succeeded"
		}
		return started && succeeded
	})
}

// TestCommandKeyMissing: a configured key file that is missing or too short
// stops the probe at startup with the file named; no store is an error too.
func TestCommandKeyMissing(t *testing.T) {
	dir := t.TempDir()
	base := fmt.Sprintf(`
host: h
state_dir: %[1]s/state
listen: 127.0.0.1:0
checks:
  - {name: d, type: disk, paths: [/]}
alerts: {via: dir, dir: %[1]s/mail}
backup: {dir: %[1]s/backups, data_dir: %[1]s}
`, dir)
	os.WriteFile(filepath.Join(dir, "short.key"), []byte("abc\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "open.key"), []byte(cmdKey), 0o600)
	os.Chmod(filepath.Join(dir, "open.key"), 0o644)
	cases := []struct {
		name, extra, want string
	}{
		{"missing key file", "store: {dir: " + dir + "/store}\ncommands: {hmac_key_file: " + dir + "/none.key}",
			"commands.hmac_key_file: read command key: open " + dir + "/none.key: no such file or directory"},
		{"short key", "store: {dir: " + dir + "/store}\ncommands: {hmac_key_file: " + dir + "/short.key}",
			"commands.hmac_key_file: command key " + dir + "/short.key: HMAC key is 3 bytes, want at least 16"},
		{"world-readable key", "store: {dir: " + dir + "/store}\ncommands: {hmac_key_file: " + dir + "/open.key}",
			"commands.hmac_key_file: command key " + dir + "/open.key is mode 0644, readable or writable by group or others: chmod 600 " + dir + "/open.key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(base+tc.extra+"\n"), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New = %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("no store", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "good.key"), []byte(cmdKey), 0o600)
		cfg, err := config.Parse([]byte(base+"commands: {hmac_key_file: "+dir+"/good.key}\n"), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
		if err == nil || !strings.Contains(err.Error(), "commands.hmac_key_file is set but no store is configured") {
			t.Fatalf("New = %v", err)
		}
	})
}
