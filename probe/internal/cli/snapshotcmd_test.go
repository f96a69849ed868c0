package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/snapshot"
	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// snapSetup is a database with two tables, a data dir and a config using
// them; store adds a store.dir.
type snapSetup struct {
	cfg       string
	backupDir string
	stateDir  string
	password  string
}

func newSnapSetup(t *testing.T, pg *testenv.PG, db string, store bool) snapSetup {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 256<<10)
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(data, "uploads", "scan.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	storeYAML := ""
	if store {
		storeYAML = fmt.Sprintf("store:\n  dir: %s\n", filepath.Join(dir, "offsite"))
	}
	s := snapSetup{backupDir: filepath.Join(dir, "backups"), stateDir: filepath.Join(dir, "state"), password: pg.Password}
	s.cfg = writeConfig(t, fmt.Sprintf(`host: cli-host
state_dir: %s
checks:
  - {name: disk, type: disk, paths: ["%s"]}
backup:
  dir: %s
  data_dir: %s
  database:
    dsn: %q
%srollback:
  log: %s
`, s.stateDir, dir, s.backupDir, data, pg.DSN(db), storeYAML, filepath.Join(dir, "rollback.log")))
	return s
}

func (s snapSetup) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := run(t, ctx, map[string]string{}, append([]string{"--config", s.cfg}, args...)...)
	if strings.Contains(out+errOut, s.password) {
		t.Errorf("probe %s printed the database password:\n%s%s", strings.Join(args, " "), out, errOut)
	}
	return code, out, errOut
}

