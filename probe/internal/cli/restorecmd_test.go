package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// restoreCLI is an app database, a data dir, a ready URL whose answer the
// test sets, and a config using them.
type restoreCLI struct {
	pg          *testenv.PG
	db          string
	cfg         string
	backupDir   string
	stateDir    string
	dataDir     string
	rollbackLog string
	ready       *atomic.Int32 // the ready URL's HTTP status
}

func newRestoreCLI(t *testing.T, pg *testenv.PG, db string) *restoreCLI {
	t.Helper()
	dir := t.TempDir()
	s := &restoreCLI{pg: pg, db: db, backupDir: filepath.Join(dir, "backups"), stateDir: filepath.Join(dir, "state"),
		dataDir: filepath.Join(dir, "data"), rollbackLog: filepath.Join(dir, "rollback.log"), ready: &atomic.Int32{}}
	s.ready.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(s.ready.Load()))
	}))
	t.Cleanup(srv.Close)

	snapDB(t, pg, db)
	if err := os.MkdirAll(filepath.Join(s.dataDir, "uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "uploads", "a.txt"), []byte("v1 upload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cfg = writeConfig(t, fmt.Sprintf(`host: cli-host
state_dir: %s
checks:
  - {name: disk, type: disk, paths: ["%s"]}
backup:
  dir: %s
  data_dir: %s
  database:
    dsn: %q
rollback:
  log: %s
  ready_url: %s/readyz
  timeout: 2s
  interval: 200ms
`, s.stateDir, dir, s.backupDir, s.dataDir, pg.DSN(db), s.rollbackLog, srv.URL))
	return s
}

func (s *restoreCLI) run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if env == nil {
		env = map[string]string{}
	}
	code, out, errOut := run(t, ctx, env, append([]string{"--config", s.cfg}, args...)...)
	if strings.Contains(out+errOut, s.pg.Password) {
		t.Errorf("probe %s printed the database password:\n%s%s", strings.Join(args, " "), out, errOut)
	}
	return code, out, errOut
}

