package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/probe/internal/pgmeta"
)

// Info holds the facts about a database that a snapshot manifest records
// and a restore validates against.
type Info struct {
	Database      string           // the database's name
	ServerVersion string           // the server's version string, e.g. "15.18 (Debian 15.18-0+deb12u1)"
	ServerMajor   int              // e.g. 15 (9 for 9.6)
	Migration     pgmeta.Migration // alembic | rails | none, and the revision
	// Tables maps every user table (ordinary and partitioned, in all
	// schemas but pg_catalog, information_schema and pg_toast/pg_temp_*),
	// schema-qualified as "public.users", to its exact count(*).
	Tables map[string]int64
}

// inspectTimeout bounds Inspect when ctx has no deadline: exact counts of a
// big database take a while, a silent server must not hang a backup.
const inspectTimeout = 10 * time.Minute

// Inspect connects to dsn and reads Info. The counts and the migration
// revision come from one REPEATABLE READ, READ ONLY transaction, so they
// are consistent with each other (one snapshot of the database), though
// not with a pg_dump run at another moment. Tables are counted one query
// each, with quoted identifiers. Errors name the operation and host:port/db,
// never the password or DSN; they wrap ctx's error when ctx ended.
func Inspect(ctx context.Context, dsn string) (Info, error) {
	info, held, err := InspectHeld(ctx, dsn)
	if held != nil {
		held.Release()
	}
	return info, err
}

// Held is an open read-only transaction whose snapshot was exported:
// pg_dump --snapshot=ID sees exactly the data Inspect counted. Release
// ends it (after the dump).
type Held struct {
	ID      string
	release func()
}

// Release ends the transaction and closes its connection; safe on nil.
func (h *Held) Release() {
	if h != nil && h.release != nil {
		h.release()
		h.release = nil
	}
}

// InspectHeld is Inspect that keeps its transaction open and exports its
// snapshot, so a dump taken with that snapshot matches the counts exactly,
// however busy the database is. The caller must Release the Held.
func InspectHeld(ctx context.Context, dsn string) (info Info, held *Held, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the DSN: say what is wrong without any of it.
		return Info{}, nil, errors.New("inspect database: dsn: not a valid PostgreSQL connection string (value not shown)")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, inspectTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	limit := time.Until(dl)
	target := pgTarget(cfg.Host, cfg.Port, cfg.Database)
	fail := func(op string, err error) error {
		return &dbError{msg: pgmeta.Scrub(fmt.Sprintf("%s %s: %s", op, target, pgmeta.Cause(err, limit)), cfg.Password), err: err}
	}

	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Info{}, nil, fail("connect", err)
	}
	closeConn := func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		conn.Close(cctx)
	}
	defer func() {
		if held == nil {
			closeConn()
		}
	}()

	info = Info{Database: cfg.Database, ServerVersion: conn.PgConn().ParameterStatus("server_version"), Tables: map[string]int64{}}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Info{}, nil, fail("begin transaction on", err)
	}
	defer func() {
		if held == nil {
			tx.Rollback(context.Background())
		}
	}()
	// The first statement fixes the transaction's snapshot: export it, so
	// that pg_dump --snapshot sees what is counted below.
	var snapID string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapID); err != nil {
		return Info{}, nil, fail("export snapshot of", err)
	}

	var num int
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		return Info{}, nil, fail("server version of", err)
	}
	info.ServerMajor = num / 10000

	rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
		ORDER BY 1, 2`)
	if err != nil {
		return Info{}, nil, fail("list tables of", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var schema, name string
		err := r.Scan(&schema, &name)
		return pgx.Identifier{schema, name}, err
	})
	if err != nil {
		return Info{}, nil, fail("list tables of", err)
	}
	for _, id := range tables {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+id.Sanitize()).Scan(&n); err != nil {
			return Info{}, nil, fail("count "+strings.Join(id, ".")+" in", err)
		}
		info.Tables[strings.Join(id, ".")] = n
	}

	if info.Migration, err = pgmeta.DetectMigration(ctx, tx); err != nil {
		return Info{}, nil, fail("migration revision of", err)
	}
	return info, &Held{ID: snapID, release: func() {
		tx.Rollback(context.Background())
		closeConn()
	}}, nil
}

// pgTarget names where a connection goes: host:port/db (or socketdir/db).
func pgTarget(host string, port uint16, db string) string {
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	return host + "/" + db
}

// dbError is a database failure whose message is clean and password-free,
// while errors.Is/As still reach the driver's error (and ctx's).
type dbError struct {
	msg string
	err error
}

func (e *dbError) Error() string { return e.msg }
func (e *dbError) Unwrap() error { return e.err }
