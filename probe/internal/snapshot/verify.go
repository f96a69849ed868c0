package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"backstop/shared/clip"
	"backstop/shared/manifest"
)

// ErrCorrupt marks a snapshot that failed verification.
var ErrCorrupt = errors.New("snapshot failed verification")

// FileCheck is the verdict on one file of a snapshot.
type FileCheck struct {
	File    string `json:"file"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
	Note    string `json:"note,omitempty"`
}

// VerifyResult is the verdict on one snapshot.
type VerifyResult struct {
	ID    string      `json:"id"`
	OK    bool        `json:"ok"`
	Files []FileCheck `json:"files"`
	// NotRecorded is set when the snapshot passed but its verified mark
	// could not be saved (a full backup disk): the verdict stands, the
	// manifest and catalog are left as they were.
	NotRecorded string `json:"not_recorded,omitempty"`
}

// Verify checks snapshot id: each file's size and SHA-256 against the
// manifest, the dump's table of contents (pg_restore --list on the
// decompressed stream: every table the manifest counted must be there) and
// the data archive's tar structure (entry count). A snapshot that passes is
// marked verified in its manifest and the catalog; one that fails is left
// as it was and the error names the file at fault (errors.Is ErrCorrupt).
func (e *Engine) Verify(ctx context.Context, id string) (VerifyResult, error) {
	unlock, err := Lock(e.Dir, "verify")
	if err != nil {
		return VerifyResult{ID: id}, err
	}
	defer unlock()
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return VerifyResult{ID: id}, err
	}
	return e.verifyOne(ctx, cat, id)
}

// VerifyLocked is Verify for a caller that already holds the lock.
func (e *Engine) VerifyLocked(ctx context.Context, id string) (VerifyResult, error) {
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return VerifyResult{ID: id}, err
	}
	return e.verifyOne(ctx, cat, id)
}

// VerifyAll verifies every snapshot in the catalog, newest first.
func (e *Engine) VerifyAll(ctx context.Context) ([]VerifyResult, error) {
	unlock, err := Lock(e.Dir, "verify")
	if err != nil {
		return nil, err
	}
	defer unlock()
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return nil, err
	}
	var out []VerifyResult
	var errs []error
	for _, m := range cat.Snapshots {
		r, err := e.verifyOne(ctx, cat, m.ID)
		out = append(out, r)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

func (e *Engine) verifyOne(ctx context.Context, cat *manifest.Catalog, id string) (VerifyResult, error) {
	res := VerifyResult{ID: id}
	m, ok := cat.Find(id)
	if !ok {
		return res, fmt.Errorf("no snapshot %s in %s (probe list shows what there is)", id, e.Dir)
	}
	dir := filepath.Join(e.Dir, id)
	// The manifest on disk must be the one the catalog knows.
	onDisk, err := readManifestFile(dir)
	switch {
	case err != nil:
		res.Files = append(res.Files, FileCheck{File: manifest.ManifestFile, Problem: err.Error()})
	case !sameManifest(onDisk, m):
		res.Files = append(res.Files, FileCheck{File: manifest.ManifestFile, Problem: "differs from the catalog's copy (edited?)"})
	default:
		res.Files = append(res.Files, FileCheck{File: manifest.ManifestFile, OK: true})
	}
	if e.signing() {
		res.Files = append(res.Files, e.checkLocalSig(dir))
	}
	if m.DB != nil {
		res.Files = append(res.Files, e.verifyDump(ctx, dir, m))
	}
	if m.Data != nil {
		res.Files = append(res.Files, verifyData(ctx, dir, m))
	}
	res.OK = true
	var bad []string
	for _, f := range res.Files {
		if !f.OK {
			res.OK = false
			bad = append(bad, f.File+": "+f.Problem)
		}
	}
	if !res.OK {
		return res, fmt.Errorf("%w: %s: %s", ErrCorrupt, id, strings.Join(bad, "; "))
	}
	before := m
	m.Status = manifest.StatusVerified
	m.VerifiedAt = e.now().UTC()
	if err := e.writeManifest(dir, m); err != nil {
		// The check itself passed; a disk too full to record it must not
		// turn a good snapshot into a failed verify (writeManifest is
		// atomic: the old manifest is intact).
		res.NotRecorded = err.Error()
		e.log().Warn("snapshot verified, but its mark was not saved", "id", id, "err", err)
		return res, nil
	}
	if err := cat.Upsert(m); err != nil {
		return res, err
	}
	if err := cat.Save(e.catalogPath()); err != nil {
		// Keep manifest and catalog agreeing, or the next verify would
		// call the edited-looking manifest corrupt.
		if rerr := e.writeManifest(dir, before); rerr != nil {
			return res, errors.Join(err, rerr)
		}
		res.NotRecorded = err.Error()
		e.log().Warn("snapshot verified, but its mark was not saved", "id", id, "err", err)
	}
	return res, nil
}

func readManifestFile(dir string) (manifest.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		return manifest.Manifest{}, err
	}
	return manifest.Decode(data)
}

// checkSum compares a stored file's size and SHA-256 with the manifest.
func checkSum(ctx context.Context, path string, size int64, sha string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := SumReader(ctx, f)
	if err != nil {
		return err
	}
	if got.Size != size {
		return fmt.Errorf("size %d, manifest says %d", got.Size, size)
	}
	if got.SHA256 != sha {
		return fmt.Errorf("SHA-256 mismatch: file %s…, manifest %s…", got.SHA256[:12], sha[:min(12, len(sha))])
	}
	return nil
}

func (e *Engine) verifyDump(ctx context.Context, dir string, m manifest.Manifest) FileCheck {
	fc := FileCheck{File: m.DB.File}
	path := filepath.Join(dir, m.DB.File)
	if err := checkSum(ctx, path, m.DB.Size, m.DB.SHA256); err != nil {
		fc.Problem = err.Error()
		return fc
	}
	pgRestore := e.PgRestore
	if pgRestore == "" {
		pgRestore = findPgTool("pg_restore")
	}
	if pgRestore == "" {
		fc.OK, fc.Note = true, "table of contents not read: no pg_restore on this host"
		return fc
	}
	toc, err := dumpTOC(ctx, pgRestore, path)
	if err != nil {
		fc.Problem = err.Error()
		return fc
	}
	var missing []string
	for t := range m.DB.Tables {
		if !toc[t] && !toc["public."+t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fc.Problem = "dump lacks the data of tables " + strings.Join(missing, ", ")
		return fc
	}
	fc.OK = true
	return fc
}

// dumpTOC decompresses the dump into `pg_restore --list` and returns the
// schema-qualified tables whose data the dump holds.
func dumpTOC(ctx context.Context, pgRestore, path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	defer dec.Close()
	cmd := exec.CommandContext(ctx, pgRestore, "--list")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdin = dec
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_restore --list: %v: %s", err, clip.Line(stderr.String(), 300))
	}
	tables := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// "3345; 0 16390 TABLE DATA public pgbench_accounts postgres"
		f := strings.Fields(sc.Text())
		for i := 0; i+3 < len(f); i++ {
			if f[i] == "TABLE" && f[i+1] == "DATA" {
				tables[f[i+2]+"."+f[i+3]] = true
			}
		}
	}
	if len(tables) == 0 && !strings.Contains(string(out), "Archive created at") {
		return nil, errors.New("pg_restore --list found no archive header")
	}
	return tables, nil
}

func verifyData(ctx context.Context, dir string, m manifest.Manifest) FileCheck {
	fc := FileCheck{File: m.Data.File}
	path := filepath.Join(dir, m.Data.File)
	if err := checkSum(ctx, path, m.Data.Size, m.Data.SHA256); err != nil {
		fc.Problem = err.Error()
		return fc
	}
	f, err := os.Open(path)
	if err != nil {
		fc.Problem = err.Error()
		return fc
	}
	defer f.Close()
	n, err := WalkTarZstd(ctx, f, nil)
	if err != nil {
		fc.Problem = "archive: " + err.Error()
		return fc
	}
	if n != m.Data.Entries {
		fc.Problem = fmt.Sprintf("archive has %d entries, manifest says %d", n, m.Data.Entries)
		return fc
	}
	fc.OK = true
	return fc
}

// findPgTool finds a PostgreSQL client tool in PATH or the newest
// /usr/lib/postgresql/<major>/bin.
func findPgTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(dirs, func(i, j int) bool { return pgMajorOf(dirs[i]) > pgMajorOf(dirs[j]) })
	if len(dirs) > 0 {
		return dirs[0]
	}
	return ""
}

func pgMajorOf(path string) int {
	var n int
	fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(path))), "%d", &n)
	return n
}

// sameManifest compares two manifests field for field, as encoded.
func sameManifest(a, b manifest.Manifest) bool {
	ea, err1 := a.Encode()
	eb, err2 := b.Encode()
	return err1 == nil && err2 == nil && string(ea) == string(eb)
}