// state is what a restore may change: the users table's columns and
// checksum, the migration revision, the data dir's file and what lies
// beside it, the restore records and the ROLLBACK lines.
func (s *restoreCLI) state(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.pg.DSN(s.db))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var cols, sum, rev string
	if err := conn.QueryRow(ctx, `SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'users'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*)::text || ' ' || md5(string_agg(u::text, ',' ORDER BY id)) FROM users u`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT version_num FROM alembic_version`).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(filepath.Join(s.dataDir, "uploads", "a.txt"))
	beside, _ := filepath.Glob(s.dataDir + ".*")
	recs, _ := filepath.Glob(filepath.Join(s.stateDir, "restores", "*.json"))
	log, _ := os.ReadFile(s.rollbackLog)
	return fmt.Sprintf("users(%s) %s | rev %s | a.txt %q | beside %d | records %d | ROLLBACK lines %d",
		cols, sum, rev, file, len(beside), len(recs), strings.Count(string(log), "ROLLBACK "))
}

// deploy drops a column, moves the revision on and rewrites the file.
func (s *restoreCLI) deploy(t *testing.T) {
	t.Helper()
	s.pg.Exec(t, s.db, `ALTER TABLE users DROP COLUMN email; DELETE FROM users WHERE id > 1500;
		UPDATE alembic_version SET version_num = '0043_drop_email'`)
	if err := os.WriteFile(filepath.Join(s.dataDir, "uploads", "a.txt"), []byte("v2 upload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *restoreCLI) databases(t *testing.T) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var names string
	if err := conn.QueryRow(t.Context(), "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database").Scan(&names); err != nil {
		t.Fatal(err)
	}
	return names
}

func (s *restoreCLI) manifest(t *testing.T, id string) manifest.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.backupDir, id, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var txnLine = regexp.MustCompile(`undo with: probe revert (\S+)\n`)

func TestRestoreCommands(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newRestoreCLI(t, pg, "clinic")

	code, out, errOut := s.run(t, nil, "backup", "--json")
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, errOut)
	}
	var b struct {
		Manifest manifest.Manifest `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, out)
	}
	id := b.Manifest.ID
	if code, _, errOut := s.run(t, nil, "verify", id); code != 0 {
		t.Fatalf("verify %s: exit %d\n%s", id, code, errOut)
	}
	v1 := s.state(t)
	s.deploy(t)
	v2 := s.state(t)
	if v1 == v2 {
		t.Fatalf("the deploy changed nothing: %s", v1)
	}

	t.Run("no --yes and no terminal", func(t *testing.T) {
		code, out, errOut := s.run(t, nil, "restore", "--snapshot", id)
		if want := "probe restore: not on a terminal and no --yes: refusing (run with --dry-run to see the plan, --yes to go ahead)\n"; code != 2 || errOut != want || out != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, want)
		}
		if got := s.state(t); got != v2 {
			t.Errorf("state changed:\n got %s\nwant %s", got, v2)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		snaps := len(s.list(t))
		code, out, errOut := s.run(t, nil, "restore", "--snapshot", id, "--dry-run")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			"Plan for restoring snapshot " + id + ":\n  1. snapshot " + id + " taken ",
			"checksums verified\n  2. keep the current state: what is restored stays whole beside it (renamed), the rest goes into a pre-restore snapshot\n  3. db: restore db.dump.zst into clinic_restore_",
			"validate 2 tables and migration alembic 0042_add_visits, then swap it in by rename (the current one kept as clinic_pre_",
			"\n  4. data: extract data.tar.zst into " + s.dataDir + ".restore-",
			"\n  5. ready: poll http://127.0.0.1:",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("plan lacks %q:\n%s", want, out)
			}
		}
		if got := s.state(t); got != v2 {
			t.Errorf("state changed:\n got %s\nwant %s", got, v2)
		}
		if n := len(s.list(t)); n != snaps {
			t.Errorf("%d snapshots after the dry run, want %d (no pre-restore snapshot)", n, snaps)
		}
	})

	t.Run("unknown part", func(t *testing.T) {
		code, _, errOut := s.run(t, nil, "restore", "--snapshot", id, "--only", "db,logs", "--yes")
		if want := "probe restore: --only: unknown part \"logs\" (db, data, code)\n"; code != 1 || errOut != want {
			t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
		}
		if got := s.state(t); got != v2 {
			t.Errorf("state changed:\n got %s\nwant %s", got, v2)
		}
	})

	var txn string
	t.Run("only db", func(t *testing.T) {
		code, out, errOut := s.run(t, nil, "restore", "--snapshot", id, "--only", "db", "--yes", "--reason", "cli test")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		m := txnLine.FindStringSubmatch(out)
		if m == nil || !regexp.MustCompile(`(?m)^  db     OK `).MatchString(out) || !regexp.MustCompile(`(?m)^  ready  OK `).MatchString(out) ||
			strings.Contains(out, "data ") {
			t.Fatalf("output:\n%s", out)
		}
		txn = m[1]
		// the database is the snapshot's, the data dir still v2's
		db1, _, _ := strings.Cut(v1, " | a.txt")
		_, data2, _ := strings.Cut(v2, " | a.txt")
		want := db1 + " | a.txt" + strings.Replace(data2, "records 0 | ROLLBACK lines 0", "records 1 | ROLLBACK lines 6", 1)
		if got := s.state(t); got != want {
			t.Errorf("state after --only db:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("revert unknown txn", func(t *testing.T) {
		code, out, errOut := s.run(t, nil, "revert", "20990101T000000Z-abcdef")
		if want := "probe revert: no restore 20990101T000000Z-abcdef on this host (records are in " + filepath.Join(s.stateDir, "restores") + ")\n"; code != 1 || errOut != want {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
		}
	})

	t.Run("revert", func(t *testing.T) {
		if txn == "" {
			t.Fatal("no txn: the --only db restore failed")
		}
		code, out, errOut := s.run(t, nil, "revert", txn)
		if code != 0 || !strings.HasSuffix(out, "restore "+txn+" reverted\n") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		want := strings.Replace(v2, "records 0 | ROLLBACK lines 0", "records 1 | ROLLBACK lines 8", 1)
		if got := s.state(t); got != want {
			t.Errorf("state after the revert:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("drill", func(t *testing.T) {
		before, state := s.databases(t), s.state(t)
		code, out, errOut := s.run(t, nil, "drill", "--snapshot", id)
		if code != 0 || !regexp.MustCompile(`^drill of `+id+` passed in \S+: restored into clinic_restore_drill_\S+, validated, dropped\n$`).MatchString(out) {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if after := s.databases(t); after != before {
			t.Errorf("databases after the drill: %s\nbefore: %s", after, before)
		}
		if got := s.state(t); got != state {
			t.Errorf("the drill changed the live state:\n got %s\nwant %s", got, state)
		}
	})

	t.Run("canary not ready, rollback off", func(t *testing.T) {
		s.ready.Store(http.StatusServiceUnavailable)
		defer s.ready.Store(http.StatusOK)
		state := s.state(t)
		code, out, errOut := s.run(t, map[string]string{"ROLLBACK_CANARY_ENABLED": "false"}, "canary", "--timeout", "1s", "--interval", "200ms")
		if code != 1 || !strings.Contains(errOut, "probe canary: not ready, rollback disabled: http://127.0.0.1:") || !strings.Contains(out, "last: HTTP 503") {
			t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		if got := s.state(t); !strings.HasPrefix(got, strings.Split(state, " | ROLLBACK")[0]) {
			t.Errorf("the canary changed the live state:\n got %s\nwant %s", got, state)
		}
		if m := s.manifest(t, id); m.ReadyCheck != nil {
			t.Errorf("ready_check recorded for a failed canary: %+v", m.ReadyCheck)
		}
	})

	t.Run("canary ready", func(t *testing.T) {
		code, out, errOut := s.run(t, nil, "canary")
		if code != 0 || !strings.Contains(out, "/readyz answered 200 after 1 attempts") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		m := s.manifest(t, id)
		if m.ReadyCheck == nil || !m.ReadyCheck.OK || m.ReadyCheck.At.IsZero() {
			t.Errorf("ready_check of %s = %+v, want ok with a time", id, m.ReadyCheck)
		}
		for _, c := range s.list(t) {
			if c.ID == id && (c.ReadyCheck == nil || !c.ReadyCheck.OK) {
				t.Errorf("the catalog's %s has ready_check %+v", id, c.ReadyCheck)
			}
		}
		// the newest snapshot (the pre-restore one) is not verified: untouched
		for _, c := range s.list(t) {
			if c.ID != id && c.ReadyCheck != nil {
				t.Errorf("ready_check recorded in %s (%s), want only in the newest verified %s", c.ID, c.Trigger, id)
			}
		}
		if code, _, errOut := s.run(t, nil, "verify", id); code != 0 {
			t.Errorf("verify %s after recording the ready check: exit %d\n%s", id, code, errOut)
		}
	})
}

// list is the catalog's snapshots.
func (s *restoreCLI) list(t *testing.T) []manifest.Manifest {
	t.Helper()
	cat, err := manifest.LoadCatalog(filepath.Join(s.backupDir, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return cat.Snapshots
}
