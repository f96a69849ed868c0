package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"backstop/probe/internal/config"
	"backstop/probe/internal/pgmeta"
)

func init() { register("postgres", newPostgres) }

// PostgresCheck connects to a database and proves it answers, that the
// tables in min_rows hold at least that many rows, and that the migration
// revision (alembic_version or Rails' schema_migrations) is the expected one.
// Its messages name host, port and database but never the password or DSN.
type PostgresCheck struct {
	name    string
	conn    *pgx.ConnConfig // parsed once; Connect copies it
	target  string          // host:port/db, for messages
	secret  string          // the password, scrubbed from any text that leaves
	tables  []minRows       // sorted by name
	wantRev string
	timeout time.Duration
}

type minRows struct {
	name  string // as configured: users or schema.users
	ident pgx.Identifier
	min   int64
}

var _ Checker = (*PostgresCheck)(nil)

func newPostgres(c config.Check) (Checker, error) {
	dsn := c.DSN.Reveal()
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("dsn: required (or set DATABASE_URL)")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the DSN (its password redaction is best effort):
		// say what is wrong without any of it.
		return nil, errors.New("dsn: not a valid PostgreSQL connection string (postgres://user:password@host:port/db or key=value form; value not shown)")
	}
	p := &PostgresCheck{
		name:    c.Name,
		conn:    cfg,
		target:  pgTarget(cfg),
		secret:  cfg.Password,
		wantRev: strings.TrimSpace(c.MigrationRevision),
		timeout: c.Timeout.D(),
	}
	if p.timeout <= 0 {
		p.timeout = config.DefaultTimeout
	}
	for name, n := range c.MinRows {
		if n < 0 {
			return nil, fmt.Errorf("min_rows.%s: must be ≥ 0, got %d", name, n)
		}
		parts := strings.Split(name, ".")
		if len(parts) > 2 {
			return nil, fmt.Errorf("min_rows.%s: want table or schema.table", name)
		}
		for _, part := range parts {
			if part == "" {
				return nil, fmt.Errorf("min_rows.%s: want table or schema.table", name)
			}
		}
		p.tables = append(p.tables, minRows{name: name, ident: pgx.Identifier(parts), min: n})
	}
	sort.Slice(p.tables, func(i, j int) bool { return p.tables[i].name < p.tables[j].name })
	return p, nil
}

// pgTarget names where cfg points: host:port/db (or socketdir/db).
func pgTarget(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(cfg.Port)))
	}
	return host + "/" + cfg.Database
}

// Check runs one round on a fresh connection, closed before it returns.
// Connection and query failures are Critical with their cause; the problems
// of one round (short tables, missing tables, a wrong revision) are all
// listed in Message, separated by "; ". Cancelling ctx ends the round
// Critical with "cancelled"; its deadline (or Timeout, whichever is
// sooner) ends it with "timed out".
func (p *PostgresCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: p.name, Type: "postgres", Status: OK, At: start, Observed: map[string]any{}}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	limit := p.timeout
	if dl, ok := ctx.Deadline(); ok {
		limit = dl.Sub(start)
	}

	conn, err := pgx.ConnectConfig(ctx, p.conn)
	if err != nil {
		res.Status, res.Value = Critical, "down"
		res.Message = p.scrub(fmt.Sprintf("connect %s: %s", p.target, pgmeta.Cause(err, limit)))
		return res
	}
	defer func() {
		// Terminate politely, but never wait long on a server gone silent.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		conn.Close(cctx)
	}()

	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		res.Status, res.Value = Critical, "down"
		res.Message = p.scrub(fmt.Sprintf("query %s: %s", p.target, pgmeta.Cause(err, limit)))
		return res
	}
	res.Latency = time.Since(start)
	res.Value = res.Latency.Round(time.Millisecond).String()
	res.Observed["latency_ms"] = float64(res.Latency.Microseconds()) / 1000
	version := conn.PgConn().ParameterStatus("server_version")
	res.Observed["server_version"] = version

	var problems []string
	fail := func(format string, args ...any) {
		res.Status = Critical
		problems = append(problems, p.scrub(fmt.Sprintf(format, args...)))
	}

	rows := make(map[string]int64, len(p.tables))
	for _, tb := range p.tables {
		var n int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tb.ident.Sanitize()).Scan(&n)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000"):
			fail("table %s does not exist", tb.name)
		case err != nil:
			fail("count %s: %s", tb.name, pgmeta.Cause(err, limit))
		default:
			rows[tb.name] = n
			if n < tb.min {
				fail("%s has %d rows (min %d)", tb.name, n, tb.min)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(p.tables) > 0 {
		res.Observed["rows"] = rows
	}

	mig, err := pgmeta.DetectMigration(ctx, conn)
	tool, rev := mig.Tool, mig.Revision
	switch {
	case err != nil:
		fail("migration revision: %s", pgmeta.Cause(err, limit))
	case tool == "none":
		res.Observed["migration_tool"] = tool
		if p.wantRev != "" {
			fail("no migration table (alembic_version or schema_migrations) (want %s)", p.wantRev)
		}
	default:
		res.Observed["migration_tool"] = tool
		res.Observed["migration_revision"] = rev
		if p.wantRev != "" && rev != p.wantRev {
			shown := rev
			if shown == "" {
				shown = "none"
			}
			fail("migration revision %s (want %s)", shown, p.wantRev)
		}
	}

	if len(problems) > 0 {
		res.Message = strings.Join(problems, "; ")
		return res
	}
	msg := []string{"PostgreSQL " + version}
	if len(p.tables) > 0 {
		msg = append(msg, fmt.Sprintf("%d tables at or above min rows", len(p.tables)))
	}
	if tool != "none" {
		msg = append(msg, fmt.Sprintf("%s revision %s", tool, rev))
	}
	res.Message = strings.Join(msg, ", ")
	return res
}

// scrubSecret removes secret (raw and URL-escaped) from s.
func scrubSecret(s, secret string) string { return pgmeta.Scrub(s, secret) }

// scrub removes the password (raw and URL-escaped) from s: a last guard
// should some server or driver text ever quote it.
func (p *PostgresCheck) scrub(s string) string {
	return scrubSecret(s, p.secret)
}
