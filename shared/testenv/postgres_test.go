package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPostgresTwoClustersFromTemplate starts two clusters at once and shows
// they are separate copies of one cached template, reachable with the
// password over TCP and isolated from each other.
func TestPostgresTwoClustersFromTemplate(t *testing.T) {
	a := Postgres(t)
	b := Postgres(t)
	if a.Port == b.Port || a.DataDir == b.DataDir {
		t.Fatalf("clusters share port or data dir: %d %s / %d %s", a.Port, a.DataDir, b.Port, b.DataDir)
	}

	version, err := pgVersion(a.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := pgTemplate(pgOptions{binDir: a.BinDir, password: a.Password}, version, a.asUser)
	if err != nil {
		t.Fatal(err)
	}
	if !isCluster(tmpl) || !strings.HasPrefix(filepath.Base(tmpl), "backstop-pgtemplate-") {
		t.Fatalf("template %s is not a cached cluster", tmpl)
	}
	// The template never ran: a started copy has postmaster.pid, the template none.
	if _, err := os.Stat(filepath.Join(tmpl, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("template %s has postmaster.pid (err %v): it was started", tmpl, err)
	}
	if _, err := os.Stat(filepath.Join(a.DataDir, "postmaster.pid")); err != nil {
		t.Fatalf("cluster a not running from its copy: %v", err)
	}

	a.CreateDB(t, "only_in_a")
	a.Exec(t, "only_in_a", "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, a.DSN("only_in_a"))
	if err != nil {
		t.Fatalf("connect a: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	var ver string
	if err := conn.QueryRow(ctx, "SELECT count(*), current_setting('server_version') FROM t").Scan(&n, &ver); err != nil {
		t.Fatal(err)
	}
	if n != 2 || !strings.HasPrefix(ver, "15") {
		t.Fatalf("cluster a: %d rows, version %q; want 2 rows on 15.x", n, ver)
	}

	_, err = pgx.Connect(ctx, b.DSN("only_in_a"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" {
		t.Fatalf("database of cluster a visible in cluster b: %v", err)
	}
}

func TestPostgresPasswordRequiredOverTCP(t *testing.T) {
	pg := Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := strings.Replace(pg.DSN("postgres"), ":"+pg.Password+"@", ":not-the-password@", 1)
	_, err := pgx.Connect(ctx, dsn)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}
}

func TestPostgresStopAndStart(t *testing.T) {
	pg := Postgres(t)
	pg.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, pg.DSN("postgres")); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped cluster")
	}
	pg.Stop(t) // idempotent
	pg.Start(t)
	pg.Exec(t, "postgres", "SELECT 1")
}
