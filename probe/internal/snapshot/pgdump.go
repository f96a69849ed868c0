package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"backstop/probe/internal/containers"
	"backstop/probe/internal/pgmeta"
	"backstop/shared/clip"
)

// Dumper streams `pg_dump -Fc -Z0` of one database to w.
//
// Dump writes the archive to w as pg_dump produces it, with no buffering
// beyond a pipe. On failure what was already written to w is incomplete
// and must be discarded. When ctx ends, pg_dump is stopped and Dump returns
// an error wrapping ctx.Err(). A failing pg_dump gives a *DumpError with
// the tail of its stderr; an error from w is returned as "write dump: ...".
// Neither ever holds the password.
//
// Version runs `pg_dump --version` and returns its major (e.g. 15) and its
// version (e.g. "15.18").
type Dumper interface {
	Dump(ctx context.Context, w io.Writer) error
	Version(ctx context.Context) (major int, full string, err error)
	String() string
}

var (
	_ Dumper = (*HostDumper)(nil)
	_ Dumper = (*ContainerDumper)(nil)
)

// dumpArgs are pg_dump's arguments: custom format, uncompressed (the
// archive is compressed on the way with zstd), never prompting. Everything
// about the connection (and the password above all) goes through the
// environment, which ps and docker inspect do not show to other users.
var dumpArgs = []string{"-Fc", "-Z0", "--no-password"}

// stderrKeep is how much of pg_dump's stderr a DumpError keeps (the end).
const stderrKeep = 4 << 10

// appName is the application_name pg_dump's session shows in
// pg_stat_activity.
const appName = "backstop pg_dump"

// DumpError is a pg_dump that ran and failed.
type DumpError struct {
	Where  string // "pg_dump" or "pg_dump in container psyfit-db"
	Status string // "exit status 1", "signal: killed"
	Stderr string // the end of its stderr, one line, password scrubbed
}

func (e *DumpError) Error() string {
	if e.Stderr == "" {
		return e.Where + ": " + e.Status + " (no error output)"
	}
	return e.Where + ": " + e.Status + ": " + e.Stderr
}

// TooOldError is a pg_dump whose major version is below the server's: it
// refuses to dump a newer server.
type TooOldError struct {
	PgDump      string // pg_dump's version, e.g. "14.9"
	ServerMajor int
	Container   string // the container pg_dump runs in; "" on the host
}

func (e *TooOldError) Error() string {
	if e.Container != "" {
		return fmt.Sprintf("pg_dump %s in container %s is older than the server (%d): run the backup with the server's own container or use backup.database.pg_dump: host with postgresql-client-%d installed",
			e.PgDump, e.Container, e.ServerMajor, e.ServerMajor)
	}
	return fmt.Sprintf("pg_dump %s is older than the server (%d): install postgresql-client-%d or use backup.database.pg_dump: container:<db container>",
		e.PgDump, e.ServerMajor, e.ServerMajor)
}

// Preflight checks, before anything is written, that d's pg_dump can be run
// and that its major version is at least serverMajor (pg_dump refuses to
// dump a newer server, but dumps older ones). A pg_dump that is too old
// gives a *TooOldError saying what to install or configure.
func Preflight(ctx context.Context, d Dumper, serverMajor int) error {
	major, full, err := d.Version(ctx)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if major < serverMajor {
		e := &TooOldError{PgDump: full, ServerMajor: serverMajor}
		if c, ok := d.(*ContainerDumper); ok {
			e.Container = c.container
		}
		return e
	}
	return nil
}

var pgDumpVersionRE = regexp.MustCompile(`\(PostgreSQL\)\s+((\d+)[0-9A-Za-z.]*)`)

// ParsePgDumpVersion reads `pg_dump --version` output, e.g.
// "pg_dump (PostgreSQL) 14.9 (Debian 14.9-1.pgdg120+1)", into its major
// (14) and version ("14.9"). For 9.x the major is 9.
func ParsePgDumpVersion(out string) (major int, full string, err error) {
	m := pgDumpVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, "", fmt.Errorf("not a pg_dump version: %q", clip.Line(out, 200))
	}
	major, err = strconv.Atoi(m[2])
	if err != nil {
		return 0, "", fmt.Errorf("not a pg_dump version: %q", clip.Line(out, 200))
	}
	return major, m[1], nil
}

