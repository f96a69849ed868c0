package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/probe/internal/pgmeta"
	"backstop/probe/internal/snapshot"
	"backstop/shared/clip"
	"backstop/shared/manifest"
)

// DB restores a snapshot's database beside the live one and swaps it in.
//
// The live database (the DSN's) is never written to: a restore builds
// "<live>_restore_<txn>" (Scratch) from template0, fills it with
// pg_restore, ANALYZEs and validates it, and only Swap touches the live
// database, by renaming it to "<live>_pre_<txn>" (Pre) and the scratch one
// to the live name in one transaction. Revert puts the pre-state back;
// Prune drops old pre-states.
//
// All administrative statements run connected to the "postgres" database
// of the same server with the DSN's credentials ("template1" when the live
// database is itself called postgres). That role must own the live
// database (or be a superuser), have CREATEDB, and be able to terminate
// the live database's sessions (its own role's, or pg_signal_backend, or
// superuser). Database-level settings (ALTER DATABASE ... SET, and ALTER
// ROLE ... IN DATABASE ... SET), privileges (GRANT ... ON DATABASE), the
// connection limit, tablespace, encoding and locale of the live database
// are copied to the scratch one, since a pg_dump archive does not carry
// them.
//
// Errors name the operation and the database, never the password.
type DB struct {
	DSN string // the live database's DSN (the app's)
	// HookEnv names the probe's secret-looking variables Hook keeps (rollback.env).
	HookEnv []string
	// PgRestore is the pg_restore program; "" finds it in PATH, else the
	// newest /usr/lib/postgresql/<major>/bin.
	PgRestore string
	// Jobs > 1 decompresses the dump into TempDir and runs pg_restore -j
	// Jobs on the file (needs the dump's uncompressed size free there);
	// 0 or 1 streams the decompressed dump into pg_restore's stdin.
	Jobs    int
	TempDir string // where a Jobs > 1 restore decompresses the dump; "" = os.TempDir()
	// Hook is an optional shell command (sh -c) run before anything is
	// created, e.g. `alembic downgrade "$TARGET_REVISION"`. Its environment
	// is the probe's plus TARGET_REVISION (the snapshot's migration
	// revision), MIGRATION_TOOL, TXN, DATABASE (the live database's name)
	// and SNAPSHOT (the snapshot's id). A hook that exits non-zero stops
	// the restore.
	Hook string
	// Container, when set (backup.database.pg_dump: container:<name>),
	// asks for pg_restore inside that container: not supported yet,
	// Restore fails with ErrContainerRestore before doing anything.
	Container string
	Log       *slog.Logger // nil: no logging
}

// ErrContainerRestore is Restore's error when DB.Container is set.
// TODO: run pg_restore through the Docker exec API with stdin attached.
var ErrContainerRestore = errors.New("pg_restore in a container is not supported yet; install postgresql-client on the host")

// maxIdent is PostgreSQL's longest identifier in bytes (NAMEDATALEN-1).
const maxIdent = 63

// Kinds of state databases beside the live one.
const (
	kindRestore = "restore"
	kindPre     = "pre"
	kindFailed  = "failed"
)

// longestKind sizes every name as if it were the longest kind, so one txn
// gets the same (possibly shortened) suffix in all its names.
const longestKind = len(kindRestore)

// minTxnPart is the room a txn keeps in a name even beside a long live name.
const minTxnPart = 17

// swapDrain bounds how long Swap and Revert wait for the live database's
// sessions to end after terminating them.
const swapDrain = 2 * time.Second

// appName is the application_name of every session DB opens.
const appName = "backstop restore"

// Scratch is the database a restore of txn builds: "<live>_restore_<txn>".
func (d *DB) Scratch(txn string) string { return stateName(d.liveName(), kindRestore, txn) }

// Pre is the name the live database gets when txn's restore is swapped in:
// "<live>_pre_<txn>".
func (d *DB) Pre(txn string) string { return stateName(d.liveName(), kindPre, txn) }

// Failed is the name the restored database gets when Revert undoes txn:
// "<live>_failed_<txn>".
func (d *DB) Failed(txn string) string { return stateName(d.liveName(), kindFailed, txn) }

