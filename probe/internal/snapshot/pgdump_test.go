package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/client"

	"backstop/shared/testenv"
)

func TestParsePgDumpVersion(t *testing.T) {
	tests := []struct {
		name      string
		out       string
		major     int
		full      string
		wantError bool
	}{
		{name: "debian", out: "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", major: 15, full: "15.18"},
		{name: "pgdg", out: "pg_dump (PostgreSQL) 14.9 (Debian 14.9-1.pgdg120+1)", major: 14, full: "14.9"},
		{name: "plain", out: "pg_dump (PostgreSQL) 17.2", major: 17, full: "17.2"},
		{name: "alpine", out: "pg_dump (PostgreSQL) 16.4\n", major: 16, full: "16.4"},
		{name: "beta", out: "pg_dump (PostgreSQL) 18beta1", major: 18, full: "18beta1"},
		{name: "old three-part", out: "pg_dump (PostgreSQL) 9.6.24", major: 9, full: "9.6.24"},
		{name: "not pg_dump", out: "bash: pg_dump: command not found", wantError: true},
		{name: "empty", out: "", wantError: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			major, full, err := ParsePgDumpVersion(tc.out)
			if tc.wantError {
				if err == nil {
					t.Fatalf("ParsePgDumpVersion(%q) = %d %q, want an error", tc.out, major, full)
				}
				return
			}
			if err != nil || major != tc.major || full != tc.full {
				t.Fatalf("ParsePgDumpVersion(%q) = %d, %q, %v; want %d, %q", tc.out, major, full, err, tc.major, tc.full)
			}
		})
	}
}

// dumpCluster starts a cluster whose database app (owned by role app,
// password appPassword) holds a few tables in two schemas.
func dumpCluster(t *testing.T) *testenv.PG {
	t.Helper()
	pg := appCluster(t, "app")
	pg.Exec(t, "app", `SET ROLE app;
		CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users SELECT g, 'u' || g || '@example.jp' FROM generate_series(1, 500) g;
		CREATE TABLE "Orders" (id int); INSERT INTO "Orders" VALUES (1), (2);
		CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int, total numeric); INSERT INTO billing.invoices VALUES (1, 9.5);
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('0042_add_visits');`)
	return pg
}

// wantTables is what pg_restore --list shows as TABLE DATA for dumpCluster's database.
var wantTables = []string{"billing invoices", "public Orders", "public alembic_version", "public users"}

// restoreList runs the real pg_restore --list on a dump and returns its
// TABLE DATA entries as "schema table", sorted, and the whole listing.
func restoreList(t *testing.T, pg *testenv.PG, dump []byte) ([]string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db.dump")
	if err := os.WriteFile(path, dump, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pg.Bin("pg_restore"), "--list", path).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore --list: %v\n%s", err, out)
	}
	var tables []string
	for _, line := range strings.Split(string(out), "\n") {
		// 3345; 0 16385 TABLE DATA public users app
		if _, rest, ok := strings.Cut(line, " TABLE DATA "); ok && !strings.HasPrefix(line, ";") {
			f := strings.Fields(rest)
			tables = append(tables, f[0]+" "+f[1])
		}
	}
	sort.Strings(tables)
	return tables, string(out)
}

func ctx30(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHostDump(t *testing.T) {
	pg := dumpCluster(t)
	d, err := NewHostDumper(appDSN(pg, appPassword, "app"), pg.Bin("pg_dump"))
	if err != nil {
		t.Fatalf("NewHostDumper: %v", err)
	}
	var buf bytes.Buffer
	if err := d.Dump(ctx30(t), &buf); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("PGDMP")) {
		t.Fatalf("dump starts %q, want the custom format's PGDMP", buf.Bytes()[:min(16, buf.Len())])
	}
	tables, listing := restoreList(t, pg, buf.Bytes())
	if !reflect.DeepEqual(tables, wantTables) {
		t.Errorf("pg_restore --list TABLE DATA = %v, want %v\n%s", tables, wantTables, listing)
	}
	if !strings.Contains(listing, "Compression: 0") {
		t.Errorf("dump is compressed, want -Z0 (the archive is compressed later with zstd):\n%s", listing)
	}
	if !strings.Contains(listing, "dbname: app") {
		t.Errorf("dump is not of database app:\n%s", listing)
	}
}

