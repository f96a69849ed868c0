package testenv

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestPgDumpImage proves the image's pg_dump and psql run in a scratch
// container, and that a host-network container reaches a test Postgres on
// 127.0.0.1.
func TestPgDumpImage(t *testing.T) {
	d := Docker(t)
	pg := Postgres(t)
	ref := d.PgDumpImage(t)
	if again := d.PgDumpImage(t); again != ref {
		t.Errorf("second PgDumpImage = %s, want the cached %s", again, ref)
	}
	c := d.Run(t, RunOpts{Image: ref, NamePrefix: "backstop-pgdump-", NetworkMode: "host"})
	c.WaitFor(t, "running", 0, func(in container.InspectResponse) bool { return in.State != nil && in.State.Running })

	tests := []struct {
		name string
		cmd  []string
		env  []string
		want string
	}{
		{name: "pg_dump runs", cmd: []string{"pg_dump", "--version"}, want: "pg_dump (PostgreSQL) 15."},
		{name: "pg_restore runs", cmd: []string{"pg_restore", "--version"}, want: "pg_restore (PostgreSQL) 15."},
		{
			name: "psql reaches the host's Postgres over 127.0.0.1",
			cmd:  []string{"psql", "-Atc", "SELECT 'answer ' || 6*7"},
			env:  []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(pg.Port), "PGUSER=postgres", "PGPASSWORD=" + pg.Password, "PGDATABASE=postgres"},
			want: "answer 42",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := execIn(t, d, c.ID, tc.cmd, tc.env)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("%v: exit %d, output %q; want exit 0 and %q", tc.cmd, code, out, tc.want)
			}
		})
	}
}

func execIn(t *testing.T, d *DockerEnv, id string, cmd, env []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ex, err := d.Client.ExecCreate(ctx, id, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd, Env: env})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	att, err := d.Client.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach: %v", err)
	}
	defer att.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil && err != io.EOF {
		t.Fatalf("exec output: %v", err)
	}
	for {
		in, err := d.Client.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			t.Fatalf("exec inspect: %v", err)
		}
		if !in.Running {
			return out.String(), in.ExitCode
		}
		time.Sleep(20 * time.Millisecond)
	}
}