// stateName builds "<live>_<kind>_<txn>", at most 63 bytes. The txn is
// lowercased and every byte but [a-z0-9_] becomes "_", so the name needs
// no quoting in psql. When it does not fit, the txn keeps its head and
// gets "_" + 8 hex of its SHA-256; a live name longer than 37 bytes is
// shortened the same way. The result depends only on live, kind and txn.
func stateName(live, kind, txn string) string {
	return livePart(live) + "_" + kind + "_" + txnPart(live, txn)
}

func livePart(live string) string {
	room := maxIdent - (2 + longestKind) - minTxnPart
	if len(live) <= room {
		return live
	}
	return clip.Prefix(live, room-9) + "_" + shortHash(live)
}

func txnPart(live, txn string) string {
	b := []byte(strings.ToLower(txn))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	t := string(b)
	room := maxIdent - len(livePart(live)) - (2 + longestKind)
	if len(t) <= room {
		return t
	}
	return t[:room-9] + "_" + shortHash(txn)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

func (d *DB) liveName() string {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		return ""
	}
	return cfg.Database
}

func (d *DB) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// server is what DB knows about its server once the DSN is parsed.
type server struct {
	cfg  *pgx.ConnConfig
	live string
}

func (d *DB) server() (*server, error) {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		// pgx's error quotes the DSN: say what is wrong without any of it.
		return nil, errors.New("restore database: dsn: not a valid PostgreSQL connection string (value not shown)")
	}
	if cfg.Database == "" {
		return nil, errors.New("restore database: dsn names no database")
	}
	return &server{cfg: cfg, live: cfg.Database}, nil
}

// admin is the database administrative sessions connect to.
func (s *server) admin() string {
	if s.live == "postgres" {
		return "template1"
	}
	return "postgres"
}

func (s *server) target(db string) string {
	host := s.cfg.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(s.cfg.Port)))
	}
	return host + "/" + db
}

// fail turns a driver error into a clean, password-free error naming op
// and the database; errors.Is/As still reach the driver's error.
func (s *server) fail(op, db string, err error) error {
	limit := s.cfg.ConnectTimeout
	return &dbError{msg: pgmeta.Scrub(fmt.Sprintf("%s %s: %s", op, s.target(db), pgmeta.Cause(err, limit)), s.cfg.Password), err: err}
}

func (s *server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg := s.cfg.Copy()
	cfg.Database = db
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = appName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, s.fail("connect", db, err)
	}
	return conn, nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

// dbError is a database failure with a clean message.
type dbError struct {
	msg string
	err error
}

func (e *dbError) Error() string { return e.msg }
func (e *dbError) Unwrap() error { return e.err }

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// Restore builds Scratch(txn) from dump, a zstd-compressed `pg_dump -Fc`
// archive, and checks it against m. In order: it runs Hook (a failing hook
// stops it before anything is created); drops a leftover Scratch(txn) of
// an earlier attempt; creates Scratch(txn) from template0 with the live
// database's owner, encoding, locale, tablespace and connection limit;
// streams the decompressed dump into `pg_restore --exit-on-error` (owners
// and privileges as in the dump, so the roles must exist on this server
// and the DSN's role must be allowed to set them); copies the live
// database's settings and privileges; runs ANALYZE; and Validates.
//
// The live database is never touched. On any failure the scratch database
// is dropped and the error returned; when the server cannot be reached to
// drop it (it went down), the error says so, and Revert or Prune removes
// it later. Cancelling ctx stops pg_restore and fails the same way.
func (d *DB) Restore(ctx context.Context, txn string, dump io.Reader, m manifest.Manifest) (err error) {
	if txn == "" {
		return errors.New("restore database: empty transaction id")
	}
	if m.DB == nil {
		return fmt.Errorf("restore database: snapshot %s has no database", m.ID)
	}
	if d.Container != "" {
		return fmt.Errorf("restore database in container %s: %w", d.Container, ErrContainerRestore)
	}
	s, err := d.server()
	if err != nil {
		return err
	}
	scratch := d.Scratch(txn)
	lg := d.log().With("txn", txn, "database", scratch)
	pgRestore, err := d.pgRestorePath()
	if err != nil {
		return err
	}

	if d.Hook != "" {
		t0 := time.Now()
		if err := d.runHook(ctx, s, txn, m); err != nil {
			return err
		}
		lg.Info("pre-restore hook done", "duration_ms", time.Since(t0).Milliseconds())
	}

	admin, err := s.connect(ctx, s.admin())
	if err != nil {
		return err
	}
	defer closeConn(admin)
	props, err := readProps(ctx, admin, s.live)
	if err != nil {
		return s.fail("read properties of", s.live, err)
	}
	if ok, err := dbExists(ctx, admin, scratch); err != nil {
		return s.fail("look up", scratch, err)
	} else if ok {
		lg.Warn("dropping a leftover scratch database of an earlier attempt")
		if err := dropDB(ctx, admin, scratch); err != nil {
			return s.fail("drop leftover", scratch, err)
		}
	}

	t0 := time.Now()
	if _, err := admin.Exec(ctx, props.createSQL(scratch)); err != nil {
		return s.fail("create", scratch, err)
	}
	defer func() {
		if err == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := d.dropScratch(dctx, s, scratch); derr != nil {
			err = fmt.Errorf("%w (and the scratch database could not be dropped: %v; `probe revert %s` drops it)", err, derr, txn)
			return
		}
		lg.Info("scratch database dropped after a failed restore")
	}()

	if err := d.pgRestore(ctx, s, pgRestore, scratch, dump); err != nil {
		return err
	}
	lg.Info("pg_restore done", "duration_ms", time.Since(t0).Milliseconds(), "jobs", max(d.Jobs, 1))

	if err := props.copyTo(ctx, admin, scratch, lg); err != nil {
		return s.fail("copy settings and privileges of "+s.live+" to", scratch, err)
	}

	t1 := time.Now()
	if err := d.analyze(ctx, s, scratch); err != nil {
		return err
	}
	lg.Info("analyze done", "duration_ms", time.Since(t1).Milliseconds())

	t2 := time.Now()
	if err := d.Validate(ctx, scratch, m); err != nil {
		return err
	}
	lg.Info("validated", "tables", len(m.DB.Tables), "duration_ms", time.Since(t2).Milliseconds())
	return nil
}

