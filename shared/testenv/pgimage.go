package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// pgImagePrograms are the host's PostgreSQL client programs PgDumpImage
// copies into its image.
var pgImagePrograms = []string{"pg_dump", "pg_restore", "psql"}

// PgDumpImage returns the ref (backstop-test/pgdump:<hash>) of a FROM-scratch
// image that stands in for a database container: it holds the host's
// pg_dump, pg_restore and psql from DefaultPGBinDir (at the same path,
// which is first in the image's PATH), every shared library ldd lists for
// them plus the dynamic loader, a one-line /etc/passwd, and the webapp
// program as its entrypoint, which keeps the container running (listening
// on 127.0.0.1:0, a free port, so it never collides with anything). Run it
// with RunOpts{NetworkMode: "host"}: pg_dump inside then reaches a
// Postgres from Postgres(t) at 127.0.0.1:<port>, all on the loopback.
//
// The hash covers the copied files' contents, the webapp's sources and the
// Go version, so the image is rebuilt only when one of them changes. Missing
// PostgreSQL programs or ldd go through Need.
func (d *DockerEnv) PgDumpImage(t testing.TB) string {
	t.Helper()
	var progs []string
	for _, p := range pgImagePrograms {
		progs = append(progs, filepath.Join(DefaultPGBinDir, p))
	}
	files, err := hostProgramFiles(t.Context(), progs)
	if err != nil {
		Need(t, "PostgreSQL 15 client programs and ldd", err, pgHint)
	}
	webSrc, err := imageSourceDir("webapp")
	if err != nil {
		t.Fatalf("test image pgdump: %v", err)
	}
	webHash, err := sourceHash(webSrc)
	if err != nil {
		t.Fatalf("test image pgdump: %v", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "pgdump image 1\x00webapp %s\x00", webHash)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", f.name, f.mode, len(f.data))
		h.Write(f.data)
	}
	hash := hex.EncodeToString(h.Sum(nil))[:12]

	return d.cachedImage(t, "pgdump", hash, func(ctx context.Context, tmp, ref string) error {
		web, err := goBuild(ctx, tmp, "webapp", webSrc)
		if err != nil {
			return err
		}
		dockerfile := "FROM scratch\n" +
			"COPY rootfs/ /\n" +
			"ENV PATH=" + DefaultPGBinDir + ":/usr/bin:/bin\n" +
			"ENTRYPOINT [\"/webapp\", \"-listen\", \"127.0.0.1:0\"]\n"
		ctxFiles := []contextFile{
			{"Dockerfile", 0o644, []byte(dockerfile)},
			{"rootfs/webapp", 0o755, web},
			{"rootfs/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/webapp\npostgres:x:999:999:postgres:/:/webapp\n")},
		}
		for _, f := range files {
			ctxFiles = append(ctxFiles, contextFile{"rootfs" + f.name, f.mode, f.data})
		}
		return d.buildContext(ctx, ref, hash, ctxFiles)
	})
}

// hostProgramFiles reads each program and every library ldd resolves for
// it (and the dynamic loader), named by absolute path in sorted order.
// Symlinked libraries are read through, so each lands as a regular file
// at the path the loader looks for.
func hostProgramFiles(ctx context.Context, progs []string) ([]contextFile, error) {
	paths := map[string]bool{}
	for _, p := range progs {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
		paths[p] = true
		libs, err := lddPaths(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			paths[l] = true
		}
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	files := make([]contextFile, 0, len(sorted))
	for _, p := range sorted {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		files = append(files, contextFile{name: path.Clean(filepath.ToSlash(p)), mode: 0o755, data: data})
	}
	return files, nil
}

// lddPaths lists the absolute paths ldd resolves for prog's libraries,
// the dynamic loader included.
func lddPaths(ctx context.Context, prog string) ([]string, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("ldd %s: only on linux", prog)
	}
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libpq.so.5 => /lib/x86_64-linux-gnu/libpq.so.5 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)"
		line := strings.TrimSpace(sc.Text())
		if _, after, ok := strings.Cut(line, "=>"); ok {
			line = strings.TrimSpace(after)
		}
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		} else if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: %s", prog, sc.Text())
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries listed (a static program?)", prog)
	}
	return libs, nil
}