// pgEnv turns a DSN into the libpq environment pg_dump connects with:
// PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGAPPNAME, and the
// SSL, timeout and options settings the DSN (or, as pgx does, the probe's
// own PG* environment) gives. secret is the password, for scrubbing.
func pgEnv(dsn string) (env []string, db, secret string, err error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the DSN: say what is wrong without any of it.
		return nil, "", "", errors.New("dsn: not a valid PostgreSQL connection string (postgres://user:password@host:port/db or key=value form; value not shown)")
	}
	hosts, ports := []string{cfg.Host}, []string{strconv.Itoa(int(cfg.Port))}
	seen := map[string]bool{cfg.Host + "\x00" + ports[0]: true}
	for _, fb := range cfg.Fallbacks { // other hosts, and TLS retries of the same one
		p := strconv.Itoa(int(fb.Port))
		if !seen[fb.Host+"\x00"+p] {
			seen[fb.Host+"\x00"+p] = true
			hosts, ports = append(hosts, fb.Host), append(ports, p)
		}
	}
	env = []string{
		"PGHOST=" + strings.Join(hosts, ","),
		"PGPORT=" + strings.Join(ports, ","),
		"PGUSER=" + cfg.User,
		"PGDATABASE=" + cfg.Database,
		"PGAPPNAME=" + appName,
	}
	if cfg.Password != "" {
		env = append(env, "PGPASSWORD="+cfg.Password)
	}
	params := dsnParams(dsn)
	for _, p := range []struct{ key, env string }{
		{"sslmode", "PGSSLMODE"},
		{"sslrootcert", "PGSSLROOTCERT"},
		{"sslcert", "PGSSLCERT"},
		{"sslkey", "PGSSLKEY"},
		{"sslcrl", "PGSSLCRL"},
		{"connect_timeout", "PGCONNECT_TIMEOUT"},
		{"target_session_attrs", "PGTARGETSESSIONATTRS"},
		{"options", "PGOPTIONS"},
	} {
		v, ok := params[p.key]
		if !ok {
			v, ok = os.LookupEnv(p.env)
		}
		if ok && v != "" {
			env = append(env, p.env+"="+v)
		}
	}
	return env, cfg.Database, cfg.Password, nil
}

// dsnParams reads the settings of a DSN that pgconn keeps only in parsed
// form: URL query parameters, or libpq key=value pairs (values optionally
// single-quoted, with backslash escapes). The DSN has already passed
// pgconn.ParseConfig.
func dsnParams(dsn string) map[string]string {
	out := map[string]string{}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return out
		}
		for k, v := range u.Query() {
			out[k] = v[0]
		}
		return out
	}
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		if s == "" {
			return out
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return out
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\v\f")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			for len(s) > 0 && s[0] != '\'' {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
			if len(s) > 0 {
				s = s[1:]
			}
		} else {
			for len(s) > 0 && !strings.ContainsRune(" \t\n\r\v\f", rune(s[0])) {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
		}
		out[key] = val.String()
	}
}

// HostDumper runs a pg_dump installed on the host.
type HostDumper struct {
	path   string
	env    []string // the child's whole environment
	db     string
	secret string
}

// NewHostDumper prepares pg_dump runs for dsn. pgDumpPath "" finds pg_dump
// in PATH, else the newest /usr/lib/postgresql/<major>/bin/pg_dump. On
// Debian /usr/bin/pg_dump is pg_wrapper, which itself runs the newest
// installed version. The child gets only PATH, HOME and the libpq
// variables of the DSN: never the password on its command line.
func NewHostDumper(dsn string, pgDumpPath string) (*HostDumper, error) {
	env, db, secret, err := pgEnv(dsn)
	if err != nil {
		return nil, err
	}
	path, err := findPgDump(pgDumpPath)
	if err != nil {
		return nil, err
	}
	base := []string{"PATH=" + os.Getenv("PATH")}
	if os.Getenv("PATH") == "" {
		base[0] = "PATH=/usr/local/bin:/usr/bin:/bin"
	}
	if home := os.Getenv("HOME"); home != "" {
		base = append(base, "HOME="+home) // ~/.postgresql/root.crt for sslmode=verify-*
	}
	return &HostDumper{path: path, env: append(base, env...), db: db, secret: secret}, nil
}

// pgDumpRoot holds Debian's versioned PostgreSQL installs.
const pgDumpRoot = "/usr/lib/postgresql"