func TestHostDumpErrors(t *testing.T) {
	pg := dumpCluster(t)
	at := fmt.Sprintf(`connection to server at "127.0.0.1", port %d failed: FATAL:  `, pg.Port)
	diskFull := errors.New("no space left on device")
	tests := []struct {
		name string
		dsn  string
		w    func() *dumpFailWriter
		want string
		is   error
	}{
		{
			name: "missing database",
			dsn:  appDSN(pg, appPassword, "nope"),
			want: "pg_dump: exit status 1: pg_dump: error: " + at + `database "nope" does not exist`,
		},
		{
			name: "wrong password",
			dsn:  appDSN(pg, "wrong-"+appPassword, "app"),
			want: "pg_dump: exit status 1: pg_dump: error: " + at + `password authentication failed for user "app"`,
		},
		{
			name: "writer fails",
			dsn:  appDSN(pg, appPassword, "app"),
			w:    func() *dumpFailWriter { return &dumpFailWriter{after: 1, err: diskFull} },
			want: "write dump of app: no space left on device",
			is:   diskFull,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewHostDumper(tc.dsn, pg.Bin("pg_dump"))
			if err != nil {
				t.Fatalf("NewHostDumper: %v", err)
			}
			w := &dumpFailWriter{after: -1}
			if tc.w != nil {
				w = tc.w()
			}
			err = d.Dump(ctx30(t), w)
			if err == nil {
				t.Fatal("Dump succeeded, want an error")
			}
			if err.Error() != tc.want {
				t.Errorf("error = %q\nwant    %q", err, tc.want)
			}
			if strings.Contains(err.Error(), appPassword) {
				t.Errorf("error leaks the password: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

// dumpFailWriter accepts writes until after bytes went through (-1: never
// fails), then fails with err.
type dumpFailWriter struct {
	after int
	n     int
	err   error
}

func (f *dumpFailWriter) Write(p []byte) (int, error) {
	if f.after >= 0 && f.n+len(p) > f.after {
		return 0, f.err
	}
	f.n += len(p)
	return len(p), nil
}

func TestNewHostDumperFindsPgDump(t *testing.T) {
	dsn := "postgres://app:" + appPassword + "@127.0.0.1:5432/app"
	tests := []struct {
		name string
		path string // PATH for the lookup
		arg  string
		want string
		err  string
	}{
		{name: "explicit path", path: "/nonexistent", arg: testenv.DefaultPGBinDir + "/pg_dump", want: testenv.DefaultPGBinDir + "/pg_dump"},
		{name: "not in PATH: newest under /usr/lib/postgresql", path: t.TempDir(), want: testenv.DefaultPGBinDir + "/pg_dump"},
		{name: "explicit path missing", arg: "/opt/nowhere/pg_dump", err: "pg_dump /opt/nowhere/pg_dump: no such file or directory"},
	}
	if _, err := os.Stat(testenv.DefaultPGBinDir + "/pg_dump"); err != nil {
		testenv.Need(t, "PostgreSQL 15 client", err, "run `make deps`")
	}
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump"); len(dirs) != 1 {
		t.Logf("several PostgreSQL versions installed (%v): the newest is expected", dirs)
		tests[1].want = dirs[len(dirs)-1]
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			d, err := NewHostDumper(dsn, tc.arg)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("NewHostDumper error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewHostDumper: %v", err)
			}
			if d.path != tc.want {
				t.Errorf("pg_dump = %s, want %s", d.path, tc.want)
			}
		})
	}
}

// TestDumpersKeepPasswordOffCommandLine checks what the host command and
// the container exec would show to ps and docker inspect: the password is
// only in the environment, exactly as the DSN gave it.
func TestDumpersKeepPasswordOffCommandLine(t *testing.T) {
	const pw = `p@ss w'rd:/?Leak`
	tests := []struct {
		name string
		dsn  string
		env  []string // expected among the child's environment
	}{
		{
			name: "url",
			dsn:  "postgres://app:p%40ss%20w%27rd%3A%2F%3FLeak@db.internal:6432/shop?sslmode=require&connect_timeout=7",
			env:  []string{"PGHOST=db.internal", "PGPORT=6432", "PGUSER=app", "PGDATABASE=shop", "PGPASSWORD=" + pw, "PGSSLMODE=require", "PGCONNECT_TIMEOUT=7"},
		},
		{
			name: "key=value with a quoted password",
			dsn:  `host=127.0.0.1 port=5433 user=app dbname=shop sslmode=disable password='p@ss w\'rd:/?Leak'`,
			env:  []string{"PGHOST=127.0.0.1", "PGPORT=5433", "PGUSER=app", "PGDATABASE=shop", "PGPASSWORD=" + pw, "PGSSLMODE=disable"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHostDumper(tc.dsn, "")
			if err != nil {
				testenv.Need(t, "pg_dump", err, "run `make deps`")
			}
			cmd := h.command(context.Background(), dumpArgs...)
			// Building the client connects to nothing.
			dk, err := client.New(client.FromEnv)
			if err != nil {
				t.Fatal(err)
			}
			defer dk.Close()
			c, err := NewContainerDumper(dk, "psyfit-db", tc.dsn)
			if err != nil {
				t.Fatalf("NewContainerDumper: %v", err)
			}
			ex := c.execOptions(dumpArgs...)
			if want := []string{"pg_dump", "-Fc", "-Z0", "--no-password"}; !reflect.DeepEqual(ex.Cmd, want) {
				t.Errorf("exec Cmd = %q, want %q", ex.Cmd, want)
			}
			if !reflect.DeepEqual(cmd.Args[1:], dumpArgs) {
				t.Errorf("host args = %q, want %q", cmd.Args[1:], dumpArgs)
			}
			for where, args := range map[string][]string{"host command line": cmd.Args, "exec Cmd": ex.Cmd} {
				if s := strings.Join(args, " "); strings.Contains(s, "Leak") || strings.Contains(s, "app") {
					t.Errorf("%s %q carries connection settings", where, s)
				}
			}
			for where, env := range map[string][]string{"host env": cmd.Env, "exec Env": ex.Env} {
				for _, want := range tc.env {
					if !contains(env, want) {
						t.Errorf("%s lacks %q: %q", where, want, env)
					}
				}
			}
			if !ex.AttachStdout || !ex.AttachStderr || ex.TTY || ex.AttachStdin {
				t.Errorf("exec attaches stdout %v stderr %v stdin %v tty %v, want stdout and stderr only", ex.AttachStdout, ex.AttachStderr, ex.AttachStdin, ex.TTY)
			}
			if err == nil && strings.Contains(h.String()+c.String(), "Leak") {
				t.Errorf("String() leaks: %s / %s", h, c)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPreflight(t *testing.T) {
	pg := dumpCluster(t)
	info, err := Inspect(ctx30(t), appDSN(pg, appPassword, "app"))
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	// A real program standing in for an older pg_dump: it answers
	// --version like PostgreSQL 14's.
	old := filepath.Join(t.TempDir(), "pg_dump")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.9 (Debian 14.9-1.pgdg120+1)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		pgDump string
		server int
		want   string // "" = passes
	}{
		{name: "same major", pgDump: pg.Bin("pg_dump"), server: info.ServerMajor},
		{name: "newer pg_dump than server", pgDump: pg.Bin("pg_dump"), server: 13},
		{
			name: "pg_dump older than the server", pgDump: old, server: info.ServerMajor,
			want: "pg_dump 14.9 is older than the server (15): install postgresql-client-15 or use backup.database.pg_dump: container:<db container>",
		},
		{
			name: "real pg_dump 15 against a 16 server", pgDump: pg.Bin("pg_dump"), server: 16,
			want: "is older than the server (16): install postgresql-client-16 or use backup.database.pg_dump: container:<db container>",
		},
		{
			name: "not a pg_dump", pgDump: "/bin/false", server: 15,
			want: "preflight: pg_dump: exit status 1 (no error output)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewHostDumper(appDSN(pg, appPassword, "app"), tc.pgDump)
			if err != nil {
				t.Fatalf("NewHostDumper: %v", err)
			}
			err = Preflight(ctx30(t), d, tc.server)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Fatalf("Preflight error = %v\nwant (ending in) %q", err, tc.want)
			}
			var tooOld *TooOldError
			if strings.Contains(tc.want, "older") && !errors.As(err, &tooOld) {
				t.Errorf("error is %T, want *TooOldError", err)
			}
		})
	}
}

// TestContainerDump dumps through the Docker engine, in a container that
// holds the host's pg_dump and shares the host's network, and compares
// with the host's dump.
func TestContainerDump(t *testing.T) {
	pg := dumpCluster(t)
	dk := testenv.Docker(t)
	img := dk.PgDumpImage(t)
	// A prefix no other test uses, so the prefix lookup can only find ours.
	prefix := "pgdump-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	db := dk.Run(t, testenv.RunOpts{Image: img, NamePrefix: prefix + "-", NetworkMode: "host"})
	exited := dk.Run(t, testenv.RunOpts{Image: dk.Image(t, "exiter"), NamePrefix: "backstop-exited-"})
	exited.WaitExited(t)
	noPgDump := dk.Run(t, testenv.RunOpts{Image: dk.Image(t, "webapp"), NamePrefix: "backstop-web-"})

	var hostDump bytes.Buffer
	h, err := NewHostDumper(appDSN(pg, appPassword, "app"), pg.Bin("pg_dump"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Dump(ctx30(t), &hostDump); err != nil {
		t.Fatalf("host Dump: %v", err)
	}
	hostTables, _ := restoreList(t, pg, hostDump.Bytes())

	t.Run("by exact name and by prefix", func(t *testing.T) {
		for _, name := range []string{db.Name, prefix} {
			c, err := NewContainerDumper(dk.Client, name, appDSN(pg, appPassword, "app"))
			if err != nil {
				t.Fatalf("NewContainerDumper: %v", err)
			}
			major, full, err := c.Version(ctx30(t))
			if err != nil || major != 15 || !strings.HasPrefix(full, "15.") {
				t.Fatalf("Version = %d %q %v, want 15", major, full, err)
			}
			if err := Preflight(ctx30(t), c, 15); err != nil {
				t.Fatalf("Preflight: %v", err)
			}
			var buf bytes.Buffer
			if err := c.Dump(ctx30(t), &buf); err != nil {
				t.Fatalf("container Dump via %q: %v", name, err)
			}
			tables, listing := restoreList(t, pg, buf.Bytes())
			if !reflect.DeepEqual(tables, hostTables) || !reflect.DeepEqual(tables, wantTables) {
				t.Errorf("container dump tables = %v, host dump %v, want %v\n%s", tables, hostTables, wantTables, listing)
			}
		}
	})

	t.Run("preflight names the container", func(t *testing.T) {
		c, err := NewContainerDumper(dk.Client, db.Name, appDSN(pg, appPassword, "app"))
		if err != nil {
			t.Fatal(err)
		}
		err = Preflight(ctx30(t), c, 16)
		if err == nil || !strings.Contains(err.Error(), " in container "+db.Name+" is older than the server (16): ") {
			t.Fatalf("Preflight = %v, want pg_dump 15.x in container %s is older than the server (16)", err, db.Name)
		}
	})

	errCases := []struct {
		name      string
		container string
		dsn       string
		want      string // the error starts with it
		end       string // and ends with it
	}{
		{
			name:      "container missing",
			container: "no-such-db",
			dsn:       appDSN(pg, appPassword, "app"),
			want:      "pg_dump in container no-such-db: no running container named no-such-db or no-such-db-*",
		},
		{
			name:      "container exited",
			container: exited.Name,
			dsn:       appDSN(pg, appPassword, "app"),
			want:      "pg_dump in container " + exited.Name + ": container is exited, not running",
		},
		{
			name:      "no pg_dump in the container",
			container: noPgDump.Name,
			dsn:       appDSN(pg, appPassword, "app"),
			want:      "pg_dump not found in container " + noPgDump.Name + " (exit status 12", // 126 (Docker 20.10) or 127
			end:       "): use a container with pg_dump or backup.database.pg_dump: host",
		},
		{
			name:      "missing database",
			container: db.Name,
			dsn:       appDSN(pg, appPassword, "nope"),
			want:      fmt.Sprintf(`pg_dump in container %s: exit status 1: pg_dump: error: connection to server at "127.0.0.1", port %d failed: FATAL:  database "nope" does not exist`, db.Name, pg.Port),
		},
		{
			name:      "wrong password",
			container: db.Name,
			dsn:       appDSN(pg, "wrong-"+appPassword, "app"),
			want:      fmt.Sprintf(`pg_dump in container %s: exit status 1: pg_dump: error: connection to server at "127.0.0.1", port %d failed: FATAL:  password authentication failed for user "app"`, db.Name, pg.Port),
		},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewContainerDumper(dk.Client, tc.container, tc.dsn)
			if err != nil {
				t.Fatalf("NewContainerDumper: %v", err)
			}
			var buf bytes.Buffer
			err = c.Dump(ctx30(t), &buf)
			if err == nil {
				t.Fatal("Dump succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), tc.end) {
				t.Errorf("error = %q\nwant    %q…%q", err, tc.want, tc.end)
			}
			if strings.Contains(err.Error(), appPassword) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// TestDumpCancel cancels a dump of a ~50 MB table part-way, on the host
// and in a container. While pg_dump runs, no process on the machine shows
// the password in its command line. After the cancel, Dump returns ctx's
// error and the dump's database session goes away.
func TestDumpCancel(t *testing.T) {
	pg := appCluster(t, "big")
	pg.Exec(t, "big", `SET ROLE app; CREATE TABLE big (id int, payload text);
		INSERT INTO big SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 150000) g;`)
	dsn := appDSN(pg, appPassword, "big")
	dk := testenv.Docker(t)
	img := dk.PgDumpImage(t)
	ctr := dk.Run(t, testenv.RunOpts{Image: img, NamePrefix: "pgdump-cancel-", NetworkMode: "host"})

	host, err := NewHostDumper(dsn, pg.Bin("pg_dump"))
	if err != nil {
		t.Fatal(err)
	}
	inCtr, err := NewContainerDumper(dk.Client, ctr.Name, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Dumper{host, inCtr} {
		t.Run(d.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			w := &cancelWriter{at: 1 << 20, cancel: cancel}
			w.onCancel = func() {
				seen, leaks := scanCmdlines(appPassword)
				if !seen {
					t.Errorf("no pg_dump -Fc process found while dumping")
				}
				for _, l := range leaks {
					t.Errorf("password visible in a process's command line: %q", l)
				}
			}
			err := d.Dump(ctx, w)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Dump after cancel = %v, want context.Canceled", err)
			}
			if w.n >= 40<<20 {
				t.Errorf("%d bytes written after cancelling at 1 MiB: the dump ran on", w.n)
			}
			if n := dumpSessions(t, pg, 20*time.Second); n != 0 {
				t.Errorf("%d pg_dump sessions still in the server after cancel", n)
			}
		})
	}
}

// cancelWriter cancels once at bytes have been written, after calling
// onCancel, and keeps accepting writes.
type cancelWriter struct {
	at       int
	n        int
	once     sync.Once
	cancel   context.CancelFunc
	onCancel func()
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	if c.n >= c.at {
		c.once.Do(func() { c.onCancel(); c.cancel() })
	}
	return len(p), nil
}

// scanCmdlines reads every process's command line, as ps shows them:
// seen reports a pg_dump -Fc among them, leaks lists those holding secret.
func scanCmdlines(secret string) (seen bool, leaks []string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, "pg_dump -Fc -Z0") {
			seen = true
		}
		if strings.Contains(cmdline, secret) {
			leaks = append(leaks, cmdline)
		}
	}
	return seen, leaks
}

// dumpSessions waits up to limit for the server to have no session of
// our pg_dump and returns how many are left.
func dumpSessions(t *testing.T, pg *testenv.PG, limit time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit+5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", appName).Scan(&n); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}
