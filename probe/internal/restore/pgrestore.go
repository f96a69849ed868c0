package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"backstop/probe/internal/pgmeta"
	"backstop/probe/internal/snapshot"
	"backstop/shared/clip"
)

// pgRestore fills db (created empty) from dump, a zstd-compressed
// `pg_dump -Fc` archive, with `pg_restore --exit-on-error`. With Jobs <= 1
// the decompressed archive streams into pg_restore's stdin; with Jobs > 1
// it is decompressed into a temporary file in TempDir (removed afterwards)
// for `pg_restore -j Jobs`, which needs a seekable file. A dump that ends
// early or is not zstd stops pg_restore and gives "read dump: ...". The
// password reaches pg_restore through its environment only.
func (d *DB) pgRestore(ctx context.Context, s *server, path, db string, dump io.Reader) error {
	env, _, secret, err := snapshot.PgEnv(d.DSN)
	if err != nil {
		return err
	}
	base := []string{"PATH=" + os.Getenv("PATH")}
	if home := os.Getenv("HOME"); home != "" {
		base = append(base, "HOME="+home)
	}
	// Later entries win: this session's name and database.
	env = append(append(base, env...), "PGAPPNAME=backstop pg_restore", "PGDATABASE="+db)

	dec, err := zstd.NewReader(&ctxReader{ctx: ctx, r: dump})
	if err != nil {
		return fmt.Errorf("read dump: zstd: %w", err)
	}
	defer dec.Close()
	src := &errReader{r: dec}

	args := []string{"--exit-on-error", "--no-password", "-d", "dbname=" + conninfoQuote(db)}
	var stdin io.Reader = src
	if d.Jobs > 1 {
		file, err := d.decompress(ctx, src)
		if err != nil {
			return err
		}
		defer os.Remove(file)
		args = append(args, "-j", strconv.Itoa(d.Jobs), file)
		stdin = nil
	}

	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	var in io.WriteCloser
	if stdin != nil {
		if in, err = cmd.StdinPipe(); err != nil {
			return fmt.Errorf("pg_restore into %s: %w", db, err)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_restore into %s: start %s: %w", db, path, unwrapExec(err))
	}
	var copyErr error
	if in != nil {
		_, copyErr = io.CopyBuffer(in, stdin, make([]byte, 1<<20))
		if src.err != nil {
			// A truncated or corrupt dump: pg_restore must not take what
			// came so far for the whole archive.
			cmd.Process.Kill()
		}
		in.Close()
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("pg_restore into %s: %w", db, ctx.Err())
	case src.err != nil:
		return fmt.Errorf("read dump: %w", src.err)
	case waitErr != nil:
		var ee *exec.ExitError
		status := waitErr.Error()
		if errors.As(waitErr, &ee) {
			status = ee.ProcessState.String()
		}
		msg := clip.End(pgmeta.Scrub(stderr.line(), secret), 600)
		if msg == "" {
			msg = "(no error output)"
		}
		return fmt.Errorf("pg_restore into %s: %s: %s", db, status, msg)
	case copyErr != nil:
		return fmt.Errorf("pg_restore into %s: write its input: %w", db, copyErr)
	}
	return nil
}

// decompress writes src to a new temporary file and returns its path.
func (d *DB) decompress(ctx context.Context, src *errReader) (string, error) {
	dir := d.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "backstop-restore-*.dump")
	if err != nil {
		return "", fmt.Errorf("decompress dump: %w", err)
	}
	_, err = io.CopyBuffer(f, src, make([]byte, 1<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		if ctx.Err() != nil {
			return "", fmt.Errorf("decompress dump: %w", ctx.Err())
		}
		if src.err != nil {
			return "", fmt.Errorf("read dump: %w", src.err)
		}
		return "", fmt.Errorf("decompress dump to %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// conninfoQuote quotes a value for a libpq key=value connection string.
func conninfoQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// errReader remembers the first error (but EOF) of r, so a failed read of
// the dump is told apart from a failed pg_restore.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// ctxReader ends a read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