func findPgDump(path string) (string, error) {
	if path != "" {
		p, err := exec.LookPath(path)
		if err != nil {
			err = unwrapExec(err)
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("pg_dump %s: %w", path, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("pg_dump"); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(pgDumpRoot, "*", "bin", "pg_dump"))
	sort.Slice(dirs, func(i, j int) bool { return versionOfDir(dirs[i]) > versionOfDir(dirs[j]) })
	for _, p := range dirs {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("pg_dump not found in PATH or %s/*/bin: install postgresql-client or use backup.database.pg_dump: container:<db container>", pgDumpRoot)
}

// versionOfDir reads 15 from /usr/lib/postgresql/15/bin/pg_dump (9.6 as 9.6).
func versionOfDir(p string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
	return v
}

func unwrapExec(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

// String names the program, e.g. "pg_dump /usr/lib/postgresql/15/bin/pg_dump".
func (h *HostDumper) String() string { return "pg_dump " + h.path }

// command builds the pg_dump command line and environment.
func (h *HostDumper) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.path, args...)
	cmd.Env = h.env
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Version runs pg_dump --version.
func (h *HostDumper) Version(ctx context.Context) (int, string, error) {
	cmd := h.command(ctx, "--version")
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("%s --version: %w", h.path, ctx.Err())
		}
		return 0, "", h.runError(err, &stderr)
	}
	major, full, err := ParsePgDumpVersion(string(out))
	if err != nil {
		return 0, "", fmt.Errorf("%s --version: %w", h.path, err)
	}
	return major, full, nil
}

// Dump runs pg_dump and copies its stdout to w as it comes.
func (h *HostDumper) Dump(ctx context.Context, w io.Writer) error {
	return h.dump(ctx, w, dumpArgs...)
}

// DumpSnapshot is Dump of the data an exported snapshot sees
// (pg_dump --snapshot), so it matches counts taken in that snapshot.
func (h *HostDumper) DumpSnapshot(ctx context.Context, w io.Writer, snapshotID string) error {
	return h.dump(ctx, w, append(slices.Clone(dumpArgs), "--snapshot="+snapshotID)...)
}

func (h *HostDumper) dump(ctx context.Context, w io.Writer, args ...string) error {
	cmd := h.command(ctx, args...)
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pg_dump %s: %w", h.db, err)
	}
	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pg_dump %s: %w", h.db, ctx.Err())
		}
		return fmt.Errorf("pg_dump %s: start %s: %w", h.db, h.path, unwrapExec(err))
	}
	ew := &errWriter{w: w}
	_, copyErr := io.Copy(ew, out)
	if copyErr != nil {
		// The writer failed (or the pipe broke): stop pg_dump rather than
		// let it block on a pipe nobody reads.
		cmd.Process.Kill()
		out.Close()
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("pg_dump %s: %w", h.db, ctx.Err())
	case ew.err != nil:
		return fmt.Errorf("write dump of %s: %w", h.db, ew.err)
	case waitErr != nil:
		return h.runError(waitErr, &stderr)
	case copyErr != nil:
		return fmt.Errorf("pg_dump %s: read output: %w", h.db, copyErr)
	}
	return nil
}

func (h *HostDumper) runError(err error, stderr *tailBuffer) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &DumpError{Where: "pg_dump", Status: ee.ProcessState.String(), Stderr: pgmeta.Scrub(stderr.line(), h.secret)}
	}
	return fmt.Errorf("pg_dump %s: %w", h.path, unwrapExec(err))
}

// ContainerDumper runs pg_dump inside a running container (usually the
// database's own, whose pg_dump always matches its server) through the
// Docker Engine API's exec.
//
// The DSN is the one pg_dump uses INSIDE the container: when the server
// runs in that container, localhost (or 127.0.0.1) at the server's port
// inside the container reaches it, which differs from the host's DSN when
// the port is published under another number or the host reaches the
// server by another address. Pass the host's DSN when it works from both
// sides, or a per-container override.
type ContainerDumper struct {
	docker    *client.Client
	container string
	env       []string
	db        string
	secret    string
}

// NewContainerDumper prepares pg_dump runs in container, given as an exact
// name or a name prefix like the container check (psyfit-db matches
// psyfit-db or, else, the newest running psyfit-db-*). The container is
// looked up at each run, so a redeployed one is found. The password goes
// to pg_dump through the exec's environment, never its command line.
func NewContainerDumper(docker *client.Client, container string, dsn string) (*ContainerDumper, error) {
	name := strings.TrimPrefix(strings.TrimSpace(container), "/")
	if name == "" {
		return nil, errors.New("pg_dump: container: name required (container:<db container>)")
	}
	if docker == nil {
		return nil, errors.New("pg_dump: container: no Docker client")
	}
	env, db, secret, err := pgEnv(dsn)
	if err != nil {
		return nil, err
	}
	return &ContainerDumper{docker: docker, container: name, env: env, db: db, secret: secret}, nil
}

// String names where pg_dump runs, e.g. "pg_dump in container psyfit-db".
func (c *ContainerDumper) String() string { return "pg_dump in container " + c.container }

// execOptions is the exec the engine is asked to create: the password is
// in Env only.
func (c *ContainerDumper) execOptions(args ...string) client.ExecCreateOptions {
	return client.ExecCreateOptions{
		AttachStdout: true,
		AttachStderr: true,
		Env:          c.env,
		Cmd:          append([]string{"pg_dump"}, args...),
	}
}