func snapDB(t *testing.T, pg *testenv.PG, name string) {
	t.Helper()
	pg.CreateDB(t, name)
	pg.Exec(t, name, `CREATE TABLE users (id int PRIMARY KEY, email text);
		INSERT INTO users SELECT i, 'u' || i || '@example.com' FROM generate_series(1, 2000) i;
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
		INSERT INTO alembic_version VALUES ('0042_add_visits')`)
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestSnapshotCommands(t *testing.T) {
	pg := testenv.Postgres(t)
	snapDB(t, pg, "app")
	s := newSnapSetup(t, pg, "app", false)

	if code, out, errOut := s.run(t, "list"); code != 0 || out != "no snapshots in "+s.backupDir+"\n" {
		t.Errorf("list of nothing: exit %d, %q %q", code, out, errOut)
	}

	// backup --json
	code, out, errOut := s.run(t, "backup", "--json", "--notes", "before the upgrade")
	if code != 0 {
		t.Fatalf("backup --json: exit %d\n%s", code, errOut)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("backup --json is not a JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"manifest", "path", "uploaded", "duration_ms"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("backup --json lacks %q:\n%s", k, out)
		}
	}
	var res struct {
		Manifest   manifest.Manifest `json:"manifest"`
		Path       string            `json:"path"`
		Uploaded   bool              `json:"uploaded"`
		DurationMS *int64            `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	id := m.ID
	if _, err := manifest.ParseID(id); err != nil {
		t.Fatalf("manifest.id: %v", err)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("printed manifest is invalid: %v", err)
	}
	if res.Path != filepath.Join(s.backupDir, id) || res.Uploaded || res.DurationMS == nil || *res.DurationMS < 0 {
		t.Errorf("path %q uploaded %v duration_ms %v; want %s, false, a duration", res.Path, res.Uploaded, res.DurationMS, filepath.Join(s.backupDir, id))
	}
	if m.DB == nil || m.Data == nil {
		t.Fatalf("manifest lacks db or data: %s", out)
	}
	if got := fileSHA(t, filepath.Join(res.Path, manifest.DBFile)); m.DB.SHA256 != got {
		t.Errorf("db.sha256 = %s, the file's is %s", m.DB.SHA256, got)
	}
	if got := fileSHA(t, filepath.Join(res.Path, manifest.DataFile)); m.Data.SHA256 != got {
		t.Errorf("data.sha256 = %s, the file's is %s", m.Data.SHA256, got)
	}
	if m.Notes != "before the upgrade" || m.Trigger != manifest.TriggerManual || m.DB.Migration.Revision != "0042_add_visits" {
		t.Errorf("notes %q trigger %q migration %+v", m.Notes, m.Trigger, m.DB.Migration)
	}

	// list and list --json
	code, out, errOut = s.run(t, "list")
	if code != 0 {
		t.Fatalf("list: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := regexp.MustCompile(`^ID\s+CREATED\s+TRIGGER\s+STATUS\s+DB\s+DATA\s+REVISION\s+MIGRATION\s+OFF-SITE$`)
	row := regexp.MustCompile(`^` + id + `\s+\d{4}-\d\d-\d\d \d\d:\d\d \S+\s+manual\s+complete\s+[\d.]+ [KM]iB\s+[\d.]+ [KM]iB\s+-\s+alembic 0042_add_visits\s+no$`)
	if len(lines) != 2 || !header.MatchString(lines[0]) || !row.MatchString(lines[1]) {
		t.Errorf("list =\n%s\nwant the header and one row for %s", out, id)
	}
	code, out, _ = s.run(t, "list", "--json")
	var listed []manifest.Manifest
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 1 || listed[0].ID != id || listed[0].DB.SHA256 != m.DB.SHA256 {
		t.Errorf("list --json: exit %d, %v, %s", code, err, out)
	}

	// verify: whole, then with one byte of the dump flipped
	code, out, errOut = s.run(t, "verify")
	want := id + "  OK\n  manifest.json  ok\n  manifest.sig   ok\n  db.dump.zst    ok\n  data.tar.zst   ok\n"
	if code != 0 || out != want {
		t.Errorf("verify: exit %d\n%s%s\nwant:\n%s", code, out, errOut, want)
	}
	if code, out, _ := s.run(t, "list"); code != 0 || !strings.Contains(out, " verified ") {
		t.Errorf("list after verify does not show the snapshot verified:\n%s", out)
	}
	dump := filepath.Join(res.Path, manifest.DBFile)
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(dump, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"verify", id}, {"verify", "--all"}} {
		code, out, errOut = s.run(t, args...)
		if code != 1 || !strings.Contains(out, id+"  FAILED\n") ||
			!regexp.MustCompile(`(?m)^  db\.dump\.zst\s+CORRUPT: SHA-256 mismatch`).MatchString(out) ||
			!strings.Contains(out, "  data.tar.zst   ok\n") ||
			!strings.Contains(errOut, "snapshot failed verification: "+id+": db.dump.zst: SHA-256 mismatch") {
			t.Errorf("probe %s of a flipped dump: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	code, out, _ = s.run(t, "verify", "--json", id)
	var verdicts []snapshot.VerifyResult
	if err := json.Unmarshal([]byte(out), &verdicts); code != 1 || err != nil || len(verdicts) != 1 || verdicts[0].OK ||
		verdicts[0].Files[1].File != manifest.SigFile || !verdicts[0].Files[1].OK ||
		verdicts[0].Files[2].File != manifest.DBFile || verdicts[0].Files[2].OK || !verdicts[0].Files[3].OK {
		t.Errorf("verify --json of a flipped dump: exit %d, %v\n%s", code, err, out)
	}

	// push without a store
	code, out, errOut = s.run(t, "push")
	if code != 1 || out != "" || errOut != "probe push: no store configured (store.s3 or store.dir)\n" {
		t.Errorf("push without a store: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// usage
	for _, args := range [][]string{{"verify", "a", "b"}, {"verify", "--all", id}, {"push", "a", "b"}, {"backup", "--bogus"}} {
		if code, _, _ := s.run(t, args...); code != ExitUsage {
			t.Errorf("probe %s: exit %d, want %d", strings.Join(args, " "), code, ExitUsage)
		}
	}
	if code, _, errOut := s.run(t, "verify", "20200101T000000Z-abcdef"); code != 1 || !strings.Contains(errOut, "no snapshot 20200101T000000Z-abcdef in "+s.backupDir) {
		t.Errorf("verify of an unknown id: exit %d, %q", code, errOut)
	}
}

func TestBackupCommandUploadsAndPushes(t *testing.T) {
	pg := testenv.Postgres(t)
	snapDB(t, pg, "app")
	s := newSnapSetup(t, pg, "app", true)

	code, out, errOut := s.run(t, "backup", "--json")
	var res struct {
		Manifest manifest.Manifest `json:"manifest"`
		Uploaded bool              `json:"uploaded"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.Uploaded {
		t.Fatalf("backup --json with a store: exit %d, %v, uploaded %v\n%s%s", code, err, res.Uploaded, out, errOut)
	}
	code, out, errOut = s.run(t, "backup", "--no-upload")
	local := strings.TrimSpace(out)
	if code != 0 {
		t.Fatalf("backup --no-upload: exit %d\n%s", code, errOut)
	}
	code, out, errOut = s.run(t, "list")
	if code != 0 || !regexp.MustCompile(`(?m)^`+local+`\s.*\sno$`).MatchString(out) || !regexp.MustCompile(`(?m)^`+res.Manifest.ID+`\s.*\syes$`).MatchString(out) {
		t.Errorf("list: exit %d: want %s off-site no and %s yes:\n%s%s", code, local, res.Manifest.ID, out, errOut)
	}
	code, out, errOut = s.run(t, "push")
	if code != 0 || !strings.HasPrefix(out, local+" uploaded to ") || strings.Count(out, "\n") != 1 {
		t.Errorf("push: exit %d, stdout %q, stderr %q; want %s uploaded", code, out, errOut, local)
	}
	if code, out, _ := s.run(t, "push"); code != 0 || out != "nothing to upload: every snapshot is off-site\n" {
		t.Errorf("second push: exit %d, %q", code, out)
	}
	code, out, _ = s.run(t, "list", "--remote", "--json")
	var remote []manifest.Manifest
	if err := json.Unmarshal([]byte(out), &remote); code != 0 || err != nil || len(remote) != 2 || remote[0].ID != local || remote[1].ID != res.Manifest.ID {
		t.Errorf("list --remote --json: exit %d, %v:\n%s", code, err, out)
	}
}

func TestSnapshotCommandFailures(t *testing.T) {
	pg := testenv.Postgres(t)
	snapDB(t, pg, "app")

	t.Run("locked", func(t *testing.T) {
		s := newSnapSetup(t, pg, "app", false)
		unlock, err := snapshot.Lock(s.backupDir, "restore")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		want := fmt.Sprintf("another restore is running (pid %d, started ", os.Getpid())
		for _, args := range [][]string{{"backup"}, {"verify", "--all"}, {"push"}} {
			code, _, errOut := s.run(t, args...)
			wantCode := ExitLocked
			if args[0] == "push" {
				wantCode = 1 // no store: refused before the lock
			}
			if code != wantCode || (wantCode == ExitLocked && !strings.Contains(errOut, want)) {
				t.Errorf("probe %s under a restore's lock: exit %d, %q; want %d %q", args[0], code, errOut, wantCode, want)
			}
		}
	})

	t.Run("database missing", func(t *testing.T) {
		s := newSnapSetup(t, pg, "nope", false)
		code, out, errOut := s.run(t, "backup")
		if code != 1 || out != "" || !strings.Contains(errOut, `"nope" does not exist`) {
			t.Fatalf("backup of a missing database: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		found := false
		filepath.WalkDir(s.stateDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, _ := os.ReadFile(p); strings.Contains(string(b), "backup failed") {
					found = true
				}
			}
			return nil
		})
		if !found {
			t.Errorf("no 'backup failed' alert under %s", s.stateDir)
		}
		if code, out, _ := s.run(t, "list"); code != 0 || !strings.HasPrefix(out, "no snapshots") {
			t.Errorf("list after a failed backup: exit %d, %q", code, out)
		}
	})

	t.Run("nothing to verify", func(t *testing.T) {
		s := newSnapSetup(t, pg, "app", false)
		if code, _, errOut := s.run(t, "verify"); code != 1 || errOut != "probe verify: no snapshots to verify\n" {
			t.Errorf("verify with no snapshots: exit %d, %q", code, errOut)
		}
	})
}