func (d *DB) pgRestorePath() (string, error) {
	if d.PgRestore != "" {
		p, err := exec.LookPath(d.PgRestore)
		if err != nil {
			return "", fmt.Errorf("pg_restore %s: %w", d.PgRestore, unwrapExec(err))
		}
		return p, nil
	}
	if p := snapshot.FindPgTool("pg_restore"); p != "" {
		return p, nil
	}
	return "", errors.New("pg_restore not found in PATH or /usr/lib/postgresql/*/bin: install postgresql-client")
}

func unwrapExec(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

// runHook runs d.Hook with sh -c.
func (d *DB) runHook(ctx context.Context, s *server, txn string, m manifest.Manifest) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", d.Hook)
	cmd.Env = hookEnv(d.HookEnv, []string{
		"TARGET_REVISION=" + m.DB.Migration.Revision,
		"MIGRATION_TOOL=" + m.DB.Migration.Tool,
		"TXN=" + txn,
		"DATABASE=" + s.live,
		"SNAPSHOT=" + m.ID,
	})
	cmd.WaitDelay = 5 * time.Second
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if text := out.line(); text != "" {
		d.log().Info("pre-restore hook output", "txn", txn, "output", pgmeta.Scrub(text, s.cfg.Password))
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pre-restore hook: %w", ctx.Err())
		}
		msg := pgmeta.Scrub(out.line(), s.cfg.Password)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = errors.New(ee.ProcessState.String())
		}
		if msg == "" {
			return fmt.Errorf("pre-restore hook: %v (no output)", err)
		}
		return fmt.Errorf("pre-restore hook: %v: %s", err, msg)
	}
	return nil
}

// analyze runs ANALYZE in db.
func (d *DB) analyze(ctx context.Context, s *server, db string) error {
	conn, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return s.fail("analyze", db, err)
	}
	return nil
}

// dropScratch drops db on a fresh admin session, ending its sessions.
func (d *DB) dropScratch(ctx context.Context, s *server, db string) error {
	admin, err := s.connect(ctx, s.admin())
	if err != nil {
		return err
	}
	defer closeConn(admin)
	if err := dropDB(ctx, admin, db); err != nil {
		return s.fail("drop", db, err)
	}
	return nil
}

