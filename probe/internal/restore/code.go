package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"backstop/shared/atomicfile"
	"backstop/shared/manifest"
)

// Code rolls the app's code back to a snapshot's revision and can undo that.
//
// Plan is called before anything is touched: it says in words what Apply
// would change, or fails when the rollback cannot be done (no container of
// that image, unknown revision, dirty work tree), so a restore stops before
// its first change. Apply either succeeds or has undone what it did by the
// time it returns (the error then says so, or that undoing failed too).
// Revert undoes a successful Apply of transaction txn, also from another
// process (`probe revert TXN`): what it needs is written to a small JSON
// file in the state directory before Apply changes anything. Revert is
// idempotent; it is a no-op for a txn whose Apply changed nothing or was
// already undone.
type Code interface {
	Plan(ctx context.Context, m manifest.Manifest) (string, error)
	Apply(ctx context.Context, m manifest.Manifest, txn string) error
	Revert(ctx context.Context, txn string) error
}

// NoCode is the "none" strategy: the code is left as it is.
func NoCode() Code { return noCode{} }

type noCode struct{}

func (noCode) Plan(context.Context, manifest.Manifest) (string, error) {
	return "code left as it is (strategy none)", nil
}
func (noCode) Apply(context.Context, manifest.Manifest, string) error { return nil }
func (noCode) Revert(context.Context, string) error                   { return nil }

// codeStatePath is where a strategy keeps what Revert needs for txn.
func codeStatePath(dir, txn string) (string, error) {
	if dir == "" {
		return "", errors.New("code rollback: no state directory")
	}
	if txn == "" || strings.ContainsAny(txn, `/\`) || txn == "." || txn == ".." {
		return "", fmt.Errorf("code rollback: bad transaction id %q", txn)
	}
	return filepath.Join(dir, "code-"+txn+".json"), nil
}

// saveCodeState writes v as the txn's code state (atomically).
func saveCodeState(dir, txn string, v any) error {
	p, err := codeStatePath(dir, txn)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode code state %s: %w", p, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir %s: %w", dir, err)
	}
	if err := atomicfile.Write(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write code state %s: %w", p, err)
	}
	return nil
}

// loadCodeState reads the txn's code state into v; found is false when
// there is none (Apply never started for txn).
func loadCodeState(dir, txn string, v any) (found bool, err error) {
	p, err := codeStatePath(dir, txn)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read code state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("read code state %s: %w", p, err)
	}
	return true, nil
}

// tailBuf keeps the last bytes written to it, for an error message.
type tailBuf struct {
	b []byte
}

const tailMax = 4096

func (t *tailBuf) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

// lastLines returns up to n last non-empty lines, joined by " | ".
func (t *tailBuf) lastLines(n int) string {
	var lines []string
	for _, l := range strings.Split(string(t.b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// isNoCode reports whether c is the "none" strategy.
func isNoCode(c Code) bool {
	_, ok := c.(noCode)
	return ok
}
