package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/shared/filelock"
)

// DefaultPGBinDir is where Debian's postgresql-15 package puts the server
// and client programs.
const DefaultPGBinDir = "/usr/lib/postgresql/15/bin"

// DefaultPGPassword is the superuser's password when no PGPassword option
// is given. Host (TCP) connections need it; the unix socket trusts.
const DefaultPGPassword = "test-secret-pw"

const pgHint = "run `make deps` (scripts/deps.sh)"

// templateFormat changes whenever the way a template is made changes, so an
// old cached template is never reused by newer code.
const templateFormat = "backstop-pgtemplate-v1"

// PG is a running throwaway PostgreSQL cluster on 127.0.0.1, owned by one
// test and removed when it ends. Its superuser is "postgres".
type PG struct {
	Host      string // always 127.0.0.1
	Port      int
	User      string // superuser: postgres
	Password  string // superuser password (scram-sha-256 on TCP)
	BinDir    string // server and client programs (pg_dump, pg_restore, pgbench, psql, ...)
	DataDir   string // the cluster's data directory
	SocketDir string // unix socket directory (trust authentication)

	root     string
	settings []string
	asUser   string // run the server programs as this OS user ("" = as ourselves)

	mu      sync.Mutex
	running bool
}

// PGOption changes how Postgres builds or starts a cluster.
type PGOption func(*pgOptions)

type pgOptions struct {
	binDir     string
	password   string
	initdbArgs []string
	settings   []string
}

// PGBinDir uses the PostgreSQL programs in dir instead of DefaultPGBinDir.
func PGBinDir(dir string) PGOption { return func(o *pgOptions) { o.binDir = dir } }

// PGPassword sets the superuser's password (part of the template's key).
func PGPassword(pw string) PGOption { return func(o *pgOptions) { o.password = pw } }

// PGInitdbArgs adds initdb arguments (e.g. "--locale=C.UTF-8"); they are part
// of the template's key, so clusters with other arguments get their own template.
func PGInitdbArgs(args ...string) PGOption {
	return func(o *pgOptions) { o.initdbArgs = append(o.initdbArgs, args...) }
}

// PGSetting adds a server setting given at start (`-c name=value`), e.g.
// PGSetting("max_connections", "20"). It does not change the template.
func PGSetting(name, value string) PGOption {
	return func(o *pgOptions) { o.settings = append(o.settings, name+"="+value) }
}

// Postgres starts a throwaway PostgreSQL cluster for t and stops and removes
// it when t ends. The cluster is a copy of a template initialised once per
// machine (cached under os.TempDir(), keyed by server version and options),
// so a cluster costs a file copy and a server start. When the programs are
// missing the test goes through Need: a failure in CI, a skip elsewhere.
// As root the server runs as the OS user postgres (Postgres refuses root).
func Postgres(t testing.TB, opts ...PGOption) *PG {
	t.Helper()
	o := pgOptions{binDir: DefaultPGBinDir, password: DefaultPGPassword}
	for _, opt := range opts {
		opt(&o)
	}
	version, err := pgVersion(o.binDir)
	Need(t, "PostgreSQL 15", err, pgHint)

	asUser := ""
	if os.Geteuid() == 0 {
		asUser = "postgres"
		_, err := user.Lookup(asUser)
		if err == nil {
			_, err = exec.LookPath("runuser")
		}
		Need(t, "PostgreSQL 15 (OS user postgres and runuser)", err, pgHint)
	}

	tmpl, err := pgTemplate(o, version, asUser)
	if err != nil {
		t.Fatalf("postgres template: %v", err)
	}

	root, err := os.MkdirTemp("", "backstop-pg-")
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	pg := &PG{
		Host:      "127.0.0.1",
		User:      "postgres",
		Password:  o.password,
		BinDir:    o.binDir,
		DataDir:   filepath.Join(root, "data"),
		SocketDir: filepath.Join(root, "sock"),
		root:      root,
		settings:  o.settings,
		asUser:    asUser,
	}
	if err := os.Mkdir(pg.SocketDir, 0o700); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if out, err := exec.Command("cp", "-a", tmpl, pg.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("postgres: copy template %s: %v: %s", tmpl, err, out)
	}
	if err := chownTree(root, asUser); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	// Registered after the RemoveAll cleanup, so it runs before it.
	t.Cleanup(func() { pg.stop() })

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		pg.Port = FreePort(t)
		if lastErr = pg.start(); lastErr == nil {
			return pg
		}
	}
	t.Fatalf("postgres: %v", lastErr)
	return nil
}

// DSN is the URL to connect to database db as the superuser over TCP.
func (pg *PG) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(pg.User, pg.Password),
		Host:     net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Bin is the path of one of the PostgreSQL programs, e.g. Bin("pg_dump").
func (pg *PG) Bin(name string) string { return filepath.Join(pg.BinDir, name) }

