package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backstop/probe/internal/config"
	"backstop/shared/alert"
	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// alerts collects the events an Engine raises.
type alerts struct {
	mu  sync.Mutex
	evs []alert.Event
}

func (a *alerts) add(ev alert.Event) { a.mu.Lock(); a.evs = append(a.evs, ev); a.mu.Unlock() }

func (a *alerts) all() []alert.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.evs)
}

// smallDB makes database name with a small table and returns its DSN.
func smallDB(t *testing.T, pg *testenv.PG, name string) string {
	t.Helper()
	pg.CreateDB(t, name)
	pg.Exec(t, name, `CREATE TABLE users (id int PRIMARY KEY, email text);
		INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 500) i;
		CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int PRIMARY KEY, cents bigint);
		INSERT INTO billing.invoices SELECT i, i * 100 FROM generate_series(1, 50) i`)
	return pg.DSN(name)
}

// randomDataDir makes a data dir holding size bytes of incompressible data.
func randomDataDir(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	rand.Read(buf)
	if err := os.WriteFile(filepath.Join(dir, "random.bin"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func hostEngine(t *testing.T, dir, dsn, dataDir string) (*Engine, *alerts) {
	t.Helper()
	d, err := NewHostDumper(dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &alerts{}
	return &Engine{Dir: dir, Host: "full-host", DSN: dsn, Dumper: d, DataDir: dataDir,
		RollbackLog: filepath.Join(t.TempDir(), "rollback.log"), Alert: a.add}, a
}

// rollbackStatus returns the id of the one backup the rollback log shows
// and the statuses it logged for it, in order.
func rollbackStatus(t *testing.T, path string) (id string, statuses []string, lines string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("rollback log: %v", err)
	}
	re := regexp.MustCompile(`BACKUP id=(\S+) status=(\S+)`)
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		if id == "" {
			id = m[1]
		}
		if m[1] == id {
			statuses = append(statuses, m[2])
		}
	}
	return id, statuses, string(data)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestBackupDiskFull runs out of space in the middle of a backup: the error
// names the cause, nothing is listed or left behind, the operator is
// alerted and the rollback log records the failure.
func TestBackupDiskFull(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := smallDB(t, pg, "full")
	mnt := testenv.Tmpfs(t, "8m")
	e, al := hostEngine(t, filepath.Join(mnt, "backups"), dsn, randomDataDir(t, 12<<20))

	_, err := e.Backup(t.Context(), Options{})
	if err == nil {
		t.Fatal("Backup of 12 MiB of random data onto an 8 MiB tmpfs succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Backup error = %v, want ENOSPC (no space left on device)", err)
	}
	if !strings.Contains(err.Error(), manifest.DataFile) {
		t.Errorf("Backup error = %v, want it to name the file being written (%s)", err, manifest.DataFile)
	}
	if snaps, err := e.List(); err != nil || len(snaps) != 0 {
		t.Errorf("List after a failed backup = %v, %v; want none", ids(snaps), err)
	}
	if names := dirNames(t, e.Dir); !slices.Equal(names, []string{LockFile}) {
		t.Errorf("backup dir holds %v after a failed backup, want only %s", names, LockFile)
	}
	if u := testenv.StatUsage(t, mnt); u.FreeBytes < 7<<20 {
		t.Errorf("tmpfs has %d bytes free after the failed backup: its partial files were not removed", u.FreeBytes)
	}

	id, statuses, log := rollbackStatus(t, e.RollbackLog)
	if !slices.Equal(statuses, []string{"start", "failed"}) || !strings.Contains(log, "no space left on device") {
		t.Errorf("rollback log statuses for %s = %v, want [start failed] with the cause:\n%s", id, statuses, log)
	}
	evs := al.all()
	if len(evs) != 1 {
		t.Fatalf("alert events = %+v, want one", evs)
	}
	ev := evs[0]
	if ev.Check != "backup" || ev.State != alert.Warn || ev.IncidentID != id || ev.Host != "full-host" ||
		!strings.Contains(ev.Summary, "no space left on device") {
		t.Errorf("alert event = %+v, want check backup, warn, incident %s, summary naming the full disk", ev, id)
	}
}

// TestBackupRefusedForSpace: with less free space than 1.2 × the last
// snapshot, a backup is refused before it writes anything, and the
// operator hears of it.
func TestBackupRefusedForSpace(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := smallDB(t, pg, "space")
	mnt := testenv.Tmpfs(t, "16m")
	e, al := hostEngine(t, filepath.Join(mnt, "backups"), dsn, randomDataDir(t, 3<<20))

	res, err := e.Backup(t.Context(), Options{})
	if err != nil {
		t.Fatalf("first Backup: %v", err)
	}
	size := totalSize(res.Manifest)

	// Leave about one snapshot's worth free: less than the 1.2× needed.
	u := testenv.StatUsage(t, mnt)
	testenv.Fill(t, mnt, 100*(1-float64(size)/float64(u.SizeBytes)))
	free := testenv.StatUsage(t, mnt).FreeBytes
	if float64(free) >= 1.2*float64(size) || free < uint64(size)/2 {
		t.Fatalf("setup: %d bytes free for a %d-byte snapshot, want between 0.5× and 1.2×", free, size)
	}
	before := dirNames(t, e.Dir)
	fi, err := os.Stat(e.Dir)
	if err != nil {
		t.Fatal(err)
	}

	_, err = e.Backup(t.Context(), Options{})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Backup with %d bytes free after a %d-byte snapshot: %v, want ErrNoSpace", free, size, err)
	}
	if !strings.Contains(err.Error(), e.Dir) || !strings.Contains(err.Error(), "need 1.2×") {
		t.Errorf("error %q should name the dir and the space needed", err)
	}
	if after := dirNames(t, e.Dir); !slices.Equal(after, before) {
		t.Errorf("backup dir changed from %v to %v", before, after)
	}
	if fi2, err := os.Stat(e.Dir); err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("backup dir modified (mtime %v → %v): the refused backup wrote something", fi.ModTime(), fi2.ModTime())
	}
	if snaps, _ := e.List(); !slices.Equal(ids(snaps), []string{res.Manifest.ID}) {
		t.Errorf("List = %v, want only %s", ids(snaps), res.Manifest.ID)
	}
	evs := al.all()
	if len(evs) != 1 || evs[0].Check != "backup" || !strings.Contains(evs[0].Summary, "not enough free space") {
		t.Errorf("alert events = %+v, want one backup event naming the lack of space", evs)
	}
	data, _ := os.ReadFile(e.RollbackLog)
	if !regexp.MustCompile(`BACKUP id=\S+ status=failed .*not enough free space`).Match(data) {
		t.Errorf("rollback log lacks the refused backup:\n%s", data)
	}

	// With the space back, backups go on.
	fills, _ := filepath.Glob(filepath.Join(mnt, "fill-*"))
	for _, f := range fills {
		os.Remove(f)
	}
	if _, err := e.Backup(t.Context(), Options{}); err != nil {
		t.Fatalf("Backup after freeing space: %v", err)
	}
}

// lockHolder reads the pid the backup dir's lock file names (0: none yet).
func lockHolder(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		return 0
	}
	var info lockInfo
	if json.Unmarshal(data, &info) != nil {
		return 0
	}
	return info.PID
}

