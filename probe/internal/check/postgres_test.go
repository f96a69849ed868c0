package check

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

// appPassword is recognizable so a leak into any Result field shows.
const appPassword = "app-pw-Leak7781"

// assertSecretAbsent fails when secret appears in any field of r, as JSON
// or as fmt prints it.
func assertSecretAbsent(t *testing.T, r Result, secret string) {
	t.Helper()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(js), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r)} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret %q leaked into result: %s", secret, s)
		}
	}
}

// hangingServer accepts connections on 127.0.0.1 and never says a word,
// like a server that hangs.
func hangingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return l.Addr().String()
}

func appDSN(pg *testenv.PG, user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, pg.Port, db)
}

func runConfigured(t *testing.T, c config.Check) Result {
	t.Helper()
	ch, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ch.Check(ctx)
}

func TestPostgresCheck(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.Exec(t, "postgres", `CREATE ROLE app LOGIN PASSWORD '`+appPassword+`'`)
	for _, db := range []string{"app", "alembic", "rails"} {
		pg.Exec(t, "postgres", "CREATE DATABASE "+db+" OWNER app")
	}
	pg.Exec(t, "app", `SET ROLE app;
		CREATE TABLE users (id int); INSERT INTO users VALUES (1), (2), (3);
		CREATE TABLE "Orders" (id int); INSERT INTO "Orders" VALUES (1);
		CREATE TABLE sessions (id int);
		CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int); INSERT INTO billing.invoices VALUES (1), (2);`)
	pg.Exec(t, "alembic", `SET ROLE app;
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('0043');`)
	pg.Exec(t, "rails", `SET ROLE app;
		CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
		INSERT INTO schema_migrations VALUES ('9'), ('20240101000000'), ('20240315120000');`)

	target := fmt.Sprintf("127.0.0.1:%d", pg.Port)
	cases := []struct {
		name     string
		dsn      string
		minRows  map[string]int64
		wantRev  string
		status   Status
		message  string // exact; or prefix when it ends in "..."
		observed map[string]any
	}{
		{
			name:    "up with min rows",
			dsn:     appDSN(pg, "app", appPassword, "app"),
			minRows: map[string]int64{"users": 1, "billing.invoices": 2, "Orders": 1},
			status:  OK,
			message: "PostgreSQL 15...",
			observed: map[string]any{
				"rows":           map[string]int64{"users": 3, "billing.invoices": 2, "Orders": 1},
				"migration_tool": "none",
			},
		},
		{
			name:    "table below min rows",
			dsn:     appDSN(pg, "app", appPassword, "app"),
			minRows: map[string]int64{"users": 5, "sessions": 1},
			status:  Critical,
			message: "sessions has 0 rows (min 1); users has 3 rows (min 5)",
		},
		{
			name:    "missing table and schema",
			dsn:     appDSN(pg, "app", appPassword, "app"),
			minRows: map[string]int64{"accounts": 1, "nosuch.users": 1, "users": 1},
			status:  Critical,
			message: "table accounts does not exist; table nosuch.users does not exist",
		},
		{
			name:     "alembic revision matches",
			dsn:      appDSN(pg, "app", appPassword, "alembic"),
			wantRev:  "0043",
			status:   OK,
			message:  "PostgreSQL 15...",
			observed: map[string]any{"migration_tool": "alembic", "migration_revision": "0043"},
		},
		{
			name:    "alembic revision differs",
			dsn:     appDSN(pg, "app", appPassword, "alembic"),
			wantRev: "0044",
			status:  Critical,
			message: "migration revision 0043 (want 0044)",
		},
		{
			name:     "rails revision matches",
			dsn:      appDSN(pg, "app", appPassword, "rails"),
			wantRev:  "20240315120000",
			status:   OK,
			message:  "PostgreSQL 15...",
			observed: map[string]any{"migration_tool": "rails", "migration_revision": "20240315120000"},
		},
		{
			name:    "rails revision differs",
			dsn:     appDSN(pg, "app", appPassword, "rails"),
			wantRev: "20240401000000",
			status:  Critical,
			message: "migration revision 20240315120000 (want 20240401000000)",
		},
		{
			name:    "no migration table but a revision expected",
			dsn:     appDSN(pg, "app", appPassword, "app"),
			wantRev: "0043",
			status:  Critical,
			message: "no migration table (alembic_version or schema_migrations) (want 0043)",
		},
		{
			name:    "wrong password",
			dsn:     appDSN(pg, "app", "wrong-"+appPassword, "app"),
			status:  Critical,
			message: `connect ` + target + `/app: password authentication failed for user "app"`,
		},
		{
			name:    "wrong password, sslmode left to its default (prefer)",
			dsn:     strings.TrimSuffix(appDSN(pg, "app", "wrong-"+appPassword, "app"), "?sslmode=disable"),
			status:  Critical,
			message: `connect ` + target + `/app: password authentication failed for user "app"`,
		},
		{
			name:    "unknown database",
			dsn:     appDSN(pg, "app", appPassword, "nope"),
			status:  Critical,
			message: `connect ` + target + `/nope: database "nope" does not exist`,
		},
		{
			name:    "key=value DSN",
			dsn:     fmt.Sprintf("host=127.0.0.1 port=%d dbname=app user=app password=%s sslmode=disable", pg.Port, appPassword),
			minRows: map[string]int64{"users": 1},
			status:  OK,
			message: "PostgreSQL 15...",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runConfigured(t, config.Check{
				Name: "db", Type: "postgres", DSN: config.Secret(tc.dsn),
				MinRows: tc.minRows, MigrationRevision: tc.wantRev,
			})
			assertSecretAbsent(t, r, appPassword)
			if r.Status != tc.status {
				t.Fatalf("status %v, want %v (message %q)", r.Status, tc.status, r.Message)
			}
			if p, ok := strings.CutSuffix(tc.message, "..."); ok {
				if !strings.HasPrefix(r.Message, p) {
					t.Fatalf("message %q, want prefix %q", r.Message, p)
				}
			} else if r.Message != tc.message {
				t.Fatalf("message %q, want %q", r.Message, tc.message)
			}
			if r.Name != "db" || r.Type != "postgres" {
				t.Fatalf("name/type %q/%q", r.Name, r.Type)
			}
			for k, want := range tc.observed {
				if got := fmt.Sprint(r.Observed[k]); got != fmt.Sprint(want) {
					t.Errorf("observed[%s] = %s, want %s", k, got, fmt.Sprint(want))
				}
			}
			if r.Status == OK {
				if v, _ := r.Observed["server_version"].(string); !strings.HasPrefix(v, "15") {
					t.Errorf("server_version %q, want 15.x", v)
				}
				if _, ok := r.Observed["latency_ms"].(float64); !ok || r.Latency <= 0 {
					t.Errorf("latency not observed: %v %v", r.Observed["latency_ms"], r.Latency)
				}
			}
		})
	}
}

