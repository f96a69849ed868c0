package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"backstop/probe/internal/snapshot"
	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

const appPassword = "app-secret-pw"

// dbFixture is a cluster with an app database "shop" owned by the
// non-superuser "app" (CREATEDB), as a Kamal or Render app has it.
type dbFixture struct {
	pg  *testenv.PG
	dsn string // app's DSN to shop
}

func newDBFixture(t *testing.T) *dbFixture {
	t.Helper()
	pg := testenv.Postgres(t)
	for _, sql := range []string{
		"CREATE ROLE app LOGIN CREATEDB PASSWORD '" + appPassword + "'",
		"CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
		"CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'",
		"CREATE DATABASE shop OWNER app",
		"REVOKE ALL ON DATABASE shop FROM PUBLIC",
		"GRANT CONNECT ON DATABASE shop TO reader",
		`ALTER DATABASE shop SET search_path = "$user", public, billing`,
		"ALTER DATABASE shop SET statement_timeout = '5min'",
		"ALTER ROLE app IN DATABASE shop SET work_mem = '7MB'",
	} {
		pg.Exec(t, "postgres", sql)
	}
	f := &dbFixture{pg: pg, dsn: f0dsn(pg, "app", appPassword, "shop")}
	f.exec(t, f.dsn, `
		CREATE SCHEMA billing;
		CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text);
		CREATE TABLE billing.invoices (id serial PRIMARY KEY, user_id int REFERENCES users, amount numeric);
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
		CREATE TABLE events (id bigserial PRIMARY KEY, note text);
		INSERT INTO alembic_version VALUES ('rev1');
		INSERT INTO users SELECT g, 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 200) g;
		INSERT INTO billing.invoices (user_id, amount) SELECT (g % 200) + 1, g * 1.5 FROM generate_series(1, 500) g;
		GRANT SELECT ON users TO reader;`)
	return f
}

func f0dsn(pg *testenv.PG, user, pw, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, pw), Host: pg.Host + ":" + strconv.Itoa(pg.Port),
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=5"}
	return u.String()
}

func (f *dbFixture) exec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("exec: %v\n%s", err, sql)
	}
}

// super is the superuser's DSN to db.
func (f *dbFixture) super(db string) string { return f.pg.DSN(db) }

func (f *dbFixture) newDB(t *testing.T) *DB {
	return &DB{DSN: f.dsn, PgRestore: f.pg.Bin("pg_restore"), Log: testLogger(t)}
}

// mutate plays a bad deploy: a migration that drops a column, deletes
// rows and moves the revision on.
func (f *dbFixture) mutate(t *testing.T) {
	t.Helper()
	f.exec(t, f.dsn, `
		ALTER TABLE users DROP COLUMN email;
		DELETE FROM billing.invoices WHERE user_id > 150;
		DELETE FROM users WHERE id > 150;
		UPDATE alembic_version SET version_num = 'rev2';
		INSERT INTO billing.invoices (user_id, amount) VALUES (1, 99);`)
}

