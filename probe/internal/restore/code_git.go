package restore

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"backstop/shared/manifest"
)

// GitCode is the git strategy: `git checkout --detach <revision>` in the
// app's work tree, then the restart command (by `sh -c`, in that
// directory, with TXN, SNAPSHOT, REVISION and ACTION=apply|revert in its
// environment). Revert checks out what was checked out before (the branch,
// when HEAD was on one that still points at the same commit) and restarts.
type GitCode struct {
	// Env names the probe's secret-looking variables the restart command keeps (rollback.env).
	Env      []string
	dir      string
	restart  string
	stateDir string

	mu  sync.Mutex
	mem map[string]*gitState
}

var _ Code = (*GitCode)(nil)

// NewGitCode returns the git strategy for the work tree dir, running
// restart ("" = none) after each checkout; what Revert needs is kept in
// stateDir/code-<txn>.json.
func NewGitCode(dir, restart string, stateDir string) *GitCode {
	return &GitCode{dir: dir, restart: restart, stateDir: stateDir, mem: map[string]*gitState{}}
}

// gitState is written before the checkout.
type gitState struct {
	Strategy string `json:"strategy"` // "git"
	Txn      string `json:"txn"`
	Snapshot string `json:"snapshot"`
	Revision string `json:"revision"` // checked out by Apply
	Previous string `json:"previous"` // commit HEAD was at
	Branch   string `json:"branch,omitempty"`
	Reverted bool   `json:"reverted"`
}

// git runs git -C dir args and returns its trimmed stdout.
func (g *GitCode) git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", g.dir}, args...)...)
	var stderr tailBuf
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := stderr.lastLines(2)
		if msg != "" {
			msg = ": " + msg
		}
		return "", fmt.Errorf("git -C %s %s: %w%s", g.dir, strings.Join(args, " "), err, msg)
	}
	return strings.TrimSpace(string(out)), nil
}

// check returns HEAD's commit and the commit of m's revision, refusing a
// dirty work tree and an unknown revision.
func (g *GitCode) check(ctx context.Context, m manifest.Manifest) (head, want string, err error) {
	if m.App.Revision == "" {
		return "", "", fmt.Errorf("snapshot %s records no app revision: nothing to check out", m.ID)
	}
	if strings.HasPrefix(m.App.Revision, "-") {
		return "", "", fmt.Errorf("snapshot %s: app revision %q is not a git revision", m.ID, m.App.Revision)
	}
	status, err := g.git(ctx, "status", "--porcelain")
	if err != nil {
		return "", "", err
	}
	if status != "" {
		var lines []string
		for _, l := range strings.Split(status, "\n") {
			lines = append(lines, strings.TrimSpace(l))
		}
		if len(lines) > 3 {
			lines = append(lines[:3], fmt.Sprintf("and %d more", len(lines)-3))
		}
		return "", "", fmt.Errorf("app work tree %s has uncommitted changes (%s): commit or stash them before rolling the code back", g.dir, strings.Join(lines, "; "))
	}
	if head, err = g.git(ctx, "rev-parse", "HEAD"); err != nil {
		return "", "", err
	}
	if want, err = g.git(ctx, "rev-parse", "--verify", "--quiet", m.App.Revision+"^{commit}"); err != nil {
		return "", "", fmt.Errorf("app work tree %s has no commit %s (fetch it first)", g.dir, m.App.Revision)
	}
	return head, want, nil
}

// Plan says which commit would be checked out and what restarts; it fails
// on a dirty work tree or a revision the repository does not have.
func (g *GitCode) Plan(ctx context.Context, m manifest.Manifest) (string, error) {
	head, want, err := g.check(ctx, m)
	if err != nil {
		return "", err
	}
	if head == want {
		return fmt.Sprintf("%s is already at %s: code unchanged", g.dir, shortRev(want)), nil
	}
	s := fmt.Sprintf("git checkout %s in %s (now at %s)", shortRev(want), g.dir, shortRev(head))
	if g.restart != "" {
		s += fmt.Sprintf(", then run `%s`", g.restart)
	}
	return s, nil
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Apply checks out the snapshot's revision and runs the restart command.
// When either fails, the previous checkout is restored (and restarted, if
// the restart had been tried) before it returns.
func (g *GitCode) Apply(ctx context.Context, m manifest.Manifest, txn string) error {
	head, want, err := g.check(ctx, m)
	if err != nil {
		return err
	}
	if head == want {
		return nil
	}
	branch, _ := g.git(ctx, "symbolic-ref", "--quiet", "--short", "HEAD")
	st := &gitState{Strategy: "git", Txn: txn, Snapshot: m.ID, Revision: want, Previous: head, Branch: branch}
	if err := g.save(st); err != nil {
		return err
	}
	if _, err := g.git(ctx, "checkout", "--quiet", "--detach", want); err != nil {
		if uerr := g.undo(ctx, st, false); uerr != nil {
			return fmt.Errorf("%w; undoing it failed too: %w", err, uerr)
		}
		return err
	}
	if err := g.runRestart(ctx, st, "apply", want); err != nil {
		if uerr := g.undo(ctx, st, true); uerr != nil {
			return fmt.Errorf("%w; undoing it failed too: %w", err, uerr)
		}
		return fmt.Errorf("%w (undone: %s checked out again and restarted)", err, shortRev(head))
	}
	return nil
}

// Revert checks out what HEAD was before Apply of txn and runs the restart
// command; once that succeeded, later calls do nothing.
func (g *GitCode) Revert(ctx context.Context, txn string) error {
	g.mu.Lock()
	st := g.mem[txn]
	g.mu.Unlock()
	if st == nil {
		st = &gitState{}
		found, err := loadCodeState(g.stateDir, txn, st)
		if err != nil || !found {
			return err
		}
		if st.Strategy != "git" {
			return fmt.Errorf("code state of %s was written by the %s strategy, not git", txn, st.Strategy)
		}
	}
	if st.Reverted {
		return nil
	}
	return g.undo(ctx, st, true)
}

func (g *GitCode) undo(ctx context.Context, st *gitState, restart bool) error {
	ref := st.Previous
	if st.Branch != "" {
		// Back onto the branch only when it still names the same commit.
		if at, err := g.git(ctx, "rev-parse", "--verify", "--quiet", "refs/heads/"+st.Branch); err == nil && at == st.Previous {
			ref = st.Branch
		}
	}
	args := []string{"checkout", "--quiet", ref}
	if ref == st.Previous {
		args = []string{"checkout", "--quiet", "--detach", ref}
	}
	if _, err := g.git(ctx, args...); err != nil {
		return fmt.Errorf("revert code: %w", err)
	}
	if restart {
		if err := g.runRestart(ctx, st, "revert", st.Previous); err != nil {
			return fmt.Errorf("revert code: %w", err)
		}
	}
	st.Reverted = true
	return g.save(st)
}

func (g *GitCode) runRestart(ctx context.Context, st *gitState, action, revision string) error {
	if g.restart == "" {
		return nil
	}
	return runShell(ctx, "restart command", g.restart, g.dir, g.Env, []string{
		"ACTION=" + action, "TXN=" + st.Txn, "SNAPSHOT=" + st.Snapshot, "REVISION=" + revision,
	})
}

func (g *GitCode) save(st *gitState) error {
	g.mu.Lock()
	g.mem[st.Txn] = st
	g.mu.Unlock()
	return saveCodeState(g.stateDir, st.Txn, st)
}