// blockDump holds an ACCESS EXCLUSIVE lock on the rig's events table, so
// a backup blocks (holding the backup lock) until release is called.
func blockDump(t *testing.T, r *probeRig) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.pg.DSN(r.db))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback(ctx)
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

type outcome struct {
	pid            int
	code           int
	stdout, stderr string
}

// start starts the probe and returns a channel with its outcome.
func (r *probeRig) start(t *testing.T, args ...string) (pid int, done <-chan outcome) {
	t.Helper()
	cmd, o, e := r.command(t, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan outcome, 1)
	go func() {
		err := cmd.Wait()
		code := -1
		if err == nil {
			code = 0
		} else if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
			code = ee.ExitCode()
		}
		so, _ := os.ReadFile(o.Name())
		se, _ := os.ReadFile(e.Name())
		ch <- outcome{cmd.Process.Pid, code, string(so), string(se)}
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd.Process.Pid, ch
}

func await(t *testing.T, what string, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not end within 2 minutes", what)
		return outcome{}
	}
}

// TestConcurrentBackups: the backup lock lets one backup run at a time
// across processes; the others, and a verify, exit 75 naming the holder.
func TestConcurrentBackups(t *testing.T) {
	r := newProbeRig(t, "conc", 20_000, "")
	if code, _, errOut := r.run(t, "backup", "--no-upload"); code != 0 {
		t.Fatalf("first probe backup: exit %d\n%s", code, errOut)
	}

	t.Run("two started together", func(t *testing.T) {
		release := blockDump(t, r)
		_, a := r.start(t, "backup", "--no-upload")
		_, b := r.start(t, "backup", "--no-upload")
		// The loser ends at once; the winner waits for the table lock.
		var loser outcome
		var winner <-chan outcome
		select {
		case loser = <-a:
			winner = b
		case loser = <-b:
			winner = a
		case <-time.After(2 * time.Minute):
			t.Fatal("neither backup ended while the other was blocked")
		}
		release()
		won := await(t, "the winning backup", winner)
		if won.code != 0 {
			t.Fatalf("winner: exit %d\n%s", won.code, won.stderr)
		}
		if _, err := manifest.ParseID(strings.TrimSpace(won.stdout)); err != nil {
			t.Errorf("winner printed %q, want a snapshot id", won.stdout)
		}
		if loser.code != 75 || !strings.Contains(loser.stderr, "another backup") {
			t.Fatalf("loser: exit %d, stderr %q; want 75 and the lock message", loser.code, loser.stderr)
		}
		// The holder writes its pid just after taking the lock; a loser
		// that read the file in between may not see it, but never another.
		if m := regexp.MustCompile(`pid (\d+)`).FindStringSubmatch(loser.stderr); m != nil && m[1] != fmt.Sprint(won.pid) {
			t.Errorf("loser names pid %s, the winner is %d: %s", m[1], won.pid, loser.stderr)
		}
	})

	t.Run("a backup and a verify while one runs", func(t *testing.T) {
		release := blockDump(t, r)
		pid, a := r.start(t, "backup", "--no-upload")
		deadline := time.Now().Add(time.Minute)
		for lockHolder(r.backupDir) != pid {
			if time.Now().After(deadline) {
				t.Fatalf("the backup (pid %d) did not take the lock; the lock file names %d", pid, lockHolder(r.backupDir))
			}
			time.Sleep(20 * time.Millisecond)
		}
		wantMsg := fmt.Sprintf("another backup is running (pid %d, started ", pid)
		for _, args := range [][]string{{"backup", "--no-upload"}, {"verify"}, {"verify", "--all"}} {
			code, out, errOut := r.run(t, args...)
			if code != 75 || !strings.Contains(errOut, wantMsg) {
				t.Errorf("probe %s while pid %d backs up: exit %d, stderr %q; want 75 and %q\n%s", strings.Join(args, " "), pid, code, errOut, wantMsg, out)
			}
		}
		release()
		if o := await(t, "the backup", a); o.code != 0 {
			t.Fatalf("backup: exit %d\n%s", o.code, o.stderr)
		}
		if code, out, errOut := r.run(t, "verify", "--all"); code != 0 {
			t.Fatalf("probe verify --all after the backup: exit %d\n%s%s", code, out, errOut)
		}
	})
}

