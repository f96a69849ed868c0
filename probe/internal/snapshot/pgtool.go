package snapshot

// FindPgTool finds a PostgreSQL client program (pg_restore, psql, ...) in
// PATH or, else, the newest /usr/lib/postgresql/<major>/bin. It returns ""
// when there is none.
func FindPgTool(name string) string { return findPgTool(name) }

// PgEnv turns a DSN into the libpq environment a PostgreSQL client program
// connects with (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGAPPNAME
// and the DSN's SSL, timeout and options settings), so the password never
// appears on a command line. It also returns the DSN's database and its
// password (for scrubbing output). Its error never quotes the DSN.
func PgEnv(dsn string) (env []string, db, secret string, err error) { return pgEnv(dsn) }
