package restore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"backstop/probe/internal/containers"
	"backstop/probe/internal/snapshot"
	"backstop/shared/alert"
	"backstop/shared/manifest"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// rigHost is the host name every rig's snapshots are taken on.
const rigHost = "rig-host"

// restoreRig is one app on a shared cluster: its own database (an app
// table, a child table and alembic_version), a data directory with files,
// a symlink and an empty directory, and a snapshot engine over them as
// snapshot.FromConfig builds it.
type restoreRig struct {
	pg          *testenv.PG
	db          string
	dsn         string
	dataDir     string
	backupDir   string
	stateDir    string
	rollbackLog string
	eng         *snapshot.Engine
}

type rigOpts struct {
	dataParent string      // where the data dir lives; "" = a temp dir
	rows       int         // patients; visits get twice as many (default 500)
	blob       int         // bytes of random data in uploads/scan-1.bin (default 64 KiB)
	appImage   string      // the app image snapshots record; "" = none
	store      store.Store // off-site copy; nil = none
}

func newRestoreRig(t *testing.T, pg *testenv.PG, name string, o rigOpts) *restoreRig {
	t.Helper()
	if o.rows == 0 {
		o.rows = 500
	}
	if o.blob == 0 {
		o.blob = 64 << 10
	}
	if o.dataParent == "" {
		o.dataParent = t.TempDir()
	}
	root := t.TempDir()
	g := &restoreRig{pg: pg, db: name, dsn: pg.DSN(name), dataDir: filepath.Join(o.dataParent, "data"),
		backupDir: filepath.Join(root, "backups"), stateDir: filepath.Join(root, "state"),
		rollbackLog: filepath.Join(root, "log", "rollback.log")}
	pg.CreateDB(t, name)
	pg.Exec(t, name, fmt.Sprintf(`
		CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, email text, note text);
		INSERT INTO patients SELECT g, 'patient ' || g, 'p' || g || '@example.com', md5(g::text) FROM generate_series(1, %[1]d) g;
		CREATE TABLE visits (id bigserial PRIMARY KEY, patient_id int NOT NULL REFERENCES patients, at timestamptz NOT NULL DEFAULT '2025-01-01T00:00:00Z', note text);
		INSERT INTO visits (patient_id, note) SELECT (g %% %[1]d) + 1, repeat(md5(g::text), 4) FROM generate_series(1, %[1]d * 2) g;
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
		INSERT INTO alembic_version VALUES ('0042_add_visits');`, o.rows))

	blob := make([]byte, o.blob)
	rand.Read(blob)
	for _, d := range []string{"uploads", "config", "cache/empty"} {
		if err := os.MkdirAll(filepath.Join(g.dataDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rigWrite(t, filepath.Join(g.dataDir, "uploads", "scan-1.bin"), blob, 0o644)
	rigWrite(t, filepath.Join(g.dataDir, "uploads", "readme.txt"), []byte("uploads of v1\n"), 0o644)
	rigWrite(t, filepath.Join(g.dataDir, "config", "settings.json"), []byte(`{"feature":"v1"}`), 0o600)
	if err := os.Symlink("uploads/readme.txt", filepath.Join(g.dataDir, "current")); err != nil {
		t.Fatal(err)
	}

	dumper, err := snapshot.NewHostDumper(g.dsn, pg.Bin("pg_dump"))
	if err != nil {
		t.Fatal(err)
	}
	g.eng = &snapshot.Engine{Dir: g.backupDir, Host: rigHost, DSN: g.dsn, Dumper: dumper, PgRestore: pg.Bin("pg_restore"),
		DataDir: g.dataDir, RollbackLog: g.rollbackLog, Store: o.store, Log: testLogger(t)}
	if o.appImage != "" {
		img := o.appImage
		g.eng.AppImage = func(context.Context) (string, error) { return img, nil }
	}
	return g
}

func rigWrite(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// backup takes and verifies a snapshot (uploading it when the rig has a
// store) and returns its id.
func (g *restoreRig) backup(t *testing.T) string {
	t.Helper()
	res, err := g.eng.Backup(t.Context(), snapshot.Options{Upload: g.eng.Store != nil})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if g.eng.Store != nil && !res.Uploaded {
		t.Fatalf("backup not uploaded: %s", res.UploadErr)
	}
	if _, err := g.eng.Verify(t.Context(), res.Manifest.ID); err != nil {
		t.Fatalf("verify %s: %v", res.Manifest.ID, err)
	}
	return res.Manifest.ID
}

// deploy plays the bad deploy's changes to the state: a migration that
// drops a column, changes rows and moves alembic_version on, and files
// rewritten, removed and added in the data dir.
func (g *restoreRig) deploy(t *testing.T) {
	t.Helper()
	g.pg.Exec(t, g.db, `
		ALTER TABLE patients DROP COLUMN email;
		UPDATE alembic_version SET version_num = '0043_drop_email';
		DELETE FROM visits WHERE id % 7 = 0;
		INSERT INTO visits (patient_id, note) VALUES (1, 'written by v2');`)
	rigWrite(t, filepath.Join(g.dataDir, "uploads", "readme.txt"), []byte("uploads of v2, rewritten\n"), 0o644)
	rigWrite(t, filepath.Join(g.dataDir, "config", "settings.json"), []byte(`{"feature":"v2","extra":true}`), 0o600)
	if err := os.Remove(filepath.Join(g.dataDir, "uploads", "scan-1.bin")); err != nil {
		t.Fatal(err)
	}
	rigWrite(t, filepath.Join(g.dataDir, "uploads", "scan-2.bin"), []byte("v2's own upload"), 0o644)
	os.Remove(filepath.Join(g.dataDir, "current"))
	if err := os.Symlink("config/settings.json", filepath.Join(g.dataDir, "current")); err != nil {
		t.Fatal(err)
	}
}

// restorer is the Restorer FromConfig would build for the rig.
func (g *restoreRig) restorer(t *testing.T, code Code) *Restorer {
	if code == nil {
		code = NoCode()
	}
	return &Restorer{Snap: g.eng, DB: &DB{DSN: g.dsn, PgRestore: g.pg.Bin("pg_restore"), Log: testLogger(t)},
		DataDir: g.dataDir, Code: code, ReadyTimeout: 20 * time.Second, ReadyInterval: 300 * time.Millisecond,
		RollbackLog: g.rollbackLog, StateDir: g.stateDir, KeepPre: 2, Log: testLogger(t)}
}

// sums is each table's row count and the md5 of its rows in order, with
// its columns, read as the superuser from database db (default the live one).
func (g *restoreRig) sums(t *testing.T, db string) map[string]string {
	t.Helper()
	if db == "" {
		db = g.db
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, g.pg.DSN(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT c.relname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relkind = 'r' AND n.nspname = 'public' GROUP BY c.relname`)
	if err != nil {
		t.Fatalf("tables of %s: %v", db, err)
	}
	cols := map[string]string{}
	for rows.Next() {
		var n, c string
		if err := rows.Scan(&n, &c); err != nil {
			t.Fatal(err)
		}
		cols[n] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for n, c := range cols {
		var sum string
		if err := conn.QueryRow(ctx, "SELECT count(*)::text || ' rows md5 ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') FROM "+
			pgx.Identifier{n}.Sanitize()+" t").Scan(&sum); err != nil {
			t.Fatalf("checksum %s.%s: %v", db, n, err)
		}
		out[n] = "(" + c + ") " + sum
	}
	return out
}

// tree describes every entry under dir: type, mode, content SHA-256,
// mtime (seconds) or link target.
func rigTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(data)
			out[rel] = fmt.Sprintf("file %v %s mtime %d", fi.Mode(), hex.EncodeToString(s[:8]), fi.ModTime().Unix())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// diffMaps reports every key where got differs from want.
func diffMaps(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if want[k] != got[k] {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], want[k])
		}
	}
}

// stateDBs lists the databases beside the live one (<db>_restore_*,
// <db>_pre_*, <db>_failed_*).
func (g *restoreRig) stateDBs(t *testing.T, kind string) []string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, g.pg.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname", g.db+"_"+kind+"_")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// siblings lists what lies beside the data dir under its name (data.*).
func (g *restoreRig) siblings(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(g.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), filepath.Base(g.dataDir)+".") {
			out = append(out, e.Name())
		}
	}
	return out
}

var rollbackLine = regexp.MustCompile(`ROLLBACK id=(\S+) step=(\S+) status=(\S+)`)

// steps lists "step status" of txn's ROLLBACK lines in the rollback log.
func (g *restoreRig) steps(t *testing.T, txn string) []string {
	t.Helper()
	data, err := os.ReadFile(g.rollbackLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, m := range rollbackLine.FindAllStringSubmatch(string(data), -1) {
		if m[1] == txn {
			out = append(out, m[2]+" "+m[3])
		}
	}
	return out
}

// snapshots lists the catalog's snapshot ids and triggers.
func (g *restoreRig) snapshots(t *testing.T) []string {
	t.Helper()
	cat, err := manifest.LoadCatalog(filepath.Join(g.backupDir, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range cat.Snapshots {
		out = append(out, m.ID+" "+string(m.Trigger))
	}
	sort.Strings(out)
	return out
}

type eventLog struct {
	mu  sync.Mutex
	evs []alert.Event
}

func (l *eventLog) add(ev alert.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) summaries() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		out = append(out, string(e.State)+": "+e.Summary)
	}
	return out
}

// TestRestoreWholeStory: a snapshot under v1, a deploy of v2 whose
// /readyz fails with a migration that drops a column and rewritten files,
// the canary restores the snapshot (db, data, code) and a revert brings
// v2's state back exactly.
func TestRestoreWholeStory(t *testing.T) {
	pg := testenv.Postgres(t)
	d := testenv.Docker(t)
	ctx := t.Context()

	// A Kamal host: psyfit-web-v1 behind kamal-proxy (deployed for any
	// host, so the ready URL works on 127.0.0.1).
	web := d.Image(t, "webapp")
	s := &kamalSetup{d: d, app: "psyfit-web-" + testRandHex(3), v2Image: web, byName: map[string]*testenv.Container{}, stateDir: t.TempDir()}
	s.v1Image = "backstop-test/webapp:v1-" + testRandHex(4)
	if _, err := d.Client.ImageTag(ctx, client.ImageTagOptions{Source: web, Target: s.v1Image}); err != nil {
		t.Fatalf("tag %s as %s: %v", web, s.v1Image, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d.Client.ImageRemove(ctx, s.v1Image, client.ImageRemoveOptions{})
	})
	health := &testenv.Healthcheck{Cmd: []string{"/webapp", "-healthcheck", "http://127.0.0.1:3000/up"}, Interval: 200 * time.Millisecond}
	v1 := d.Run(t, testenv.RunOpts{Image: s.v1Image, Name: s.app + "-v1", Env: []string{"VERSION=v1"}, Health: health})
	s.byName["v1"] = v1
	v1.WaitHealth(t, "healthy")
	s.proxy = d.Run(t, testenv.RunOpts{Image: d.ImageAt(t, "kamalproxy", "/usr/local/bin/kamal-proxy"), Name: "kamal-proxy-" + testRandHex(4), Ports: []int{80}})
	kamalDeploy := func(c *testenv.Container) {
		t.Helper()
		if code, out := s.exec(t, "kamal-proxy", "deploy", s.app, "--target", c.Inspect(t).NetworkSettings.Networks["bridge"].IPAddress.String()+":3000"); code != 0 {
			t.Fatalf("kamal-proxy deploy %s: exit %d: %s", c.Name, code, out)
		}
	}
	kamalDeploy(v1)
	if got := s.version(t); got != "v1" {
		t.Fatalf("before the deploy: version %q through the proxy, want v1", got)
	}

	// The snapshot under v1, its image recorded as FromConfig finds it.
	g := newRestoreRig(t, pg, "psyfit", rigOpts{})
	g.eng.AppImage = func(ctx context.Context) (string, error) {
		c, found, err := containers.Find(ctx, d.Client, s.app)
		if err != nil || !found {
			return "", fmt.Errorf("app container %s: found %v, %v", s.app, found, err)
		}
		return c.Image, nil
	}
	id := g.backup(t)
	v1Sums, v1Tree := g.sums(t, ""), rigTree(t, g.dataDir)
	if m, _ := manifest.LoadCatalog(filepath.Join(g.backupDir, manifest.ManifestFile)); m != nil {
		if snap, ok := m.Find(id); !ok || snap.App.Image != s.v1Image || snap.Status != manifest.StatusVerified {
			t.Fatalf("snapshot %s: app %+v status %s; want image %s, verified", id, snap.App, snap.Status, s.v1Image)
		}
	}

	// Deploy v2: started, the proxy switched to it, v1 left exited as
	// Kamal leaves it; the migration and the files change.
	v2 := d.Run(t, testenv.RunOpts{Image: web, Name: s.app + "-v2", Env: []string{"VERSION=v2", "READY=fail"}, Health: health})
	s.byName["v2"] = v2
	v2.WaitHealth(t, "healthy")
	kamalDeploy(v2)
	v1.Stop(t)
	g.deploy(t)
	v2Sums, v2Tree := g.sums(t, ""), rigTree(t, g.dataDir)
	if got := s.version(t); got != "v2" {
		t.Fatalf("after the deploy: version %q through the proxy, want v2", got)
	}
	if _, ok := v2Sums["patients"]; !ok || v2Sums["patients"] == v1Sums["patients"] || v2Sums["alembic_version"] == v1Sums["alembic_version"] {
		t.Fatalf("the migration changed nothing: %v", v2Sums)
	}

	events := &eventLog{}
	r := g.restorer(t, NewDockerCode(d.Client, s.app, 3000, ProxyConfig{Container: s.proxy.Name}, filepath.Join(g.stateDir, "restores"), 30*time.Second))
	r.ReadyURL = s.proxy.URL(80, "/readyz")
	r.Alert = events.add

	cr, err := r.Canary(ctx, 3*time.Second, 500*time.Millisecond, true)
	if err == nil || cr.Ready || !cr.RolledBack || cr.Restore == nil {
		t.Fatalf("Canary = %+v, %v; want not ready and rolled back", cr, err)
	}
	res := *cr.Restore
	txn := res.Txn
	if want := fmt.Sprintf("not ready; rolled back to snapshot %s (restore %s)", id, txn); err.Error() != want {
		t.Errorf("Canary error = %q, want %q", err, want)
	}
	if !strings.Contains(cr.Detail, "not ready after 3s") || !strings.Contains(cr.Detail, "last: HTTP 503") {
		t.Errorf("Canary detail = %q, want the 503s it saw", cr.Detail)
	}
	// db and data are both restored: their pre-states are kept by rename
	// (checked below), so no pre-restore snapshot is taken.
	if res.Snapshot != id || res.Reverted || res.PreSnapshot != "" {
		t.Errorf("restore result: snapshot %s reverted %v pre %q; want %s, not reverted, no pre-restore snapshot", res.Snapshot, res.Reverted, res.PreSnapshot, id)
	}
	var got []string
	for _, st := range res.Steps {
		got = append(got, st.Step+" "+st.Status)
	}
	if want := "db ok,data ok,code ok,ready ok"; strings.Join(got, ",") != want {
		t.Errorf("steps = %v, want %s", got, want)
	}

	// v1 serves through the proxy, v2 is stopped.
	if got := s.version(t); got != "v1" {
		t.Errorf("after the restore: version %q through the proxy, want v1", got)
	}
	if st := v2.Inspect(t).State; st == nil || st.Status != container.StateExited {
		t.Errorf("after the restore: v2 is %v, want exited", st)
	}
	// The database equals the snapshot, the data dir is byte-identical.
	diffMaps(t, "live database after the restore", v1Sums, g.sums(t, ""))
	diffMaps(t, "data dir after the restore", v1Tree, rigTree(t, g.dataDir))
	// The pre-states hold v2's state exactly.
	if pre := g.stateDBs(t, "pre"); len(pre) != 1 || pre[0] != r.DB.Pre(txn) {
		t.Errorf("pre-state databases = %v, want [%s]", pre, r.DB.Pre(txn))
	} else {
		g.pg.Exec(t, "postgres", "ALTER DATABASE "+pgx.Identifier{pre[0]}.Sanitize()+" WITH ALLOW_CONNECTIONS true")
		diffMaps(t, "pre-state database", v2Sums, g.sums(t, pre[0]))
		g.pg.Exec(t, "postgres", "ALTER DATABASE "+pgx.Identifier{pre[0]}.Sanitize()+" WITH ALLOW_CONNECTIONS false")
	}
	if sib := g.siblings(t); len(sib) != 1 || sib[0] != "data.pre-"+txn {
		t.Errorf("beside the data dir: %v, want [data.pre-%s]", sib, txn)
	} else {
		diffMaps(t, "pre-state data dir", v2Tree, rigTree(t, PreDir(g.dataDir, txn)))
	}
	if got, want := strings.Join(g.steps(t, txn), ","), "start start,db start,db ok,data start,data ok,code start,code ok,ready start,ready ok,end ok"; got != want {
		t.Errorf("rollback log for %s:\n got %s\nwant %s", txn, got, want)
	}
	if got := g.steps(t, "canary"); strings.Join(got, ",") != "ready failed" {
		t.Errorf("rollback log for the canary: %v, want [ready failed]", got)
	}
	if log, _ := os.ReadFile(g.rollbackLog); !strings.Contains(string(log), "reason=readyz_fail") || !strings.Contains(string(log), fmt.Sprintf("ROLLBACK id=%s step=start status=start snapshot=%s reason=\"readyz_fail\"", txn, id)) {
		t.Errorf("rollback log does not give reason readyz_fail:\n%s", log)
	}
	if ev := events.summaries(); len(ev) != 2 || !strings.HasPrefix(ev[0], "info: restore "+txn+" of snapshot "+id+" started") ||
		!strings.HasPrefix(ev[1], "info: restore "+txn+" of snapshot "+id+" done in ") {
		t.Errorf("events = %q, want the restore's start and end", ev)
	}

	// probe revert TXN, from a fresh restorer as another process would.
	r2 := g.restorer(t, NewDockerCode(d.Client, s.app, 3000, ProxyConfig{Container: s.proxy.Name}, filepath.Join(g.stateDir, "restores"), 30*time.Second))
	rv, err := r2.Revert(ctx, txn)
	if err != nil || !rv.Reverted {
		t.Fatalf("Revert(%s) = %+v, %v", txn, rv, err)
	}
	if got := s.version(t); got != "v2" {
		t.Errorf("after the revert: version %q through the proxy, want v2", got)
	}
	if st := v1.Inspect(t).State; st == nil || st.Status != container.StateExited {
		t.Errorf("after the revert: v1 is %v, want exited", st)
	}
	diffMaps(t, "live database after the revert", v2Sums, g.sums(t, ""))
	diffMaps(t, "data dir after the revert", v2Tree, rigTree(t, g.dataDir))
	if got, want := strings.Join(g.steps(t, txn), ","), "end ok,revert start,code reverted,data reverted,db reverted"; !strings.HasSuffix(got, want) {
		t.Errorf("rollback log after the revert: %s, want it to end with %s", got, want)
	}
	if _, err := r2.Revert(ctx, txn); err == nil || err.Error() != "restore "+txn+" was already reverted" {
		t.Errorf("second Revert: %v, want already reverted", err)
	}
}
