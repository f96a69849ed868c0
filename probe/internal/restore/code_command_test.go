package restore

import (
	"path/filepath"
	"strings"
	"testing"

	"backstop/shared/manifest"
)

func TestCommandCode(t *testing.T) {
	m := manifest.Manifest{ID: "S1", App: manifest.App{Revision: "9f2c1e7", Image: "registry.example/psyfit-web:9f2c1e7"}}
	cases := []struct {
		name       string
		hook       string // %s = the marker file
		wantErr    string // "" = Apply succeeds
		wantMarker string // after Apply (and Revert when Apply succeeded)
	}{
		{
			name:       "apply then revert",
			hook:       `echo "$ACTION $TXN $SNAPSHOT $REVISION $IMAGE" >> %s`,
			wantMarker: "apply t1 S1 9f2c1e7 registry.example/psyfit-web:9f2c1e7\nrevert t1 S1 9f2c1e7 registry.example/psyfit-web:9f2c1e7\n",
		},
		{
			name:       "failed hook is reverted",
			hook:       `echo "$ACTION" >> %s; [ "$ACTION" = revert ] || { echo "kamal rollback: no such version" >&2; exit 1; }`,
			wantErr:    "exit status 1: kamal rollback: no such version (undone: the hook ran with ACTION=revert)",
			wantMarker: "apply\nrevert\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			marker := filepath.Join(t.TempDir(), "calls")
			hook := strings.ReplaceAll(c.hook, "%s", marker)
			code := NewCommandCode(hook, state)
			if plan, err := code.Plan(t.Context(), m); err != nil || plan != "run `"+hook+"` with ACTION=apply REVISION=9f2c1e7" {
				t.Fatalf("Plan = %q, %v", plan, err)
			}
			err := code.Apply(t.Context(), m, "t1")
			if c.wantErr == "" && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.HasSuffix(err.Error(), c.wantErr)) {
				t.Fatalf("Apply error = %v, want ...%q", err, c.wantErr)
			}
			// Revert from another process, twice: the hook runs at most once more.
			for i := 0; i < 2; i++ {
				if err := NewCommandCode(hook, state).Revert(t.Context(), "t1"); err != nil {
					t.Fatalf("Revert: %v", err)
				}
			}
			if got := readMarker(t, marker); got != c.wantMarker {
				t.Errorf("hook calls = %q, want %q", got, c.wantMarker)
			}
		})
	}
}

func TestCommandCodeRefusals(t *testing.T) {
	cases := []struct {
		name, hook string
		app        manifest.App
		want       string
	}{
		{"no command", "", manifest.App{Revision: "abc"}, "rollback.code.command is empty"},
		{"no revision", "true", manifest.App{}, "snapshot S1 records no app revision or image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code := NewCommandCode(c.hook, t.TempDir())
			m := manifest.Manifest{ID: "S1", App: c.app}
			if _, err := code.Plan(t.Context(), m); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Plan error = %v, want %q", err, c.want)
			}
			if err := code.Apply(t.Context(), m, "t1"); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Apply error = %v, want %q", err, c.want)
			}
		})
	}
	// A txn this host never applied: nothing to undo.
	if err := NewCommandCode("false", t.TempDir()).Revert(t.Context(), "unknown"); err != nil {
		t.Errorf("Revert of an unknown txn = %v, want nil", err)
	}
	if err := NewCommandCode("false", t.TempDir()).Revert(t.Context(), "../x"); err == nil || !strings.Contains(err.Error(), `bad transaction id "../x"`) {
		t.Errorf("Revert(../x) = %v, want a bad transaction id", err)
	}
}

func TestNoCode(t *testing.T) {
	c := NoCode()
	if !isNoCode(c) || isNoCode(NewCommandCode("true", t.TempDir())) {
		t.Fatal("isNoCode does not tell the none strategy apart")
	}
	m := manifest.Manifest{ID: "S1", App: manifest.App{Revision: "abc"}}
	if plan, err := c.Plan(t.Context(), m); err != nil || plan != "code left as it is (strategy none)" {
		t.Errorf("Plan = %q, %v", plan, err)
	}
	if err := c.Apply(t.Context(), m, "t1"); err != nil {
		t.Errorf("Apply = %v", err)
	}
	if err := c.Revert(t.Context(), "t1"); err != nil {
		t.Errorf("Revert = %v", err)
	}
}