// TestPostgresCheckUnreachable covers a database that is down (a stopped
// cluster) and one that hangs (a listener that never answers).
func TestPostgresCheckUnreachable(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.Stop(t)
	silent := hangingServer(t)
	cases := []struct {
		name    string
		dsn     string
		timeout time.Duration
		message string
	}{
		{
			name:    "database down",
			dsn:     appDSN(pg, "app", appPassword, "app"),
			message: fmt.Sprintf("connect 127.0.0.1:%d/app: connection refused", pg.Port),
		},
		{
			name:    "database down, sslmode left to its default (prefer)",
			dsn:     strings.TrimSuffix(appDSN(pg, "app", appPassword, "app"), "?sslmode=disable"),
			message: fmt.Sprintf("connect 127.0.0.1:%d/app: connection refused", pg.Port),
		},
		{
			name:    "server hangs",
			dsn:     fmt.Sprintf("postgres://app:%s@%s/app?sslmode=disable", appPassword, silent),
			timeout: 300 * time.Millisecond,
			message: "connect " + silent + "/app: timed out after 300ms",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runConfigured(t, config.Check{
				Name: "db", Type: "postgres", DSN: config.Secret(tc.dsn), Timeout: config.Duration(tc.timeout),
			})
			assertSecretAbsent(t, r, appPassword)
			if r.Status != Critical || r.Message != tc.message {
				t.Fatalf("got %v %q, want critical %q", r.Status, r.Message, tc.message)
			}
		})
	}
}

func TestPostgresCheckConfigErrors(t *testing.T) {
	cases := []struct {
		name    string
		dsn     string
		minRows map[string]int64
		want    string
	}{
		{"empty dsn", "", nil, "dsn: required"},
		{"unparseable url", "postgres://app:" + appPassword + "@db.example:notaport/app", nil, "dsn: not a valid PostgreSQL connection string"},
		{"unparseable key=value", "host=db password=" + appPassword + " port=notaport", nil, "dsn: not a valid PostgreSQL connection string"},
		{"negative min", "postgres://app@127.0.0.1/app", map[string]int64{"users": -1}, "min_rows.users: must be ≥ 0"},
		{"too many dots", "postgres://app@127.0.0.1/app", map[string]int64{"a.b.c": 1}, "min_rows.a.b.c: want table or schema.table"},
		{"empty part", "postgres://app@127.0.0.1/app", map[string]int64{"public.": 1}, "min_rows.public.: want table or schema.table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(config.Check{Name: "db", Type: "postgres", DSN: config.Secret(tc.dsn), MinRows: tc.minRows})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), appPassword) || (tc.dsn != "" && strings.Contains(err.Error(), tc.dsn)) ||
				strings.Contains(err.Error(), "db.example") {
				t.Fatalf("error echoes the DSN: %q", err)
			}
		})
	}
}