// dropDB drops db if it exists, terminating its sessions first (WITH
// (FORCE) needs PostgreSQL 13; older servers get a terminate and a plain
// DROP).
func dropDB(ctx context.Context, c *pgx.Conn, db string) error {
	if serverNum(c) >= 130000 {
		_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(db)+" WITH (FORCE)")
		return err
	}
	if _, _, err := terminate(ctx, c, db); err != nil {
		return err
	}
	_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(db))
	return err
}

func serverNum(c *pgx.Conn) int {
	n, _ := strconv.Atoi(c.PgConn().ParameterStatus("server_version_num"))
	if n == 0 {
		// server_version_num is reported from PostgreSQL 12 on; parse
		// "11.22 (Debian...)" otherwise.
		v := c.PgConn().ParameterStatus("server_version")
		var major, minor int
		fmt.Sscanf(v, "%d.%d", &major, &minor)
		n = major*10000 + minor
	}
	return n
}

func dbExists(ctx context.Context, c *pgx.Conn, db string) (bool, error) {
	var ok bool
	err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&ok)
	return ok, err
}

// props are the live database's properties a pg_dump archive lacks.
type props struct {
	owner, encoding, collate, ctype string
	iculocale                       string // "" unless the ICU provider is used (PostgreSQL 15+)
	tablespace                      string
	connLimit                       int
	hasACL                          bool
	grants                          []grant
	settings                        []setting
}

type grant struct {
	grantee   string // "" = PUBLIC
	privilege string // CONNECT, CREATE, TEMPORARY
	grantable bool
}

type setting struct {
	role  string // "" = for every role
	name  string
	value string
}

func readProps(ctx context.Context, c *pgx.Conn, live string) (props, error) {
	var p props
	icu := "''"
	if serverNum(c) >= 150000 {
		icu = "CASE WHEN d.datlocprovider = 'i' THEN coalesce(d.daticulocale, '') ELSE '' END"
	}
	err := c.QueryRow(ctx, `SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
		d.datcollate, d.datctype, `+icu+`, t.spcname, d.datconnlimit, d.datacl IS NOT NULL
		FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
		WHERE d.datname = $1`, live).
		Scan(&p.owner, &p.encoding, &p.collate, &p.ctype, &p.iculocale, &p.tablespace, &p.connLimit, &p.hasACL)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("database %q does not exist", live)
	}
	if err != nil {
		return p, err
	}
	rows, err := c.Query(ctx, `SELECT coalesce(r.rolname, ''), a.privilege_type, a.is_grantable
		FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
		WHERE d.datname = $1 AND a.grantee <> d.datdba
		ORDER BY 1, 2`, live)
	if err != nil {
		return p, err
	}
	p.grants, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		err := r.Scan(&g.grantee, &g.privilege, &g.grantable)
		return g, err
	})
	if err != nil {
		return p, err
	}
	rows, err = c.Query(ctx, `SELECT coalesce(r.rolname, ''), s.cfg
		FROM pg_db_role_setting rs JOIN pg_database d ON d.oid = rs.setdatabase
		LEFT JOIN pg_roles r ON r.oid = rs.setrole, unnest(rs.setconfig) s(cfg)
		WHERE d.datname = $1 ORDER BY 1, 2`, live)
	if err != nil {
		return p, err
	}
	p.settings, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (setting, error) {
		var st setting
		var cfg string
		if err := r.Scan(&st.role, &cfg); err != nil {
			return st, err
		}
		st.name, st.value, _ = strings.Cut(cfg, "=")
		return st, nil
	})
	return p, err
}

func (p props) createSQL(db string) string {
	var b strings.Builder
	b.WriteString("CREATE DATABASE " + ident(db) + " WITH TEMPLATE template0 OWNER " + ident(p.owner) +
		" ENCODING " + quoteLit(p.encoding) + " LC_COLLATE " + quoteLit(p.collate) + " LC_CTYPE " + quoteLit(p.ctype))
	if p.iculocale != "" {
		b.WriteString(" LOCALE_PROVIDER icu ICU_LOCALE " + quoteLit(p.iculocale))
	}
	if p.tablespace != "pg_default" {
		b.WriteString(" TABLESPACE " + ident(p.tablespace))
	}
	if p.connLimit >= 0 {
		b.WriteString(" CONNECTION LIMIT " + strconv.Itoa(p.connLimit))
	}
	return b.String()
}

