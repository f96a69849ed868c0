package restore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// gitRepo makes a repository with two commits of app.txt ("v1", "v2") on
// branch main and returns its dir and the two commits.
func gitRepo(t *testing.T) (dir, c1, c2 string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Need(t, "git", err, "apt-get install -y git")
	}
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	for _, v := range []string{"v1", "v2"} {
		if err := os.WriteFile(filepath.Join(dir, "app.txt"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "app.txt")
		git("commit", "-q", "-m", v)
	}
	return dir, git("rev-parse", "HEAD~1"), git("rev-parse", "HEAD")
}

func headOf(t *testing.T, dir string) (commit, branch, content string) {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := exec.Command("git", "-C", dir, "symbolic-ref", "-q", "--short", "HEAD").Output()
	data, err := os.ReadFile(filepath.Join(dir, "app.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), strings.TrimSpace(string(b)), string(data)
}

func readMarker(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestGitCode(t *testing.T) {
	dir, c1, c2 := gitRepo(t)
	state := t.TempDir()
	marker := filepath.Join(t.TempDir(), "restarts")
	restart := `echo "$ACTION $TXN $SNAPSHOT $REVISION $(cat app.txt)" >> ` + marker
	m := manifest.Manifest{ID: "S1", App: manifest.App{Revision: c1[:7]}}
	g := NewGitCode(dir, restart, state)

	plan, err := g.Plan(t.Context(), m)
	if want := "git checkout " + c1[:12] + " in " + dir + " (now at " + c2[:12] + "), then run `" + restart + "`"; err != nil || plan != want {
		t.Fatalf("Plan = %q, %v; want %q", plan, err, want)
	}
	if err := g.Apply(t.Context(), m, "t1"); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if commit, _, content := headOf(t, dir); commit != c1 || content != "v1" {
		t.Errorf("after Apply: HEAD %s with app.txt %q, want %s with v1", commit, content, c1)
	}
	if got, want := readMarker(t, marker), "apply t1 S1 "+c1+" v1\n"; got != want {
		t.Errorf("restart after Apply ran as %q, want %q", got, want)
	}
	if plan, err := g.Plan(t.Context(), m); err != nil || !strings.HasSuffix(plan, "already at "+c1[:12]+": code unchanged") {
		t.Errorf("Plan at the revision = %q, %v; want already at", plan, err)
	}

	// probe revert TXN in another process: only the state file is known.
	for i := 0; i < 2; i++ {
		if err := NewGitCode(dir, restart, state).Revert(t.Context(), "t1"); err != nil {
			t.Fatalf("Revert #%d: %v", i+1, err)
		}
	}
	if commit, branch, content := headOf(t, dir); commit != c2 || branch != "main" || content != "v2" {
		t.Errorf("after Revert: HEAD %s on %q with %q, want %s on main with v2", commit, branch, content, c2)
	}
	if got, want := readMarker(t, marker), "apply t1 S1 "+c1+" v1\nrevert t1 S1 "+c2+" v2\n"; got != want {
		t.Errorf("restarts after Revert twice = %q, want %q (once each)", got, want)
	}
}

func TestGitCodeRefusals(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		rev     string // "" = the first commit
		restart string
		want    string
	}{
		{name: "dirty tree", prepare: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "app.txt"), []byte("hand edit"), 0o644)
		}, want: "has uncommitted changes (M app.txt): commit or stash them before rolling the code back"},
		{name: "untracked file", prepare: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "new.txt"), []byte("x"), 0o644)
		}, want: "has uncommitted changes (?? new.txt)"},
		{name: "unknown revision", rev: "deadbeef", want: "has no commit deadbeef (fetch it first)"},
		{name: "option as revision", rev: "--orphan", want: `app revision "--orphan" is not a git revision`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, c1, c2 := gitRepo(t)
			if c.prepare != nil {
				c.prepare(t, dir)
			}
			rev := c.rev
			if rev == "" {
				rev = c1
			}
			m := manifest.Manifest{ID: "S1", App: manifest.App{Revision: rev}}
			g := NewGitCode(dir, "true", t.TempDir())
			if _, err := g.Plan(t.Context(), m); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Plan error = %v, want %q", err, c.want)
			}
			if err := g.Apply(t.Context(), m, "t1"); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply error = %v, want %q", err, c.want)
			}
			if commit, branch, _ := headOf(t, dir); commit != c2 || branch != "main" {
				t.Errorf("HEAD %s on %q after the refusal, want %s on main untouched", commit, branch, c2)
			}
		})
	}
}

func TestGitCodeRestartFails(t *testing.T) {
	dir, c1, c2 := gitRepo(t)
	marker := filepath.Join(t.TempDir(), "restarts")
	restart := `echo "$ACTION $(cat app.txt)" >> ` + marker + `; if [ "$ACTION" = apply ]; then echo "puma: port in use" >&2; exit 3; fi`
	g := NewGitCode(dir, restart, t.TempDir())
	err := g.Apply(t.Context(), manifest.Manifest{ID: "S1", App: manifest.App{Revision: c1}}, "t1")
	want := "restart command `" + restart + "`: exit status 3: puma: port in use (undone: " + c2[:12] + " checked out again and restarted)"
	if err == nil || err.Error() != want {
		t.Fatalf("Apply error = %v\nwant %s", err, want)
	}
	if commit, branch, _ := headOf(t, dir); commit != c2 || branch != "main" {
		t.Errorf("HEAD %s on %q, want %s on main again", commit, branch, c2)
	}
	if got := readMarker(t, marker); got != "apply v1\nrevert v2\n" {
		t.Errorf("restarts = %q, want the apply then the revert one", got)
	}
	if err := g.Revert(t.Context(), "t1"); err != nil || readMarker(t, marker) != "apply v1\nrevert v2\n" {
		t.Errorf("Revert after the self-undone Apply = %v and restarted again; want a no-op", err)
	}
}
