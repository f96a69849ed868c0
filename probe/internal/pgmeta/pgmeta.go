package pgmeta

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs queries: *pgx.Conn and pgx.Tx satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Migration tools DetectMigration recognises.
const (
	ToolAlembic = "alembic"
	ToolRails   = "rails"
	ToolNone    = "none"
)

// Migration names the schema migration tool of a database and the revision
// it is at. Revision is empty for ToolNone and for a Rails database whose
// schema_migrations table is empty.
type Migration struct {
	Tool     string `json:"tool"`
	Revision string `json:"revision"`
}

// DetectMigration finds the schema migration tool and its revision:
// alembic's alembic_version (all heads, sorted, comma-joined) or Rails'
// schema_migrations (the newest version, compared as a number). Alembic wins
// when both tables exist; Tool is ToolNone when neither does. The tables are
// looked up through the session's search_path.
func DetectMigration(ctx context.Context, q Querier) (Migration, error) {
	var alembic, rails bool
	err := q.QueryRow(ctx, `SELECT to_regclass('alembic_version') IS NOT NULL,
		to_regclass('schema_migrations') IS NOT NULL`).Scan(&alembic, &rails)
	if err != nil {
		return Migration{}, err
	}
	switch {
	case alembic:
		rows, err := q.Query(ctx, "SELECT version_num::text FROM alembic_version ORDER BY 1")
		if err != nil {
			return Migration{}, err
		}
		heads, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return Migration{}, err
		}
		return Migration{Tool: ToolAlembic, Revision: strings.Join(heads, ",")}, nil
	case rails:
		var v *string
		err := q.QueryRow(ctx, `SELECT version::text FROM schema_migrations
			ORDER BY length(version::text) DESC, version::text DESC LIMIT 1`).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && v == nil) {
			return Migration{Tool: ToolRails}, nil
		}
		if err != nil {
			return Migration{}, err
		}
		return Migration{Tool: ToolRails, Revision: *v}, nil
	}
	return Migration{Tool: ToolNone}, nil
}

// Cause turns a pgx/pgconn error into one clean line: the server's message
// (`password authentication failed for user "app"`), or the network cause
// (connection refused, timed out after limit), without pgx's wrapping,
// which repeats user, database and address.
func Cause(err error, limit time.Duration) string {
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var errno syscall.Errno
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Message
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), pgconn.Timeout(err):
		return "timed out after " + limit.Round(time.Millisecond).String()
	case errors.As(err, &dnsErr):
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	case errors.As(err, &errno):
		return errno.Error()
	}
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			return err.Error()
		}
		err = inner
	}
}

// Scrub replaces secret (raw and URL-escaped) in s with [redacted]: a last
// guard should some server, driver or program text ever quote it.
func Scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "[redacted]")
	if esc := url.QueryEscape(secret); esc != secret {
		s = strings.ReplaceAll(s, esc, "[redacted]")
	}
	if esc := url.PathEscape(secret); esc != secret {
		s = strings.ReplaceAll(s, esc, "[redacted]")
	}
	return s
}