// copyTo gives db the live database's privileges and settings. A setting
// is set in the session first (set_config, transaction-local) and stored
// with SET ... FROM CURRENT, so list values such as search_path keep their
// exact form. A setting this role may not make (e.g. a superuser-only one
// set by a superuser) is logged and skipped rather than failing the
// restore.
func (p props) copyTo(ctx context.Context, c *pgx.Conn, db string, lg *slog.Logger) error {
	if p.hasACL {
		if _, err := c.Exec(ctx, "REVOKE ALL ON DATABASE "+ident(db)+" FROM PUBLIC"); err != nil {
			return err
		}
		for _, g := range p.grants {
			to := "PUBLIC"
			if g.grantee != "" {
				to = ident(g.grantee)
			}
			sql := "GRANT " + g.privilege + " ON DATABASE " + ident(db) + " TO " + to
			if g.grantable {
				sql += " WITH GRANT OPTION"
			}
			if _, err := c.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
	}
	for _, st := range p.settings {
		alter := "ALTER DATABASE " + ident(db)
		if st.role != "" {
			alter = "ALTER ROLE " + ident(st.role) + " IN DATABASE " + ident(db)
		}
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", st.name, st.value); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, alter+" SET "+ident(st.name)+" FROM CURRENT")
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lg.Warn("database setting not copied", "setting", st.name, "role", st.role, "error", pgmeta.Cause(err, 0))
		}
	}
	return nil
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ValidationError is a restored database that does not match its
// snapshot's manifest. Problems name each table (or the migration
// revision) at fault.
type ValidationError struct {
	Database string
	Problems []string
}

func (e *ValidationError) Error() string {
	const show = 10
	p := e.Problems
	more := ""
	if len(p) > show {
		more = fmt.Sprintf("; and %d more", len(p)-show)
		p = p[:show]
	}
	return "validate " + e.Database + ": " + strings.Join(p, "; ") + more
}

// Validate checks dbname against m: every table of m.DB.Tables present
// with exactly its row count, and the migration tool and revision equal
// (pgmeta.DetectMigration). Tables the database has beyond the manifest
// are not an error. A mismatch gives a *ValidationError naming every table
// at fault; counts are read in one REPEATABLE READ, READ ONLY transaction.
func (d *DB) Validate(ctx context.Context, dbname string, m manifest.Manifest) error {
	if m.DB == nil {
		return fmt.Errorf("validate %s: snapshot %s has no database", dbname, m.ID)
	}
	s, err := d.server()
	if err != nil {
		return err
	}
	conn, err := s.connect(ctx, dbname)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return s.fail("validate", dbname, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'`)
	if err != nil {
		return s.fail("list tables of", dbname, err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var schema, name string
		err := r.Scan(&schema, &name)
		return pgx.Identifier{schema, name}, err
	})
	if err != nil {
		return s.fail("list tables of", dbname, err)
	}
	present := make(map[string]pgx.Identifier, len(ids))
	for _, id := range ids {
		present[strings.Join(id, ".")] = id
	}

	names := make([]string, 0, len(m.DB.Tables))
	for t := range m.DB.Tables {
		names = append(names, t)
	}
	sort.Strings(names)
	var problems []string
	for _, t := range names {
		want := m.DB.Tables[t]
		id, ok := present[t]
		if !ok {
			problems = append(problems, fmt.Sprintf("table %s missing (snapshot has %d rows)", t, want))
			continue
		}
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+id.Sanitize()).Scan(&n); err != nil {
			return s.fail("count "+t+" in", dbname, err)
		}
		if n != want {
			problems = append(problems, fmt.Sprintf("table %s has %d rows, snapshot has %d", t, n, want))
		}
	}
	mig, err := pgmeta.DetectMigration(ctx, tx)
	if err != nil {
		return s.fail("migration revision of", dbname, err)
	}
	if want := m.DB.Migration; mig.Tool != want.Tool || mig.Revision != want.Revision {
		problems = append(problems, fmt.Sprintf("migration revision is %s, snapshot has %s", describeMigration(mig.Tool, mig.Revision), describeMigration(want.Tool, want.Revision)))
	}
	if len(problems) > 0 {
		return &ValidationError{Database: dbname, Problems: problems}
	}
	return nil
}

func describeMigration(tool, rev string) string {
	if tool == "" {
		tool = pgmeta.ToolNone
	}
	if tool == pgmeta.ToolNone {
		return "none (no migration table)"
	}
	if rev == "" {
		rev = "(empty)"
	}
	return tool + " " + rev
}

// Swap puts Scratch(txn) in place of the live database, connected to the
// admin database: it disallows connections to the live database,
// terminates its sessions (and any on the scratch one), and then in ONE
// transaction renames live to Pre(txn), the scratch database to the live
// name, and allows connections to it. The pre-state keeps connections
// disallowed, so nothing writes to it and Revert is not blocked by
// sessions (ALTER DATABASE ... ALLOW_CONNECTIONS true to inspect it).
//
// unavailable is the time from the disallow to the commit: the only time
// the app cannot reach its database, whatever the database's size.
//
// Before the disallow Swap checks that the scratch database exists, the
// live one exists and Pre(txn) does not; it changes nothing when one
// fails. A failure after the disallow (a rename refused, sessions that
// would not end) rolls the transaction back and allows connections to the
// old live database again: the live name always holds a whole database,
// old or new, never none. If the server goes away in between, the live
// database may be left disallowing connections; Revert allows them again.
func (d *DB) Swap(ctx context.Context, txn string) (unavailable time.Duration, err error) {
	if txn == "" {
		return 0, errors.New("swap database: empty transaction id")
	}
	s, err := d.server()
	if err != nil {
		return 0, err
	}
	live, scratch, pre := s.live, d.Scratch(txn), d.Pre(txn)
	admin, err := s.connect(ctx, s.admin())
	if err != nil {
		return 0, err
	}
	defer closeConn(admin)
	have, err := existing(ctx, admin, live, scratch, pre)
	if err != nil {
		return 0, s.fail("look up databases on", s.admin(), err)
	}
	switch {
	case !have[scratch]:
		return 0, fmt.Errorf("swap %s: restored database %s does not exist", live, scratch)
	case !have[live]:
		return 0, fmt.Errorf("swap %s: live database does not exist", live)
	case have[pre]:
		return 0, fmt.Errorf("swap %s: %s already exists (this transaction was swapped before)", live, pre)
	}

	unavailable, err = d.exchange(ctx, s, admin, live, []string{live, pre, scratch, live})
	if err != nil {
		return unavailable, fmt.Errorf("swap %s with %s: %w", live, scratch, err)
	}
	d.log().Info("database swapped", "txn", txn, "live", live, "pre", pre, "unavailable_ms", unavailable.Milliseconds())
	return unavailable, nil
}

// exchange disallows connections to live, ends the sessions of live and of
// the renames' sources, then renames pairs (from, to, from, to, ...) and
// allows connections to live in one transaction. On failure it allows
// connections to live again (the rolled-back, old live). It returns the
// time from the disallow to the end.
func (d *DB) exchange(ctx context.Context, s *server, c *pgx.Conn, live string, renames []string) (time.Duration, error) {
	t0 := time.Now()
	if _, err := c.Exec(ctx, "ALTER DATABASE "+ident(live)+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return 0, s.fail("disallow connections to", live, err)
	}
	ok := false
	defer func() {
		if ok {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := c.Exec(rctx, "ALTER DATABASE "+ident(live)+" WITH ALLOW_CONNECTIONS true"); err != nil {
			d.log().Error("could not allow connections to the live database again", "database", live, "error", s.fail("allow connections to", live, err))
		}
	}()

	var sources []string
	for i := 0; i < len(renames); i += 2 {
		sources = append(sources, renames[i])
	}
	deadline := time.Now().Add(swapDrain)
	for {
		left, refused, err := terminate(ctx, c, sources...)
		if err != nil {
			return time.Since(t0), s.fail("terminate sessions of", live, err)
		}
		if len(left) == 0 {
			break
		}
		if len(refused) > 0 {
			return time.Since(t0), fmt.Errorf("sessions of %s cannot be ended (%s): %s; grant pg_signal_backend to the DSN's role or restore as a superuser",
				live, strings.Join(left, ", "), refused[0])
		}
		if time.Now().After(deadline) {
			return time.Since(t0), fmt.Errorf("sessions of %s still there %v after being terminated: %s", live, swapDrain, strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return time.Since(t0), fmt.Errorf("terminate sessions of %s: %w", live, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}

	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for i := 0; i < len(renames); i += 2 {
			if _, err := tx.Exec(ctx, "ALTER DATABASE "+ident(renames[i])+" RENAME TO "+ident(renames[i+1])); err != nil {
				return s.fail("rename "+renames[i]+" to "+renames[i+1]+" on", s.admin(), err)
			}
		}
		if _, err := tx.Exec(ctx, "ALTER DATABASE "+ident(live)+" WITH ALLOW_CONNECTIONS true"); err != nil {
			return s.fail("allow connections to", live, err)
		}
		return nil
	})
	if err != nil {
		var de *dbError
		if !errors.As(err, &de) {
			err = s.fail("commit renames on", s.admin(), err)
		}
		return time.Since(t0), err
	}
	ok = true
	return time.Since(t0), nil
}

// terminate ends the sessions (but its own) connected to dbs. It returns
// those still there afterwards, as "pid user application", and the
// messages of terminations the server refused (another role's session,
// without pg_signal_backend), which waiting will not change.
func terminate(ctx context.Context, c *pgx.Conn, dbs ...string) (left, refused []string, err error) {
	rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, dbs)
	if err != nil {
		return nil, nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(pids) == 0 {
		return nil, nil, err
	}
	for _, pid := range pids {
		// One statement each: a refused one must not stop the rest.
		if _, err := c.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			refused = append(refused, pgmeta.Cause(err, 0))
		}
	}
	rows, err = c.Query(ctx, `SELECT pid::text || ' ' || coalesce(usename, '?') || ' ' || coalesce(nullif(application_name, ''), '-')
		FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid() ORDER BY pid`, dbs)
	if err != nil {
		return nil, nil, err
	}
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return left, refused, err
}

// existing reports which of names exist.
// endOrphans terminates the restore sessions (this package's and
// pg_restore's) other than c's own, and waits up to 10 s for them to end.
func endOrphans(ctx context.Context, c *pgx.Conn) error {
	const q = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name IN ($1, 'backstop pg_restore') AND pid <> pg_backend_pid()`
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := c.QueryRow(ctx, q, appName).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sessions of an interrupted restore are still running", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func existing(ctx context.Context, c *pgx.Conn, names ...string) (map[string]bool, error) {
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname = ANY($1)", names)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, n := range found {
		have[n] = true
	}
	return have, nil
}

// Revert undoes txn's database restore, whatever step it reached:
//
//   - swapped (Pre(txn) exists): the live database (the restored one) is
//     renamed to Failed(txn) and Pre(txn) back to the live name, in one
//     transaction after disallowing connections and ending sessions, as
//     Swap does; Failed(txn) keeps connections disallowed until Prune drops
//     it. Its unavailability is logged.
//   - not swapped: Scratch(txn) is dropped if present, and the live
//     database is made to allow connections again (a swap interrupted
//     between its disallow and its commit leaves it disallowed).
//
// Revert is idempotent: a second call finds nothing swapped, no scratch,
// and does nothing. The live database is never dropped. It fails when
// neither the live database nor Pre(txn) exists, or when Failed(txn)
// already exists beside Pre(txn).
func (d *DB) Revert(ctx context.Context, txn string) error {
	if txn == "" {
		return errors.New("revert database: empty transaction id")
	}
	s, err := d.server()
	if err != nil {
		return err
	}
	live, scratch, pre, failed := s.live, d.Scratch(txn), d.Pre(txn), d.Failed(txn)
	admin, err := s.connect(ctx, s.admin())
	if err != nil {
		return err
	}
	defer closeConn(admin)
	// A restore killed mid-statement leaves its server session running (a
	// CREATE DATABASE or a pg_restore finishes after the probe died).
	// Revert runs under the lock, so every such session is an orphan: end
	// them first, or a scratch database could appear after the look-up.
	if err := endOrphans(ctx, admin); err != nil {
		return s.fail("end sessions of an interrupted restore on", s.admin(), err)
	}
	have, err := existing(ctx, admin, live, scratch, pre, failed)
	if err != nil {
		return s.fail("look up databases on", s.admin(), err)
	}
	lg := d.log().With("txn", txn, "live", live)

	if have[scratch] {
		if err := dropDB(ctx, admin, scratch); err != nil {
			return s.fail("drop", scratch, err)
		}
		lg.Info("scratch database dropped", "database", scratch)
	}
	switch {
	case have[pre] && have[live]:
		if have[failed] {
			return fmt.Errorf("revert %s: both %s and %s exist: rename or drop one by hand", live, pre, failed)
		}
		unavailable, err := d.exchange(ctx, s, admin, live, []string{live, failed, pre, live})
		if err != nil {
			return fmt.Errorf("revert %s to %s: %w", live, pre, err)
		}
		lg.Info("database reverted", "pre", pre, "failed", failed, "unavailable_ms", unavailable.Milliseconds())
		return nil
	case have[pre]:
		// No live database at all (renamed by hand?): the pre-state is all there is.
		err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "ALTER DATABASE "+ident(pre)+" RENAME TO "+ident(live)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "ALTER DATABASE "+ident(live)+" WITH ALLOW_CONNECTIONS true")
			return err
		})
		if err != nil {
			return s.fail("rename "+pre+" to "+live+" on", s.admin(), err)
		}
		lg.Info("database reverted (no live database was there)", "pre", pre)
		return nil
	case !have[live]:
		return fmt.Errorf("revert %s: the live database does not exist and neither does %s", live, pre)
	}
	var allowed bool
	if err := admin.QueryRow(ctx, "SELECT datallowconn FROM pg_database WHERE datname = $1", live).Scan(&allowed); err != nil {
		return s.fail("read datallowconn of", live, err)
	}
	if !allowed {
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(live)+" WITH ALLOW_CONNECTIONS true"); err != nil {
			return s.fail("allow connections to", live, err)
		}
		lg.Info("connections to the live database allowed again (an interrupted swap had disallowed them)")
	}
	return nil
}

// Prune drops the state databases of old restores of the live database:
// every leftover Scratch of a transaction other than active (an unfinished
// restore), and the Pre and Failed databases of all but the newest keep
// transactions. Newest is by database OID (assigned at creation, kept by
// renames). The active transaction's databases are never dropped and
// count as one of the kept. A database still in use is not forced: its
// DROP fails and Prune goes on with the rest, returning the names it
// dropped and the errors joined.
func (d *DB) Prune(ctx context.Context, keep int, active string) ([]string, error) {
	s, err := d.server()
	if err != nil {
		return nil, err
	}
	admin, err := s.connect(ctx, s.admin())
	if err != nil {
		return nil, err
	}
	defer closeConn(admin)
	rows, err := admin.Query(ctx, "SELECT datname, oid::int8 FROM pg_database ORDER BY oid DESC")
	if err != nil {
		return nil, s.fail("list databases on", s.admin(), err)
	}
	type db struct {
		name string
		oid  int64
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (db, error) {
		var x db
		err := r.Scan(&x.name, &x.oid)
		return x, err
	})
	if err != nil {
		return nil, s.fail("list databases on", s.admin(), err)
	}

	lp := livePart(s.live)
	activeTxn := ""
	if active != "" {
		activeTxn = txnPart(s.live, active)
	}
	var drop []string
	var order []string // txn parts of pre/failed databases, newest first
	groups := map[string][]string{}
	for _, x := range all {
		for _, kind := range []string{kindRestore, kindPre, kindFailed} {
			t, ok := strings.CutPrefix(x.name, lp+"_"+kind+"_")
			if !ok || t == "" || t == activeTxn {
				continue
			}
			if kind == kindRestore {
				drop = append(drop, x.name)
				continue
			}
			if _, seen := groups[t]; !seen {
				order = append(order, t)
			}
			groups[t] = append(groups[t], x.name)
		}
	}
	kept := 0
	if activeTxn != "" {
		kept = 1
	}
	for _, t := range order {
		if kept < keep {
			kept++
			continue
		}
		drop = append(drop, groups[t]...)
	}

	var dropped []string
	var errs []error
	for _, name := range drop {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)); err != nil {
			if ctx.Err() != nil {
				return dropped, errors.Join(append(errs, fmt.Errorf("prune: %w", ctx.Err()))...)
			}
			errs = append(errs, s.fail("drop", name, err))
			continue
		}
		dropped = append(dropped, name)
		d.log().Info("old restore state dropped", "database", name)
	}
	return dropped, errors.Join(errs...)
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const keep = 4 << 10
	t.b = append(t.b, p...)
	if len(t.b) > keep {
		t.b = append(t.b[:0], t.b[len(t.b)-keep:]...)
	}
	return len(p), nil
}

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