// Exec runs sql (one or more statements, no parameters) in database db as
// the superuser, failing the test on error.
func (pg *PG) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN(db))
	if err != nil {
		t.Fatalf("postgres: connect to %s: %v", db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("postgres: exec in %s: %v\n%s", db, err, sql)
	}
}

// CreateDB creates database name, owned by the superuser.
func (pg *PG) CreateDB(t testing.TB, name string) {
	t.Helper()
	pg.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Stop shuts the server down at once (immediate mode), so the test can see
// "database down". The data directory stays until the test ends; Start
// brings the same cluster back on the same port.
func (pg *PG) Stop(t testing.TB) {
	t.Helper()
	if err := pg.stop(); err != nil {
		t.Fatalf("postgres: %v", err)
	}
}

// Start starts a stopped cluster again on its port.
func (pg *PG) Start(t testing.TB) {
	t.Helper()
	if err := pg.start(); err != nil {
		t.Fatalf("postgres: %v", err)
	}
}

func (pg *PG) start() error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.running {
		return nil
	}
	opts := []string{
		"-p", strconv.Itoa(pg.Port),
		"-k", pg.SocketDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
	}
	for _, s := range pg.settings {
		opts = append(opts, "-c", s)
	}
	logFile := filepath.Join(pg.root, "server.log")
	out, err := pg.run("pg_ctl", "-D", pg.DataDir, "-l", logFile, "-t", "60",
		"-o", strings.Join(opts, " "), "-w", "start")
	if err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("start cluster %s on port %d: %w: %s\n%s", pg.DataDir, pg.Port, err, out, tail(log, 2000))
	}
	pg.running = true
	return nil
}

func (pg *PG) stop() error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if !pg.running {
		return nil
	}
	out, err := pg.run("pg_ctl", "-D", pg.DataDir, "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("stop cluster %s: %w: %s", pg.DataDir, err, out)
	}
	pg.running = false
	return nil
}

func (pg *PG) run(prog string, args ...string) ([]byte, error) {
	cmd := pgCommand(pg.asUser, filepath.Join(pg.BinDir, prog), args...)
	cmd.Dir = pg.root
	return cmd.CombinedOutput()
}

// pgCommand runs prog as the OS user asUser (through runuser) or, when
// asUser is empty, as ourselves.
func pgCommand(asUser, prog string, args ...string) *exec.Cmd {
	if asUser == "" {
		return exec.Command(prog, args...)
	}
	return exec.Command("runuser", append([]string{"-u", asUser, "--", prog}, args...)...)
}

// pgVersion is the output of `postgres --version`, which also proves the
// programs are there.
func pgVersion(binDir string) (string, error) {
	for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			return "", err
		}
	}
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s/postgres --version: %w", binDir, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// pgTemplate returns the data directory of the cached template cluster for
// o, creating it when needed. Creation is guarded by a file lock (parallel
// test processes wait for one another) and atomic: the cluster is built in a
// scratch directory and renamed into place only when complete.
func pgTemplate(o pgOptions, version, asUser string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00", templateFormat, version, o.binDir, o.password, asUser)
	for _, a := range o.initdbArgs {
		fmt.Fprintf(h, "%s\x00", a)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(os.TempDir(), "backstop-pgtemplate-"+key)
	if isCluster(dir) {
		return dir, nil
	}

	lock, err := filelock.Lock(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	if isCluster(dir) { // another process made it while we waited
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil { // a stray non-cluster in the way
		return "", err
	}

	build, err := os.MkdirTemp("", "backstop-pgtemplate-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build)
	pwFile := filepath.Join(build, "pw")
	if err := os.WriteFile(pwFile, []byte(o.password+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := chownTree(build, asUser); err != nil {
		return "", err
	}
	data := filepath.Join(build, "data")
	args := append([]string{
		"-D", data, "-U", "postgres", "--pwfile", pwFile,
		"--auth-host=scram-sha-256", "--auth-local=trust",
		"--encoding=UTF8", "--no-sync",
	}, o.initdbArgs...)
	cmd := pgCommand(asUser, filepath.Join(o.binDir, "initdb"), args...)
	cmd.Dir = build
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb %s: %w: %s", data, err, out)
	}
	// Written with --no-sync for speed; flush once so a crash cannot leave a
	// torn template behind for every later test.
	cmd = pgCommand(asUser, filepath.Join(o.binDir, "initdb"), "-D", data, "--sync-only")
	cmd.Dir = build
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb --sync-only %s: %w: %s", data, err, out)
	}
	if err := os.Rename(data, dir); err != nil {
		return "", fmt.Errorf("install template: %w", err)
	}
	return dir, nil
}

// isCluster reports whether dir holds a complete data directory (the
// template is renamed into place only once complete).
func isCluster(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

// chownTree gives dir and everything in it to the OS user name ("" = no change).
func chownTree(dir, name string) error {
	if name == "" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
