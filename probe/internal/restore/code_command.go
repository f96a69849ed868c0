package restore

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"backstop/shared/manifest"
)

// CommandCode is the command strategy: a hook of the operator's (run by
// `sh -c`) rolls the code back; it gets TXN, SNAPSHOT, REVISION, IMAGE and
// ACTION=apply in its environment, and the same with ACTION=revert to undo.
type CommandCode struct {
	// Env names the probe's secret-looking variables the hook keeps (rollback.env).
	Env      []string
	command  string
	stateDir string

	mu  sync.Mutex
	mem map[string]*commandState
}

var _ Code = (*CommandCode)(nil)

// NewCommandCode returns the command strategy running command; what
// Revert needs is kept in stateDir/code-<txn>.json.
func NewCommandCode(command string, stateDir string) *CommandCode {
	return &CommandCode{command: command, stateDir: stateDir, mem: map[string]*commandState{}}
}

// commandState is written before the hook runs.
type commandState struct {
	Strategy string `json:"strategy"` // "command"
	Txn      string `json:"txn"`
	Snapshot string `json:"snapshot"`
	Revision string `json:"revision"`
	Image    string `json:"image,omitempty"`
	Reverted bool   `json:"reverted"`
}

// Plan says which command would run with which revision; it fails when no
// command is configured or the snapshot records no revision or image.
func (c *CommandCode) Plan(ctx context.Context, m manifest.Manifest) (string, error) {
	if c.command == "" {
		return "", errors.New("code rollback: rollback.code.command is empty")
	}
	if m.App.Revision == "" && m.App.Image == "" {
		return "", fmt.Errorf("snapshot %s records no app revision or image: nothing to give the hook", m.ID)
	}
	return fmt.Sprintf("run `%s` with ACTION=apply REVISION=%s", c.command, m.App.Revision), nil
}

// Apply runs the hook with ACTION=apply. When it fails, the hook is run
// again with ACTION=revert before Apply returns.
func (c *CommandCode) Apply(ctx context.Context, m manifest.Manifest, txn string) error {
	if _, err := c.Plan(ctx, m); err != nil {
		return err
	}
	st := &commandState{Strategy: "command", Txn: txn, Snapshot: m.ID, Revision: m.App.Revision, Image: m.App.Image}
	if err := c.save(st); err != nil {
		return err
	}
	if err := c.run(ctx, st, "apply"); err != nil {
		if uerr := c.undo(ctx, st); uerr != nil {
			return fmt.Errorf("%w; undoing it failed too: %w", err, uerr)
		}
		return fmt.Errorf("%w (undone: the hook ran with ACTION=revert)", err)
	}
	return nil
}

// Revert runs the hook with ACTION=revert and the TXN, SNAPSHOT and
// REVISION Apply gave it; once that succeeded, later calls do nothing.
func (c *CommandCode) Revert(ctx context.Context, txn string) error {
	c.mu.Lock()
	st := c.mem[txn]
	c.mu.Unlock()
	if st == nil {
		st = &commandState{}
		found, err := loadCodeState(c.stateDir, txn, st)
		if err != nil || !found {
			return err
		}
		if st.Strategy != "command" {
			return fmt.Errorf("code state of %s was written by the %s strategy, not command", txn, st.Strategy)
		}
	}
	if st.Reverted {
		return nil
	}
	return c.undo(ctx, st)
}

func (c *CommandCode) undo(ctx context.Context, st *commandState) error {
	if err := c.run(ctx, st, "revert"); err != nil {
		return err
	}
	st.Reverted = true
	return c.save(st)
}

func (c *CommandCode) save(st *commandState) error {
	c.mu.Lock()
	c.mem[st.Txn] = st
	c.mu.Unlock()
	return saveCodeState(c.stateDir, st.Txn, st)
}

func (c *CommandCode) run(ctx context.Context, st *commandState, action string) error {
	if c.command == "" {
		return errors.New("code rollback: rollback.code.command is empty")
	}
	return runShell(ctx, "code hook", c.command, "", c.Env, []string{
		"ACTION=" + action, "TXN=" + st.Txn, "SNAPSHOT=" + st.Snapshot,
		"REVISION=" + st.Revision, "IMAGE=" + st.Image,
	})
}

// runShell runs `sh -c command` in dir with env added to the probe's
// environment without its secrets (hookEnv; allow names those it keeps),
// and fails with the exit status and the last lines of its output.
func runShell(ctx context.Context, what, command, dir string, allow, env []string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = hookEnv(allow, env)
	var out tailBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s `%s`: %w", what, command, ctx.Err())
		}
		msg := out.lastLines(3)
		if msg == "" {
			msg = "no output"
		}
		return fmt.Errorf("%s `%s`: %w: %s", what, command, err, msg)
	}
	return nil
}
