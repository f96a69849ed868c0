package snapshot

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

var crashSeed = flag.Uint64("crash.seed", 0, "seed of TestBackupKilledAtRandomMoments' kill times (0: from the clock)")

// probeRig runs the real probe binary against a real Postgres database and
// a data directory, with a config in a temp dir.
type probeRig struct {
	bin       string
	cfg       string
	backupDir string
	stateDir  string
	rollback  string
	dataDir   string
	pg        *testenv.PG
	db        string
}

// newProbeRig builds the probe binary, makes database db with rows rows of
// md5 text (about 70 bytes each in the dump) and a data dir with a random
// 1 MiB file and a few small ones, and writes a config using them. extra
// is appended to the backup section (e.g. "  database: ..." lines are
// already there; extra adds keys at that indentation).
func newProbeRig(t *testing.T, db string, rows int, extra string) *probeRig {
	t.Helper()
	pg := testenv.Postgres(t)
	pg.CreateDB(t, db)
	pg.Exec(t, db, fmt.Sprintf(`CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL);
		INSERT INTO events SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, %d) i;
		CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
		INSERT INTO alembic_version VALUES ('0007_events')`, rows))

	dir := t.TempDir()
	r := &probeRig{
		bin:       buildProbe(t),
		cfg:       filepath.Join(dir, "probe.yaml"),
		backupDir: filepath.Join(dir, "backups"),
		stateDir:  filepath.Join(dir, "state"),
		rollback:  filepath.Join(dir, "log", "rollback.log"),
		dataDir:   filepath.Join(dir, "data"),
		pg:        pg,
		db:        db,
	}
	if err := os.MkdirAll(filepath.Join(r.dataDir, "uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	rand.Read(big)
	for name, data := range map[string][]byte{"uploads/scan.bin": big, "notes.txt": []byte("hello\n"), "uploads/a.json": []byte(`{"a":1}`)} {
		if err := os.WriteFile(filepath.Join(r.dataDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`host: crash-host
state_dir: %s
checks:
  - {name: disk, type: disk, paths: [%s]}
backup:
  dir: %s
  data_dir: %s
  database:
    dsn: %q
%s
rollback:
  log: %s
`, r.stateDir, dir, r.backupDir, r.dataDir, pg.DSN(db), extra, r.rollback)
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// buildProbe builds backstop/probe into a temp dir.
func buildProbe(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", bin, "backstop/probe")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build backstop/probe: %v\n%s", err, out)
	}
	return bin
}

// command is the probe with args, its own config and a clean environment
// (no DATABASE_URL or BACKUP_DIR from the test's), stdout and stderr going
// to files so that Wait never waits on a child that outlived the probe.
func (r *probeRig) command(t *testing.T, args ...string) (cmd *exec.Cmd, stdout, stderr *os.File) {
	t.Helper()
	cmd = exec.Command(r.bin, append([]string{"--config", r.cfg}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if v, ok := os.LookupEnv("DOCKER_HOST"); ok {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+v)
	}
	var err error
	if stdout, err = os.CreateTemp(t.TempDir(), "stdout-*"); err != nil {
		t.Fatal(err)
	}
	if stderr, err = os.CreateTemp(t.TempDir(), "stderr-*"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdout.Close(); stderr.Close() })
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// run runs the probe to the end and returns its exit code and output.
func (r *probeRig) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd, o, e := r.command(t, args...)
	err := cmd.Run()
	code = exitCode(t, err)
	return code, readAll(t, o), readAll(t, e)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
		return ee.ExitCode()
	}
	t.Fatalf("probe: %v", err)
	return -1
}

func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// list is `probe list --json`.
func (r *probeRig) list(t *testing.T) []manifest.Manifest {
	t.Helper()
	code, out, errOut := r.run(t, "list", "--json")
	if code != 0 {
		t.Fatalf("probe list --json: exit %d\n%s", code, errOut)
	}
	var snaps []manifest.Manifest
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("probe list --json: %v\n%s", err, out)
	}
	return snaps
}

// checkListed fails unless every listed snapshot is whole on disk: its
// directory (never a .partial one) with manifest.json naming it and each
// stored file at the manifest's size.
func (r *probeRig) checkListed(t *testing.T, snaps []manifest.Manifest) {
	t.Helper()
	for _, m := range snaps {
		if strings.HasSuffix(m.ID, ".partial") {
			t.Fatalf("probe list shows a partial snapshot %s", m.ID)
		}
		dir := filepath.Join(r.backupDir, m.ID)
		onDisk, err := readManifestFile(dir)
		if err != nil || onDisk.ID != m.ID {
			t.Fatalf("listed snapshot %s: manifest.json on disk: id %q, %v", m.ID, onDisk.ID, err)
		}
		if m.DB == nil || m.Data == nil {
			t.Fatalf("listed snapshot %s lacks a part: db %v data %v", m.ID, m.DB, m.Data)
		}
		for file, size := range map[string]int64{m.DB.File: m.DB.Size, m.Data.File: m.Data.Size} {
			fi, err := os.Stat(filepath.Join(dir, file))
			if err != nil || fi.Size() != size {
				t.Fatalf("listed snapshot %s: %s: %v (size %d, manifest says %d)", m.ID, file, err, sizeOf(fi), size)
			}
		}
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

// partials are the *.partial entries of the backup dir.
func (r *probeRig) partials(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(r.backupDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".partial") {
			out = append(out, e.Name())
		}
	}
	return out
}

func ids(snaps []manifest.Manifest) []string {
	var out []string
	for _, m := range snaps {
		out = append(out, m.ID)
	}
	return out
}

// TestBackupKilledAtRandomMoments SIGKILLs `probe backup` at random moments
// of its run: after each kill, probe list shows only whole snapshots and
// probe verify --all passes on them; afterwards a normal backup succeeds
// and removes the leftovers. Reproduce a run with -crash.seed=N.
func TestBackupKilledAtRandomMoments(t *testing.T) {
	r := newProbeRig(t, "crash", 1_200_000, "")

	// One whole run gives the backup's duration D.
	start := time.Now()
	code, out, errOut := r.run(t, "backup", "--no-upload")
	d := time.Since(start)
	if code != 0 {
		t.Fatalf("probe backup: exit %d\n%s", code, errOut)
	}
	first := strings.TrimSpace(out)
	if _, err := manifest.ParseID(first); err != nil {
		t.Fatalf("probe backup printed %q, want a snapshot id", out)
	}
	t.Logf("probe backup takes %v", d)

	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill times from seed %d (-crash.seed=%d reproduces them)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed>>1|1))

	const kills = 22
	verified := []string{}
	var leftPartial, completed int
	for i := range kills {
		before := ids(r.list(t))
		cmd, _, stderr := r.command(t, "backup", "--no-upload")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wait := time.Duration(rng.Int64N(int64(d) + 1))
		time.Sleep(wait)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if err == nil {
			completed++ // it finished before the kill
		} else if ee, ok := err.(*exec.ExitError); !ok || ee.Exited() {
			t.Fatalf("kill %d after %v: probe ended by itself with %v\n%s", i, wait, err, readAll(t, stderr))
		}
		if len(r.partials(t)) > 0 {
			leftPartial++
		}

		snaps := r.list(t)
		r.checkListed(t, snaps)
		for _, id := range before {
			if !slices.Contains(ids(snaps), id) {
				t.Fatalf("kill %d after %v: snapshot %s was listed before and is gone: %v", i, wait, id, ids(snaps))
			}
		}
		if now := ids(snaps); !slices.Equal(now, verified) {
			if code, out, errOut := r.run(t, "verify", "--all"); code != 0 {
				t.Fatalf("kill %d after %v: probe verify --all: exit %d\n%s%s", i, wait, code, out, errOut)
			}
			verified = now
		}
	}
	t.Logf("%d kills: %d left a .partial dir, %d found the backup already finished", kills, leftPartial, completed)

	// A kill inside a catalog save leaves atomicfile's temp file; the
	// random kills rarely land there, so plant one.
	tmp := filepath.Join(r.backupDir, "."+manifest.ManifestFile+".tmp-4242")
	if err := os.WriteFile(tmp, []byte(`{"schema":1,"snap`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = r.run(t, "backup", "--no-upload")
	if code != 0 {
		t.Fatalf("backup after the kills: exit %d\n%s", code, errOut)
	}
	last := strings.TrimSpace(out)
	for _, name := range dirNames(t, r.backupDir) {
		if _, err := manifest.ParseID(name); err != nil && name != LockFile && name != manifest.ManifestFile {
			t.Errorf("leftover %s in the backup dir after a whole backup", name)
		}
	}
	if code, out, errOut := r.run(t, "verify", last); code != 0 || !strings.Contains(out, last+"  OK") {
		t.Fatalf("probe verify %s: exit %d\n%s%s", last, code, out, errOut)
	}
	snaps := r.list(t)
	r.checkListed(t, snaps)
	if got := ids(snaps); got[0] != last || !slices.Contains(got, first) {
		t.Errorf("probe list = %v, want %s newest and %s kept", got, last, first)
	}
	log, err := os.ReadFile(r.rollback)
	if err != nil {
		t.Fatal(err)
	}
	if want := "BACKUP id=" + last + " status=complete"; !bytes.Contains(log, []byte(want)) {
		t.Errorf("rollback log lacks %q:\n%s", want, log)
	}

	t.Run("a snapshot renamed into place but not cataloged is adopted", func(t *testing.T) {
		// A kill between the rename and the catalog save leaves exactly
		// this: a whole <id>/ that the catalog does not know.
		path := filepath.Join(r.backupDir, manifest.ManifestFile)
		cat, err := manifest.LoadCatalog(path)
		if err != nil {
			t.Fatal(err)
		}
		if !cat.Remove(last) {
			t.Fatalf("catalog has no %s", last)
		}
		if err := cat.Save(path); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ids(r.list(t)), last) {
			t.Fatalf("%s still listed after its catalog entry was removed", last)
		}
		code, out, errOut := r.run(t, "backup", "--no-upload")
		if code != 0 {
			t.Fatalf("probe backup: exit %d\n%s", code, errOut)
		}
		newest := strings.TrimSpace(out)
		snaps := r.list(t)
		r.checkListed(t, snaps)
		if got := ids(snaps); !slices.Contains(got, last) || got[0] != newest {
			t.Fatalf("probe list = %v, want %s adopted and %s newest", got, last, newest)
		}
		if code, out, errOut := r.run(t, "verify", last); code != 0 {
			t.Fatalf("probe verify %s (adopted): exit %d\n%s%s", last, code, out, errOut)
		}
	})
}
