package snapshot

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/pgmeta"
	"backstop/shared/testenv"
)

// appPassword is recognisable, so a leak into any error shows.
const appPassword = "snap-pw-Leak4471"

func appDSN(pg *testenv.PG, password, db string) string {
	return fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/%s?sslmode=disable", password, pg.Port, db)
}

// appCluster starts a cluster with a login role app (password appPassword)
// owning each of dbs.
func appCluster(t *testing.T, dbs ...string) *testenv.PG {
	t.Helper()
	pg := testenv.Postgres(t)
	pg.Exec(t, "postgres", `CREATE ROLE app LOGIN PASSWORD '`+appPassword+`'`)
	for _, db := range dbs {
		pg.Exec(t, "postgres", "CREATE DATABASE "+db+" OWNER app")
	}
	return pg
}

func TestInspect(t *testing.T) {
	pg := appCluster(t, "plain", "alembic", "rails", "railsempty")
	pg.Exec(t, "plain", `SET ROLE app;
		CREATE TABLE users (id int); INSERT INTO users SELECT generate_series(1, 1234);
		CREATE TABLE "Orders" (id int); INSERT INTO "Orders" VALUES (1), (2);
		CREATE TABLE sessions (id int);
		CREATE SCHEMA billing; CREATE TABLE billing."in voice" (id int); INSERT INTO billing."in voice" VALUES (7);
		CREATE TABLE events (at date) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		INSERT INTO events VALUES ('2024-03-01'), ('2024-04-01'), ('2024-05-01');
		CREATE VIEW user_ids AS SELECT id FROM users;
		CREATE TEMP TABLE scratch (id int);`)
	pg.Exec(t, "alembic", `SET ROLE app;
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('0042_add_visits');
		CREATE TABLE schema_migrations (version varchar PRIMARY KEY); INSERT INTO schema_migrations VALUES ('1');`)
	pg.Exec(t, "rails", `SET ROLE app;
		CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
		INSERT INTO schema_migrations VALUES ('9'), ('20240101000000'), ('20240315120000');
		CREATE TABLE ar_internal_metadata (key varchar PRIMARY KEY, value varchar);`)
	pg.Exec(t, "railsempty", `SET ROLE app; CREATE TABLE schema_migrations (version varchar PRIMARY KEY);`)

	tests := []struct {
		name      string
		db        string
		tables    map[string]int64
		migration pgmeta.Migration
	}{
		{
			name: "tables in all schemas with exact counts, no migration table",
			db:   "plain",
			tables: map[string]int64{
				"public.users": 1234, "public.Orders": 2, "public.sessions": 0,
				"billing.in voice": 1, "public.events": 3, "public.events_2024": 3,
			},
			migration: pgmeta.Migration{Tool: "none"},
		},
		{
			name:      "alembic wins over schema_migrations",
			db:        "alembic",
			tables:    map[string]int64{"public.alembic_version": 1, "public.schema_migrations": 1},
			migration: pgmeta.Migration{Tool: "alembic", Revision: "0042_add_visits"},
		},
		{
			name:      "rails: newest version as a number",
			db:        "rails",
			tables:    map[string]int64{"public.schema_migrations": 3, "public.ar_internal_metadata": 0},
			migration: pgmeta.Migration{Tool: "rails", Revision: "20240315120000"},
		},
		{
			name:      "rails without any migration run yet",
			db:        "railsempty",
			tables:    map[string]int64{"public.schema_migrations": 0},
			migration: pgmeta.Migration{Tool: "rails"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := Inspect(ctx, appDSN(pg, appPassword, tc.db))
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if info.Database != tc.db {
				t.Errorf("Database = %q, want %q", info.Database, tc.db)
			}
			if info.ServerMajor != 15 || !strings.HasPrefix(info.ServerVersion, "15.") {
				t.Errorf("server = %q major %d, want 15.x major 15", info.ServerVersion, info.ServerMajor)
			}
			if !reflect.DeepEqual(info.Tables, tc.tables) {
				t.Errorf("Tables = %v\nwant     %v", info.Tables, tc.tables)
			}
			if info.Migration != tc.migration {
				t.Errorf("Migration = %+v, want %+v", info.Migration, tc.migration)
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	pg := appCluster(t, "app")
	pg.Exec(t, "app", `CREATE TABLE secret_stuff (id int); REVOKE ALL ON secret_stuff FROM PUBLIC;`) // owned by postgres
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		dsn  string
		want string
		is   error
	}{
		{
			name: "missing database",
			dsn:  appDSN(pg, appPassword, "nope"),
			want: fmt.Sprintf(`connect 127.0.0.1:%d/nope: database "nope" does not exist`, pg.Port),
		},
		{
			name: "wrong password",
			dsn:  appDSN(pg, "wrong-"+appPassword, "app"),
			want: fmt.Sprintf(`connect 127.0.0.1:%d/app: password authentication failed for user "app"`, pg.Port),
		},
		{
			name: "table the role may not read",
			dsn:  appDSN(pg, appPassword, "app"),
			want: fmt.Sprintf(`count public.secret_stuff in 127.0.0.1:%d/app: permission denied for table secret_stuff`, pg.Port),
		},
		{
			name: "not a DSN",
			dsn:  "postgres://app:" + appPassword + "@127.0.0.1:notaport/app",
			want: "inspect database: dsn: not a valid PostgreSQL connection string (value not shown)",
		},
		{
			name: "cancelled",
			ctx:  cancelled,
			dsn:  appDSN(pg, appPassword, "app"),
			want: fmt.Sprintf("connect 127.0.0.1:%d/app: cancelled", pg.Port),
			is:   context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
			}
			_, err := Inspect(ctx, tc.dsn)
			if err == nil {
				t.Fatal("Inspect succeeded, want an error")
			}
			if err.Error() != tc.want {
				t.Errorf("error = %q\nwant    %q", err, tc.want)
			}
			if strings.Contains(err.Error(), appPassword) {
				t.Errorf("error leaks the password: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(err, %v) = false for %v", tc.is, err)
			}
		})
	}
}