// TestBackupInDBContainer dumps with the pg_dump inside the database's
// container (pg_dump: container:<name>) and gets the same tables as the
// host's pg_dump.
func TestBackupInDBContainer(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := smallDB(t, pg, "ctr")
	dk := testenv.Docker(t)
	ctr := dk.Run(t, testenv.RunOpts{Image: dk.PgDumpImage(t), NamePrefix: "snap-db-", NetworkMode: "host"})

	backup := func(pgDump string) (*Engine, Result) {
		t.Helper()
		cfg := &config.Config{Host: "ctr-host",
			Backup: config.Backup{Dir: filepath.Join(t.TempDir(), "backups"),
				Database: config.Database{DSN: config.Secret(dsn), PgDump: pgDump}},
			Rollback: config.Rollback{Log: filepath.Join(t.TempDir(), "rollback.log")}}
		e, err := FromConfig(t.Context(), cfg, nil)
		if err != nil {
			t.Fatalf("FromConfig(pg_dump: %s): %v", pgDump, err)
		}
		res, err := e.Backup(t.Context(), Options{})
		if err != nil {
			t.Fatalf("Backup with pg_dump %s: %v", pgDump, err)
		}
		if v, err := e.Verify(t.Context(), res.Manifest.ID); err != nil || !v.OK {
			t.Fatalf("Verify of the pg_dump %s snapshot: %+v, %v", pgDump, v, err)
		}
		return e, res
	}
	_, host := backup("host")
	ce, inCtr := backup("container:" + ctr.Name)

	if _, ok := ce.Dumper.(*ContainerDumper); !ok {
		t.Fatalf("FromConfig(container:%s) made a %T, want a *ContainerDumper", ctr.Name, ce.Dumper)
	}
	// Whether public tables are written "users" or "public.users" is the
	// manifest's business; here both paths must agree, with the right rows.
	unqualified := map[string]int64{}
	for k, v := range inCtr.Manifest.DB.Tables {
		unqualified[strings.TrimPrefix(k, "public.")] = v
	}
	want := map[string]int64{"users": 500, "billing.invoices": 50}
	if !reflect.DeepEqual(inCtr.Manifest.DB.Tables, host.Manifest.DB.Tables) || !reflect.DeepEqual(unqualified, want) {
		t.Errorf("container snapshot tables = %v, host %v, want %v", inCtr.Manifest.DB.Tables, host.Manifest.DB.Tables, want)
	}
	toc := func(r Result) map[string]bool {
		m, err := dumpTOC(t.Context(), findPgTool("pg_restore"), filepath.Join(r.Path, manifest.DBFile))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if a, b := toc(inCtr), toc(host); !reflect.DeepEqual(a, b) || len(a) != 2 {
		t.Errorf("dump table data: container %v, host %v", a, b)
	}
	if v := inCtr.Manifest.DB.PgDumpVersion; !strings.HasPrefix(v, "15.") {
		t.Errorf("pg_dump_version = %q, want the container's 15.x", v)
	}
}

// TestPruneLeavesOnlyWholeSnapshots: retention drops snapshots from the
// catalog before their files go, and what a crash in between leaves (a
// whole snapshot not in the catalog, a half-removed <id>.partial) is
// cleaned up by the next backup.
func TestPruneLeavesOnlyWholeSnapshots(t *testing.T) {
	pg := testenv.Postgres(t)
	e, _ := hostEngine(t, filepath.Join(t.TempDir(), "backups"), smallDB(t, pg, "prune"), randomDataDir(t, 64<<10))
	e.Retention = Retention{Count: 1}
	day := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	e.Now = func() time.Time { return day }

	var made []string
	for range 2 {
		res, err := e.Backup(t.Context(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, res.Manifest.ID)
		day = day.Add(24 * time.Hour)
	}
	// Count 1 kept only the second; the first was pruned whole.
	if snaps, _ := e.List(); !slices.Equal(ids(snaps), made[1:]) {
		t.Fatalf("List = %v, want %v", ids(snaps), made[1:])
	}
	if names := dirNames(t, e.Dir); !slices.Equal(names, []string{LockFile, made[1], manifest.ManifestFile}) {
		t.Fatalf("backup dir = %v after pruning %s", names, made[0])
	}

	// What a crash inside the pruning of made[1] could leave: the
	// catalog saved without it and its directory either still whole or
	// renamed and half-removed.
	whole := filepath.Join(e.Dir, made[1])
	half := filepath.Join(e.Dir, "20260301T020000Z-abcdef.partial")
	if err := os.CopyFS(half, os.DirFS(whole)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(half, manifest.DBFile))
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		t.Fatal(err)
	}
	cat.Remove(made[1])
	if err := cat.Save(e.catalogPath()); err != nil {
		t.Fatal(err)
	}

	res, err := e.Backup(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// made[1] was adopted again, then pruned again; the half-removed
	// directory is gone.
	if snaps, _ := e.List(); !slices.Equal(ids(snaps), []string{res.Manifest.ID}) {
		t.Errorf("List = %v, want only %s", ids(snaps), res.Manifest.ID)
	}
	if names := dirNames(t, e.Dir); !slices.Equal(names, []string{LockFile, res.Manifest.ID, manifest.ManifestFile}) {
		t.Errorf("backup dir = %v, want the lock, %s and the catalog", names, res.Manifest.ID)
	}
	if !slices.Equal(res.Removed, []string{made[1]}) {
		t.Errorf("Removed = %v, want [%s] (adopted, then pruned)", res.Removed, made[1])
	}
}