// Version runs pg_dump --version in the container.
func (c *ContainerDumper) Version(ctx context.Context) (int, string, error) {
	var out tailBuffer
	if err := c.run(ctx, &out, "--version"); err != nil {
		return 0, "", err
	}
	major, full, err := ParsePgDumpVersion(out.String())
	if err != nil {
		return 0, "", fmt.Errorf("%s: --version: %w", c, err)
	}
	return major, full, nil
}

// Dump runs pg_dump in the container and copies its stdout to w as the
// engine streams it. Cancelling ctx closes the stream; pg_dump then ends on
// its broken pipe.
func (c *ContainerDumper) Dump(ctx context.Context, w io.Writer) error {
	return c.run(ctx, w, dumpArgs...)
}

// DumpSnapshot is Dump with pg_dump --snapshot (see HostDumper.DumpSnapshot).
func (c *ContainerDumper) DumpSnapshot(ctx context.Context, w io.Writer, snapshotID string) error {
	return c.run(ctx, w, append(slices.Clone(dumpArgs), "--snapshot="+snapshotID)...)
}

// SnapshotDumper dumps at an exported snapshot; both dumpers are one.
type SnapshotDumper interface {
	DumpSnapshot(ctx context.Context, w io.Writer, snapshotID string) error
}

// run execs pg_dump with args in the container, its stdout to w.
func (c *ContainerDumper) run(ctx context.Context, w io.Writer, args ...string) error {
	id, err := c.resolve(ctx)
	if err != nil {
		return err
	}
	ex, err := c.docker.ExecCreate(ctx, id, c.execOptions(args...))
	if err != nil {
		return c.engineError(ctx, "create exec", err)
	}
	att, err := c.docker.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return c.engineError(ctx, "start exec", err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()

	ew := &errWriter{w: w}
	var stderr tailBuffer
	_, copyErr := stdcopy.StdCopy(ew, &stderr, att.Reader)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", c, ctx.Err())
	case ew.err != nil:
		return fmt.Errorf("write dump of %s: %w", c.db, ew.err)
	case copyErr != nil:
		return fmt.Errorf("%s: read exec output: %w", c, copyErr)
	}
	att.Close()

	code, err := c.exitCode(ctx, ex.ID)
	if err != nil {
		return err
	}
	if code == 0 {
		return nil
	}
	msg := pgmeta.Scrub(stderr.line(), c.secret)
	if code == 126 || code == 127 {
		// The engine could not start it (Docker answers 126/127 and says
		// why on the stream): no pg_dump in this image.
		if msg != "" {
			msg = ": " + msg
		}
		return fmt.Errorf("pg_dump not found in container %s (exit status %d%s): use a container with pg_dump or backup.database.pg_dump: host", c.container, code, msg)
	}
	return &DumpError{Where: c.String(), Status: "exit status " + strconv.Itoa(code), Stderr: msg}
}

// exitCode waits (briefly: the stream has ended, so has the process) for
// the exec to be reported finished and returns its exit code.
func (c *ContainerDumper) exitCode(ctx context.Context, execID string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := c.docker.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return 0, c.engineError(ctx, "inspect exec", err)
		}
		if !in.Running {
			return in.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: output ended but the exec still runs after 10s", c)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: %w", c, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// resolve finds the container to exec in: the one named exactly
// c.container, else the newest running one named c.container-*. It must
// be running.
func (c *ContainerDumper) resolve(ctx context.Context) (string, error) {
	list, err := c.docker.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return "", c.engineError(ctx, "list containers", err)
	}
	found, ok, err := containers.Pick(list.Items, c.container)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s: no running container named %s or %s-*", c, c.container, c.container)
	}
	if found.State != container.StateRunning {
		return "", fmt.Errorf("%s: container is %s, not running", c, found.State)
	}
	return found.ID, nil
}

func (c *ContainerDumper) engineError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", c, ctx.Err())
	}
	var ne net.Error
	if errors.As(err, &ne) || client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%s: %s: Docker engine not reachable: %w", c, op, err)
	}
	return fmt.Errorf("%s: %s: %w", c, op, err)
}

// errWriter remembers the first error of w, so a failed write is told
// apart from a failed pg_dump.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// tailBuffer keeps the last stderrKeep bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > stderrKeep {
		t.b = append(t.b[:0], t.b[len(t.b)-stderrKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// line is the kept text as one line: lines joined with "; ".
func (t *tailBuffer) line() string {
	var lines []string
	for _, l := range strings.Split(string(t.b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