// takeSnapshot dumps the app database as `probe backup` does: host
// pg_dump through a zstd Sink, the manifest's facts from Inspect.
func (f *dbFixture) takeSnapshot(t *testing.T) ([]byte, manifest.Manifest) {
	t.Helper()
	ctx := t.Context()
	info, err := snapshot.Inspect(ctx, f.dsn)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	hd, err := snapshot.NewHostDumper(f.dsn, f.pg.Bin("pg_dump"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sink, err := snapshot.NewSink(&buf, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.Dump(ctx, sink); err != nil {
		t.Fatalf("dump: %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	m := manifest.Manifest{Schema: manifest.Schema, ID: "20250102T030405Z-abc123", Host: "test", Status: manifest.StatusComplete,
		DB: &manifest.DB{Database: info.Database, ServerVersion: info.ServerVersion, File: manifest.DBFile,
			Migration: manifest.Migration{Tool: info.Migration.Tool, Revision: info.Migration.Revision},
			Size:      int64(buf.Len()), Compression: manifest.CompressionZstd, Tables: info.Tables}}
	return buf.Bytes(), m
}

// sums is each table's row count and md5 of its rows in order, read as
// the superuser (pre-states refuse connections until allowed).
func (f *dbFixture) sums(t *testing.T, db string) map[string]string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, f.super(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var s, n string
		err := r.Scan(&s, &n)
		return pgx.Identifier{s, n}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, id := range ids {
		var sum string
		err := conn.QueryRow(ctx, "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') FROM "+id.Sanitize()+" t").Scan(&sum)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.Join(id, ".")] = sum
	}
	return out
}

func (f *dbFixture) query(t *testing.T, db, sql string, args ...any) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, f.super(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("query %s: %v", sql, err)
	}
	return s
}

// databases lists the databases whose names start with prefix.
func (f *dbFixture) databases(t *testing.T, prefix string) []string {
	t.Helper()
	s := f.query(t, "postgres", "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database WHERE starts_with(datname, $1)", prefix)
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// dbProps are the live database's properties a dump does not carry.
func (f *dbFixture) dbProps(t *testing.T, db string) string {
	t.Helper()
	return f.query(t, "postgres", `SELECT concat_ws(' | ',
		pg_get_userbyid(d.datdba),
		has_database_privilege('reader', d.oid, 'CONNECT'),
		has_database_privilege('outsider', d.oid, 'CONNECT'),
		(SELECT string_agg(coalesce(r.rolname, '*') || ':' || array_to_string(s.setconfig, ','), ' ' ORDER BY r.rolname NULLS FIRST)
		 FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = d.oid))
		FROM pg_database d WHERE d.datname = $1`, db)
}

func (f *dbFixture) allowConn(t *testing.T, db string) bool {
	t.Helper()
	return f.query(t, "postgres", "SELECT datallowconn::text FROM pg_database WHERE datname = $1", db) == "true"
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestStateNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("d", 60)
	cases := []struct {
		name, live, kind, txn, want string
	}{
		{"plain", "shop", kindRestore, "20250102t030405z_abc123", "shop_restore_20250102t030405z_abc123"},
		{"unsafe characters become underscores", "shop", kindPre, "2025-01-02T03:04Z.x", "shop_pre_2025_01_02t03_04z_x"},
		{"long txn keeps its head and a hash", "shop", kindPre, strings.Repeat("a", 70), "shop_pre_" + strings.Repeat("a", 41) + "_" + shortHash(strings.Repeat("a", 70))},
		{"long live name is shortened with a hash", long, kindFailed, "t1", strings.Repeat("d", 28) + "_" + shortHash(long) + "_failed_t1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := stateName(c.live, c.kind, c.txn)
			if got != c.want {
				t.Errorf("stateName(%q, %q, %q) = %q, want %q", c.live, c.kind, c.txn, got, c.want)
			}
			if len(got) > maxIdent {
				t.Errorf("%q is %d bytes, PostgreSQL keeps %d", got, len(got), maxIdent)
			}
		})
	}
	t.Run("every kind of one txn shares its suffix and fits", func(t *testing.T) {
		for _, live := range []string{"shop", long, "é" + strings.Repeat("x", 50)} {
			txn := strings.Repeat("z", 40) + "-1"
			var suffixes []string
			for _, k := range []string{kindRestore, kindPre, kindFailed} {
				n := stateName(live, k, txn)
				if len(n) > maxIdent || !strings.HasPrefix(n, livePart(live)+"_"+k+"_") {
					t.Errorf("stateName(%q, %s) = %q (%d bytes)", live, k, n, len(n))
				}
				suffixes = append(suffixes, strings.TrimPrefix(n, livePart(live)+"_"+k+"_"))
			}
			if suffixes[0] != suffixes[1] || suffixes[1] != suffixes[2] {
				t.Errorf("live %q: suffixes differ: %q", live, suffixes)
			}
		}
		if stateName("shop", kindPre, strings.Repeat("a", 70)) == stateName("shop", kindPre, strings.Repeat("a", 71)) {
			t.Error("two long txns sharing a head got the same name")
		}
	})
	d := &DB{DSN: "postgres://app:pw@127.0.0.1:5432/shop"}
	if d.Scratch("t1") != "shop_restore_t1" || d.Pre("t1") != "shop_pre_t1" || d.Failed("t1") != "shop_failed_t1" {
		t.Errorf("Scratch/Pre/Failed(t1) = %s %s %s", d.Scratch("t1"), d.Pre("t1"), d.Failed("t1"))
	}
}

// TestRestoreAndSwap is the whole database step: hook, restore into the
// scratch database, validate, swap while the app holds a session.
func TestRestoreAndSwap(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	ctx := t.Context()
	want, m := f.takeSnapshot(t)
	snap := f.sums(t, "shop")
	props := f.dbProps(t, "shop")
	f.mutate(t)
	bad := f.sums(t, "shop")

	held, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	// An open transaction holding a lock, as a busy app has.
	if _, err := held.Exec(ctx, "BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	hookOut := filepath.Join(t.TempDir(), "hook")
	d := f.newDB(t)
	d.Hook = `printf '%s|%s|%s|%s|%s' "$TARGET_REVISION" "$MIGRATION_TOOL" "$TXN" "$DATABASE" "$SNAPSHOT" > ` + hookOut
	if err := d.Restore(ctx, "t1", bytes.NewReader(want), m); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, _ := os.ReadFile(hookOut); string(got) != "rev1|alembic|t1|shop|"+m.ID {
		t.Errorf("hook saw %q, want rev1|alembic|t1|shop|%s", got, m.ID)
	}
	if got := f.sums(t, "shop_restore_t1"); !equalMaps(got, snap) {
		t.Errorf("scratch database differs from the snapshot:\n got %v\nwant %v", got, snap)
	}
	if got := f.sums(t, "shop"); !equalMaps(got, bad) {
		t.Errorf("Restore touched the live database:\n got %v\nwant %v", got, bad)
	}

	unavailable, err := d.Swap(ctx, "t1")
	if err != nil {
		t.Fatalf("Swap: %v", err)
	}
	t.Logf("swap: unavailable %v", unavailable)

	if _, err := held.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the session connected to the live database during the swap still works")
	}
	re, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatalf("reconnect right after the swap: %v", err)
	}
	var email string
	if err := re.QueryRow(ctx, "SELECT email FROM users WHERE id = 200").Scan(&email); err != nil || email != "u200@example.com" {
		t.Errorf("restored users.email of 200 = %q, %v", email, err)
	}
	re.Close(ctx)
	if got := f.sums(t, "shop"); !equalMaps(got, snap) {
		t.Errorf("live database after the swap differs from the snapshot:\n got %v\nwant %v", got, snap)
	}
	if got := f.dbProps(t, "shop"); got != props {
		t.Errorf("live database properties after the swap = %q, want the old live's %q", got, props)
	}
	if got := f.databases(t, "shop"); strings.Join(got, ",") != "shop,shop_pre_t1" {
		t.Errorf("databases after the swap: %v, want shop, shop_pre_t1", got)
	}
	if f.allowConn(t, "shop_pre_t1") {
		t.Error("the pre-state allows connections")
	}
	f.pg.Exec(t, "postgres", "ALTER DATABASE shop_pre_t1 WITH ALLOW_CONNECTIONS true")
	if got := f.sums(t, "shop_pre_t1"); !equalMaps(got, bad) {
		t.Errorf("pre-state differs from the old live database:\n got %v\nwant %v", got, bad)
	}
}

// TestSwapWriteUnavailability has a client insert in a loop, one new
// connection per insert, while the swap runs: it fails only while Swap
// runs, and the first attempt after Swap returns succeeds.
func TestSwapWriteUnavailability(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	ctx := t.Context()
	dump, m := f.takeSnapshot(t)
	d := f.newDB(t)

	type attempt struct {
		start, end time.Time
		err        error
	}
	var mu sync.Mutex
	var attempts []attempt
	stop := make(chan struct{})
	done := make(chan struct{})
	insertDSN := f.dsn + "&connect_timeout=1"
	const inserters = 4
	var wg sync.WaitGroup
	for range inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := attempt{start: time.Now()}
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				conn, err := pgx.Connect(actx, insertDSN)
				if err == nil {
					_, err = conn.Exec(actx, "INSERT INTO events (note) VALUES ('loop')")
					conn.Close(actx)
				}
				cancel()
				a.end, a.err = time.Now(), err
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	successesAfter := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range attempts {
			if a.err == nil && a.start.After(at) {
				n++
			}
		}
		return n
	}
	waitFor := func(at time.Time) {
		for successesAfter(at) < 10 {
			select {
			case <-done:
				t.Fatal("inserter stopped")
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	start := time.Now()
	if err := d.Restore(ctx, "t1", bytes.NewReader(dump), m); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	waitFor(start)
	swapStart := time.Now()
	unavailable, err := d.Swap(ctx, "t1")
	swapEnd := time.Now()
	if err != nil {
		t.Fatalf("Swap: %v", err)
	}
	total := swapEnd.Sub(start)
	waitFor(swapEnd)
	close(stop)
	<-done

	var failures []attempt
	var errs []error
	var firstAfter *attempt
	for i, a := range attempts {
		if a.err != nil {
			failures = append(failures, a)
			errs = append(errs, a.err)
			if a.end.Before(swapStart) || a.start.After(swapEnd) {
				t.Errorf("insert failed outside the swap (swap %s..%s, attempt %s..%s): %v",
					swapStart.Format("15:04:05.000"), swapEnd.Format("15:04:05.000"), a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"), a.err)
			}
		}
		if a.start.After(swapEnd) && (firstAfter == nil || a.start.Before(firstAfter.start)) {
			firstAfter = &attempts[i]
		}
	}
	if firstAfter == nil || firstAfter.err != nil {
		t.Errorf("the first insert after the swap: %+v", firstAfter)
	}
	if unavailable >= total {
		t.Errorf("unavailable %v is not below the whole restore's %v", unavailable, total)
	}
	window := time.Duration(0)
	if len(failures) > 0 {
		window = failures[len(failures)-1].end.Sub(failures[0].start)
	}
	t.Logf("restore+swap %v; Swap call %v; reported unavailable %v; %d of %d inserts failed, over %v; causes: %v",
		total, swapEnd.Sub(swapStart), unavailable, len(failures), len(attempts), window, distinct(errs))
}

// distinct lists the different messages of errs.
func distinct(errs []error) []string {
	seen := map[string]bool{}
	var out []string
	for _, err := range errs {
		if msg := err.Error(); !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	return out
}

func TestRestoreFailures(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	dump, m := f.takeSnapshot(t)
	f.mutate(t)
	live := f.sums(t, "shop")

	var notArchive bytes.Buffer
	enc, _ := zstd.NewWriter(&notArchive)
	enc.Write([]byte("this is not a pg_dump archive\n"))
	enc.Close()
	hookSaw := filepath.Join(t.TempDir(), "hook-saw")
	psql := fmt.Sprintf("PGPASSWORD=%s %s -h 127.0.0.1 -p %d -U postgres -XAtc \"SELECT count(*) FROM pg_database WHERE datname LIKE 'shop\\_restore\\_%%'\" postgres",
		f.pg.Password, f.pg.Bin("psql"), f.pg.Port)

	cases := []struct {
		name     string
		dump     []byte
		manifest func(*manifest.Manifest)
		hook     string
		want     string
		invalid  bool // a *ValidationError
	}{
		{name: "dump cut short", dump: dump[:len(dump)*2/3], want: "read dump: unexpected EOF"},
		{name: "not a pg_dump archive", dump: notArchive.Bytes(), want: "pg_restore into shop_restore_t_not_a_pg_dump_archive: exit status 1: pg_restore: error: input file does not appear to be a valid archive"},
		{name: "row count differs", dump: dump, manifest: func(m *manifest.Manifest) { m.DB.Tables["public.users"] = 199 },
			want: "validate shop_restore_t_row_count_differs: table public.users has 200 rows, snapshot has 199", invalid: true},
		{name: "table missing", dump: dump, manifest: func(m *manifest.Manifest) { m.DB.Tables["billing.refunds"] = 3 },
			want: "validate shop_restore_t_table_missing: table billing.refunds missing (snapshot has 3 rows)", invalid: true},
		{name: "migration revision differs", dump: dump, manifest: func(m *manifest.Manifest) { m.DB.Migration.Revision = "rev0" },
			want: "validate shop_restore_t_migration_revision_differs: migration revision is alembic rev1, snapshot has alembic rev0", invalid: true},
		{name: "hook fails", dump: dump, hook: psql + " > " + hookSaw + "; echo cannot downgrade to $TARGET_REVISION >&2; exit 3",
			want: "pre-restore hook: exit status 3: cannot downgrade to rev1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			txn := "t_" + strings.ReplaceAll(c.name, " ", "_")
			mm := m
			db := *m.DB
			db.Tables = map[string]int64{}
			for k, v := range m.DB.Tables {
				db.Tables[k] = v
			}
			mm.DB = &db
			if c.manifest != nil {
				c.manifest(&mm)
			}
			d := f.newDB(t)
			d.Hook = c.hook
			err := d.Restore(t.Context(), txn, bytes.NewReader(c.dump), mm)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Restore = %v, want an error containing %q", err, c.want)
			}
			var ve *ValidationError
			if errors.As(err, &ve) != c.invalid {
				t.Errorf("errors.As(%v, *ValidationError) = %v, want %v", err, !c.invalid, c.invalid)
			}
			if strings.Contains(err.Error(), appPassword) {
				t.Errorf("error holds the password: %v", err)
			}
			if got := f.databases(t, "shop_"); len(got) != 0 {
				t.Errorf("left behind: %v", got)
			}
			if got := f.sums(t, "shop"); !equalMaps(got, live) {
				t.Errorf("live database changed:\n got %v\nwant %v", got, live)
			}
			if !f.allowConn(t, "shop") {
				t.Error("live database refuses connections")
			}
		})
	}
	t.Run("pg_restore in a container", func(t *testing.T) {
		d := f.newDB(t)
		d.Container = "psyfit-db"
		err := d.Restore(t.Context(), "t_container", bytes.NewReader(dump), m)
		if !errors.Is(err, ErrContainerRestore) || err.Error() != "restore database in container psyfit-db: pg_restore in a container is not supported yet; install postgresql-client on the host" {
			t.Errorf("Restore = %v, want ErrContainerRestore", err)
		}
		if got := f.databases(t, "shop_"); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
	})
	if got, err := os.ReadFile(hookSaw); err != nil || strings.TrimSpace(string(got)) != "0" {
		t.Errorf("scratch databases when the hook ran: %q, %v; want 0 (the hook runs before anything is created)", got, err)
	}
}

// TestRestorePostgresStopped stops the server while pg_restore runs: the
// restore fails, and once the server is back the live database is whole
// and Revert removes the scratch database the failed restore could not.
func TestRestorePostgresStopped(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	// Enough rows that pg_restore is still copying when the server stops.
	f.exec(t, f.dsn, "INSERT INTO events (note) SELECT md5(g::text) FROM generate_series(1, 100000) g")
	dump, m := f.takeSnapshot(t)
	f.mutate(t)
	live := f.sums(t, "shop")

	pr, pw := io.Pipe()
	d := f.newDB(t)
	errc := make(chan error, 1)
	go func() { errc <- d.Restore(t.Context(), "t1", pr, m) }()
	// A first part of the dump goes through; once pg_restore works in the
	// scratch database the server stops; then the rest follows.
	rest := make(chan struct{})
	go func() {
		if _, err := pw.Write(dump[:len(dump)/2]); err == nil {
			<-rest
			pw.Write(dump[len(dump)/2:])
		}
		pw.Close()
	}()
	for f.query(t, "postgres", "SELECT count(*)::text FROM pg_stat_activity WHERE datname = 'shop_restore_t1' AND application_name = 'backstop pg_restore'") == "0" {
		select {
		case err := <-errc:
			t.Fatalf("Restore ended before pg_restore connected: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	f.pg.Stop(t)
	close(rest)
	var err error
	select {
	case err = <-errc:
	case <-time.After(60 * time.Second):
		t.Fatal("Restore did not return after the server stopped")
	}
	pr.CloseWithError(errors.New("test over"))
	if err == nil {
		t.Fatal("Restore succeeded with the server stopped")
	}
	t.Logf("Restore: %v", err)
	for _, want := range []string{"pg_restore into shop_restore_t1: exit status 1: ", "pg_restore: error: ", "the scratch database could not be dropped", "`probe revert t1` drops it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	f.pg.Start(t)
	if got := f.sums(t, "shop"); !equalMaps(got, live) {
		t.Errorf("live database after restart:\n got %v\nwant %v", got, live)
	}
	if err := d.Revert(t.Context(), "t1"); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	if got := f.databases(t, "shop_"); len(got) != 0 {
		t.Errorf("after Revert: %v left", got)
	}
}

func TestRevert(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	ctx := t.Context()
	dump, m := f.takeSnapshot(t)
	snap := f.sums(t, "shop")
	f.mutate(t)
	bad := f.sums(t, "shop")
	props := f.dbProps(t, "shop")
	d := f.newDB(t)

	t.Run("swap refused without a restored database", func(t *testing.T) {
		_, err := d.Swap(ctx, "none")
		if want := "swap shop: restored database shop_restore_none does not exist"; err == nil || err.Error() != want {
			t.Errorf("Swap = %v, want %q", err, want)
		}
		if !f.allowConn(t, "shop") {
			t.Error("live database refuses connections")
		}
	})
	t.Run("after swap", func(t *testing.T) {
		if err := d.Restore(ctx, "t1", bytes.NewReader(dump), m); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Swap(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if err := d.Revert(ctx, "t1"); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		if got := f.sums(t, "shop"); !equalMaps(got, bad) {
			t.Errorf("live after Revert:\n got %v\nwant the old %v", got, bad)
		}
		if got := f.dbProps(t, "shop"); got != props {
			t.Errorf("live properties after Revert = %q, want %q", got, props)
		}
		if got := strings.Join(f.databases(t, "shop"), ","); got != "shop,shop_failed_t1" {
			t.Errorf("databases after Revert: %s, want shop,shop_failed_t1", got)
		}
		if f.allowConn(t, "shop_failed_t1") || !f.allowConn(t, "shop") {
			t.Error("after Revert the live database must allow connections and the failed one not")
		}
		f.pg.Exec(t, "postgres", "ALTER DATABASE shop_failed_t1 WITH ALLOW_CONNECTIONS true")
		if got := f.sums(t, "shop_failed_t1"); !equalMaps(got, snap) {
			t.Errorf("failed state is not the restored content:\n got %v\nwant %v", got, snap)
		}
		f.pg.Exec(t, "postgres", "ALTER DATABASE shop_failed_t1 WITH ALLOW_CONNECTIONS false")
	})
	t.Run("twice", func(t *testing.T) {
		if err := d.Revert(ctx, "t1"); err != nil {
			t.Fatalf("second Revert: %v", err)
		}
		if got := f.sums(t, "shop"); !equalMaps(got, bad) {
			t.Errorf("live after the second Revert:\n got %v\nwant %v", got, bad)
		}
		if got := strings.Join(f.databases(t, "shop"), ","); got != "shop,shop_failed_t1" {
			t.Errorf("databases after the second Revert: %s", got)
		}
	})
	t.Run("without swap", func(t *testing.T) {
		if err := d.Restore(ctx, "t2", bytes.NewReader(dump), m); err != nil {
			t.Fatal(err)
		}
		if err := d.Revert(ctx, "t2"); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		if got := f.databases(t, "shop_restore_"); len(got) != 0 {
			t.Errorf("scratch left: %v", got)
		}
		if got := f.sums(t, "shop"); !equalMaps(got, bad) {
			t.Errorf("live changed:\n got %v\nwant %v", got, bad)
		}
	})
	t.Run("swap interrupted after disallowing connections", func(t *testing.T) {
		if err := d.Restore(ctx, "t3", bytes.NewReader(dump), m); err != nil {
			t.Fatal(err)
		}
		// What a probe killed between the disallow and the commit leaves.
		f.pg.Exec(t, "postgres", "ALTER DATABASE shop WITH ALLOW_CONNECTIONS false")
		if err := d.Revert(ctx, "t3"); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		if !f.allowConn(t, "shop") {
			t.Error("live database still refuses connections")
		}
		if got := f.databases(t, "shop_restore_"); len(got) != 0 {
			t.Errorf("scratch left: %v", got)
		}
		if got := f.sums(t, "shop"); !equalMaps(got, bad) {
			t.Errorf("live changed:\n got %v\nwant %v", got, bad)
		}
	})
	t.Run("nothing to revert", func(t *testing.T) {
		if err := d.Revert(ctx, "never"); err != nil {
			t.Errorf("Revert of an unknown txn: %v", err)
		}
	})
}

// TestSwapSessionNotEnded: a session the app's role may not terminate
// (another role's) makes the swap fail, and the live database stays as it
// was and accepts connections again.
func TestSwapSessionNotEnded(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	ctx := t.Context()
	dump, m := f.takeSnapshot(t)
	f.mutate(t)
	live := f.sums(t, "shop")
	d := f.newDB(t)
	if err := d.Restore(ctx, "t1", bytes.NewReader(dump), m); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, f0dsn(f.pg, "reader", "reader-pw", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())

	_, err = d.Swap(ctx, "t1")
	want := fmt.Sprintf("swap shop with shop_restore_t1: sessions of shop cannot be ended (%d reader -): must be a member of the role whose process is being terminated or member of pg_signal_backend; grant pg_signal_backend to the DSN's role or restore as a superuser", other.PgConn().PID())
	if err == nil || err.Error() != want {
		t.Fatalf("Swap = %v, want %q", err, want)
	}
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("the other role's session was ended: %v", err)
	}
	if !f.allowConn(t, "shop") {
		t.Error("live database refuses connections after the failed swap")
	}
	if got := f.sums(t, "shop"); !equalMaps(got, live) {
		t.Errorf("live database changed:\n got %v\nwant %v", got, live)
	}
	if got := strings.Join(f.databases(t, "shop"), ","); got != "shop,shop_restore_t1" {
		t.Errorf("databases: %s, want shop,shop_restore_t1", got)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	// Created oldest first: a .. e; unrelated names around them.
	for _, name := range []string{"shop_pre_a", "shop_failed_a", "shop_pre_b", "shop_restore_c", "shop_pre_d", "shop_failed_d",
		"shop_prefs", "shopping_pre_x", "shop_pre_e", "shop_restore_f"} {
		f.pg.Exec(t, "postgres", "CREATE DATABASE "+name+" OWNER app")
	}
	f.pg.Exec(t, "postgres", "ALTER DATABASE shop_pre_a WITH ALLOW_CONNECTIONS false")
	d := f.newDB(t)

	dropped, err := d.Prune(t.Context(), 2, "f")
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	sort.Strings(dropped)
	if got, want := strings.Join(dropped, ","), "shop_failed_a,shop_failed_d,shop_pre_a,shop_pre_b,shop_pre_d,shop_restore_c"; got != want {
		t.Errorf("dropped %s, want %s", got, want)
	}
	if got, want := strings.Join(f.databases(t, "shop"), ","), "shop,shop_pre_e,shop_prefs,shop_restore_f,shopping_pre_x"; got != want {
		t.Errorf("left %s, want %s", got, want)
	}

	dropped, err = d.Prune(t.Context(), 0, "")
	if err != nil || strings.Join(dropped, ",") != "shop_restore_f,shop_pre_e" {
		t.Errorf("Prune(0) = %v, %v; want shop_restore_f, shop_pre_e", dropped, err)
	}
}

// TestRestoreJobs restores through a decompressed file and pg_restore -j,
// and removes the file afterwards, also when the dump is cut short.
func TestRestoreJobs(t *testing.T) {
	t.Parallel()
	f := newDBFixture(t)
	dump, m := f.takeSnapshot(t)
	snap := f.sums(t, "shop")
	tmp := t.TempDir()
	d := f.newDB(t)
	d.Jobs, d.TempDir = 2, tmp

	if err := d.Restore(t.Context(), "j1", bytes.NewReader(dump), m); err != nil {
		t.Fatalf("Restore -j 2: %v", err)
	}
	if got := f.sums(t, "shop_restore_j1"); !equalMaps(got, snap) {
		t.Errorf("restored with -j 2:\n got %v\nwant %v", got, snap)
	}
	err := d.Restore(t.Context(), "j2", bytes.NewReader(dump[:len(dump)/2]), m)
	if err == nil || err.Error() != "read dump: unexpected EOF" {
		t.Errorf("Restore -j 2 of a cut dump = %v, want read dump: unexpected EOF", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if got := f.databases(t, "shop_restore_j2"); len(got) != 0 {
		t.Errorf("scratch left: %v", got)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
