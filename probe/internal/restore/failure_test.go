package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"backstop/probe/internal/snapshot"
	"backstop/shared/manifest"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// assertWhollyOld checks the live database and data dir are exactly what
// they were before the restore, with no scratch database or staging
// directory left behind.
func (g *restoreRig) assertWhollyOld(t *testing.T, when string, sums, tree map[string]string) {
	t.Helper()
	diffMaps(t, when+": live database", sums, g.sums(t, ""))
	diffMaps(t, when+": data dir", tree, rigTree(t, g.dataDir))
	if left := g.stateDBs(t, "restore"); len(left) > 0 {
		t.Errorf("%s: scratch databases left: %v", when, left)
	}
	for _, s := range g.siblings(t) {
		if strings.Contains(s, ".restore-") {
			t.Errorf("%s: staging directory left beside the data dir: %s", when, s)
		}
	}
}

// shellScript writes an executable sh script.
func shellScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// dumpSize is the decompressed size of snapshot id's pg_dump archive.
func (g *restoreRig) dumpSize(t *testing.T, id string) int64 {
	t.Helper()
	f, err := os.Open(filepath.Join(g.backupDir, id, manifest.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRestoreFailureAtEachStep injects a failure into each step of a
// restore; every time the automatic revert leaves the live database and
// the data dir wholly the old ones (the bad deploy's), nothing mixed.
func TestRestoreFailureAtEachStep(t *testing.T) {
	pg := testenv.Postgres(t)
	const image = "registry.example/psyfit-web:v1"
	cases := []struct {
		name string
		opts rigOpts
		// inject changes the restorer (and the world) before the restore.
		inject   func(t *testing.T, g *restoreRig, r *Restorer, id string)
		wantErr  []string // in the restore's error
		failed   string   // the step that failed
		reverted []string // steps reverted, in order
	}{
		{
			name: "pre-restore hook exits 1",
			inject: func(t *testing.T, g *restoreRig, r *Restorer, id string) {
				r.DB.Hook = `echo "alembic: cannot downgrade to $TARGET_REVISION" >&2; exit 1`
			},
			wantErr:  []string{"db: pre-restore hook: exit status 1: alembic: cannot downgrade to 0042_add_visits (reverted: the live state is the old one)"},
			failed:   "db",
			reverted: []string{"db"},
		},
		{
			name: "dump ends mid-restore",
			opts: rigOpts{rows: 4000},
			inject: func(t *testing.T, g *restoreRig, r *Restorer, id string) {
				// The real pg_restore gets only the first half of the archive.
				half := g.dumpSize(t, id) / 2
				r.DB.PgRestore = shellScript(t, fmt.Sprintf(`head -c %d | exec %s "$@"`, half, g.pg.Bin("pg_restore")))
			},
			wantErr:  []string{"db: ", "pg_restore", "(reverted: the live state is the old one)"},
			failed:   "db",
			reverted: []string{"db"},
		},
		{
			name: "disk full during extraction",
			opts: rigOpts{blob: 2 << 20},
			inject: func(t *testing.T, g *restoreRig, r *Restorer, id string) {
				// the data dir's filesystem keeps less free than the archive holds
				testenv.Fill(t, filepath.Dir(g.dataDir), 88)
			},
			wantErr:  []string{"data: ", "no space left on device", "(reverted: the live state is the old one)"},
			failed:   "data",
			reverted: []string{"data", "db"},
		},
		{
			name: "readiness never comes",
			inject: func(t *testing.T, g *restoreRig, r *Restorer, id string) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					http.Error(w, "not ready", http.StatusServiceUnavailable)
				}))
				t.Cleanup(srv.Close)
				r.ReadyURL, r.ReadyTimeout, r.ReadyInterval = srv.URL+"/readyz", time.Second, 200*time.Millisecond
			},
			wantErr:  []string{"ready: ", "/readyz not ready after 1s", "last: HTTP 503", "(reverted: the live state is the old one)"},
			failed:   "ready",
			reverted: []string{"data", "db"},
		},
		{
			name: "code rollback fails",
			opts: rigOpts{appImage: image},
			inject: func(t *testing.T, g *restoreRig, r *Restorer, id string) {
				r.Code = NewCommandCode(`[ "$ACTION" = revert ] && exit 0; echo "deploy: registry unreachable" >&2; exit 1`, filepath.Join(g.stateDir, "restores"))
			},
			wantErr:  []string{"code: ", "registry unreachable", "(reverted: the live state is the old one)"},
			failed:   "code",
			reverted: []string{"code", "data", "db"},
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Contains(c.name, "disk full") {
				c.opts.dataParent = testenv.Tmpfs(t, "6m")
			}
			g := newRestoreRig(t, pg, fmt.Sprintf("fail%d", i), c.opts)
			id := g.backup(t)
			g.deploy(t)
			r := g.restorer(t, nil)
			c.inject(t, g, r, id)
			sums, tree := g.sums(t, ""), rigTree(t, g.dataDir)

			res, err := r.Restore(t.Context(), Request{Snapshot: id, Reason: "test"})
			if err == nil {
				t.Fatalf("Restore succeeded: %+v", res)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Restore error = %q\nwant it to contain %q", err, w)
				}
			}
			if !res.Reverted {
				t.Errorf("Result.Reverted = false, want true")
			}
			g.assertWhollyOld(t, "after the failed restore", sums, tree)

			var want []string
			for _, s := range []string{"db", "data", "code", "ready"} {
				want = append(want, s+" start")
				if s == c.failed {
					want = append(want, s+" failed")
					break
				}
				want = append(want, s+" ok")
			}
			if c.failed == "ready" { // NoCode: no code step
				want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "code ") })
			}
			for _, s := range c.reverted {
				want = append(want, s+" reverted")
			}
			if got := g.steps(t, res.Txn); strings.Join(got, ",") != "start start,"+strings.Join(want, ",") {
				t.Errorf("rollback log:\n got %v\nwant %v", got, append([]string{"start start"}, want...))
			}
			// The record says reverted: probe revert has nothing left to do.
			if _, err := g.restorer(t, nil).Revert(t.Context(), res.Txn); err == nil || !strings.Contains(err.Error(), "already reverted") {
				t.Errorf("Revert after the automatic revert: %v, want already reverted", err)
			}
		})
	}
}

// TestRestorePostgresStoppedMidRestore stops the server while pg_restore
// fills the scratch database: the automatic revert cannot reach it and
// says so; once the server is back, Revert leaves it wholly old.
func TestRestorePostgresStoppedMidRestore(t *testing.T) {
	pg := testenv.Postgres(t)
	g := newRestoreRig(t, pg, "stopped", rigOpts{rows: 20000})
	id := g.backup(t)
	g.deploy(t)
	sums, tree := g.sums(t, ""), rigTree(t, g.dataDir)
	r := g.restorer(t, nil)

	// Stop the server while pg_restore copies rows into the scratch database.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopped := make(chan string, 1)
	go func() {
		defer close(stopped)
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			stopped <- "watcher: " + err.Error()
			return
		}
		for ctx.Err() == nil {
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, $1) AND query LIKE 'COPY %'", g.db+"_restore_").Scan(&n); err != nil {
				stopped <- "watcher: " + err.Error()
				return
			}
			if n > 0 {
				conn.Close(context.Background())
				pg.Stop(t)
				stopped <- "stopped"
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res, err := r.Restore(t.Context(), Request{Snapshot: id})
	cancel()
	if s := <-stopped; s != "stopped" {
		t.Fatalf("the server was not stopped mid-restore: %q (restore: %v)", s, err)
	}
	if err == nil {
		t.Fatalf("Restore succeeded with the server stopped: %+v", res)
	}
	t.Logf("restore error: %v", err)
	for _, w := range []string{"db: pg_restore into " + r.DB.Scratch(res.Txn) + ": ", "`probe revert " + res.Txn + "` drops it", "; revert: revert db: "} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Restore error = %q, want it to contain %q", err, w)
		}
	}
	if res.Reverted {
		t.Errorf("Result.Reverted = true with the server down")
	}
	if got := strings.Join(g.steps(t, res.Txn), ","); got != "start start,db start,db failed,db failed" {
		t.Errorf("rollback log: %s", got)
	}
	// The live data dir was never touched.
	diffMaps(t, "data dir with the server down", tree, rigTree(t, g.dataDir))

	pg.Start(t)
	rv, err := g.restorer(t, nil).Revert(t.Context(), res.Txn)
	if err != nil || !rv.Reverted {
		t.Fatalf("Revert once the server is back: %+v, %v", rv, err)
	}
	g.assertWhollyOld(t, "after probe revert", sums, tree)
	if pre := g.stateDBs(t, "pre"); len(pre) > 0 {
		t.Errorf("pre-state databases %v: the live one was never swapped out", pre)
	}
}

// TestRestoreRefusesTamperedSnapshot: a damaged snapshot is refused
// before anything changes: no scratch database, no staging directory, no
// pre-restore snapshot, no restore record, no ROLLBACK line.
func TestRestoreRefusesTamperedSnapshot(t *testing.T) {
	pg := testenv.Postgres(t)
	g := newRestoreRig(t, pg, "tamper", rigOpts{})
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string
	}{
		{"byte flipped in db.dump.zst", func(t *testing.T, dir string) {
			p := filepath.Join(dir, manifest.DBFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x40
			rigWrite(t, p, data, 0o600)
		}, "refusing to restore: snapshot failed verification: %s: db.dump.zst: "},
		{"byte flipped in data.tar.zst", func(t *testing.T, dir string) {
			p := filepath.Join(dir, manifest.DataFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/3] ^= 0x01
			rigWrite(t, p, data, 0o600)
		}, "refusing to restore: snapshot failed verification: %s: data.tar.zst: "},
		{"manifest.json edited", func(t *testing.T, dir string) {
			p := filepath.Join(dir, manifest.ManifestFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			m["notes"] = "edited by hand"
			data, _ = json.Marshal(m)
			rigWrite(t, p, data, 0o600)
		}, "refusing to restore: snapshot failed verification: %s: manifest.json: differs from the catalog's copy (edited?)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := g.backup(t)
			c.tamper(t, filepath.Join(g.backupDir, id))
			sums, tree, snaps := g.sums(t, ""), rigTree(t, g.dataDir), g.snapshots(t)

			res, err := g.restorer(t, nil).Restore(t.Context(), Request{Snapshot: id})
			if want := fmt.Sprintf(c.want, id); err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Restore error = %v\nwant it to start with %q", err, want)
			}
			if !errors.Is(err, snapshot.ErrCorrupt) {
				t.Errorf("Restore error %v is not snapshot.ErrCorrupt", err)
			}
			g.assertWhollyOld(t, "after the refusal", sums, tree)
			if got := g.snapshots(t); !slices.Equal(got, snaps) {
				t.Errorf("snapshots after the refusal: %v, want %v (no pre-restore snapshot)", got, snaps)
			}
			if sib := g.siblings(t); len(sib) > 0 {
				t.Errorf("beside the data dir after the refusal: %v", sib)
			}
			if recs, _ := os.ReadDir(filepath.Join(g.stateDir, "restores")); len(recs) > 0 {
				t.Errorf("restore records after the refusal: %v", recs)
			}
			if got := g.steps(t, res.Txn); len(got) > 0 {
				t.Errorf("ROLLBACK lines after the refusal: %v", got)
			}
		})
	}
}

// TestRestoreLocked: a restore while a backup holds the lock is refused
// naming the holder; of two restores at once one runs, the other is refused.
func TestRestoreLocked(t *testing.T) {
	pg := testenv.Postgres(t)
	g := newRestoreRig(t, pg, "locked", rigOpts{})
	id := g.backup(t)
	v1Sums, v1Tree := g.sums(t, ""), rigTree(t, g.dataDir)
	g.deploy(t)
	sums, tree := g.sums(t, ""), rigTree(t, g.dataDir)

	t.Run("backup running", func(t *testing.T) {
		unlock, err := snapshot.Lock(g.backupDir, "backup")
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.restorer(t, nil).Restore(t.Context(), Request{Snapshot: id})
		unlock()
		var le *snapshot.LockedError
		if !errors.As(err, &le) || !errors.Is(err, snapshot.ErrLocked) {
			t.Fatalf("Restore during a backup: %v, want a LockedError", err)
		}
		if le.Op != "backup" || le.PID != os.Getpid() {
			t.Errorf("LockedError names %s pid %d, want backup pid %d", le.Op, le.PID, os.Getpid())
		}
		if want := fmt.Sprintf("another backup is running (pid %d, started ", os.Getpid()); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("message %q, want it to start with %q", err, want)
		}
		g.assertWhollyOld(t, "after the refusal", sums, tree)
	})

	t.Run("two restores", func(t *testing.T) {
		// The pre-restore hook holds the winner inside its restore until
		// the loser has been answered.
		gate := t.TempDir()
		hook := fmt.Sprintf(`touch %[1]s/in-$$; while [ ! -e %[1]s/go ]; do sleep 0.05; done`, gate)
		type out struct {
			res Result
			err error
		}
		outs := make(chan out, 2)
		for range 2 {
			r := g.restorer(t, nil)
			r.DB.Hook = hook
			go func() {
				res, err := r.Restore(context.WithoutCancel(t.Context()), Request{Snapshot: id})
				outs <- out{res, err}
			}()
		}
		first := <-outs
		// The winner gets to its hook; only then is it let go.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if f, _ := filepath.Glob(filepath.Join(gate, "in-*")); len(f) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if f, _ := filepath.Glob(filepath.Join(gate, "in-*")); len(f) != 1 {
			t.Errorf("hooks entered: %v, want exactly one", f)
		}
		os.WriteFile(filepath.Join(gate, "go"), nil, 0o600)
		second := <-outs
		// The loser may read the lock file before the winner wrote its
		// name in it: then the message names no holder.
		var le *snapshot.LockedError
		if !errors.As(first.err, &le) || (le.Op != "restore" && le.Op != "") {
			t.Errorf("the first to return: %v, want refused by the running restore", first.err)
		}
		if second.err != nil {
			t.Errorf("the restore that ran: %v", second.err)
		}
		diffMaps(t, "live database after the one restore", v1Sums, g.sums(t, ""))
		diffMaps(t, "data dir after the one restore", v1Tree, rigTree(t, g.dataDir))
	})
}

func mustCatalog(t *testing.T, dir string) *manifest.Catalog {
	t.Helper()
	cat, err := manifest.LoadCatalog(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestRestoreFromStoreAlone: with the local backup directory lost, the
// latest snapshot is found in the store, downloaded, verified and restored.
func TestRestoreFromStoreAlone(t *testing.T) {
	pg := testenv.Postgres(t)
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := newRestoreRig(t, pg, "offsite", rigOpts{store: st})
	id := g.backup(t)
	v1Sums, v1Tree := g.sums(t, ""), rigTree(t, g.dataDir)
	g.deploy(t)
	if err := os.RemoveAll(g.backupDir); err != nil {
		t.Fatal(err)
	}

	res, err := g.restorer(t, nil).Restore(t.Context(), Request{Snapshot: "latest"})
	if err != nil {
		t.Fatalf("Restore from the store: %v", err)
	}
	if res.Snapshot != id {
		t.Errorf("restored %s, want %s (the store's newest)", res.Snapshot, id)
	}
	diffMaps(t, "live database", v1Sums, g.sums(t, ""))
	diffMaps(t, "data dir", v1Tree, rigTree(t, g.dataDir))
	if m, ok := mustCatalog(t, g.backupDir).Find(id); !ok || m.Status != manifest.StatusVerified {
		t.Errorf("fetched snapshot in the catalog: %+v %v, want verified", m.Status, ok)
	}
}

// TestKilledRestoreThenRevert runs `probe restore` as a process and kills
// it (SIGKILL to its process group, as a service manager's kill does) at
// seeded random moments; after each, `probe revert TXN` (when the restore
// left a record) or nothing (when it did not) leaves the live database and
// data dir wholly old.
func TestKilledRestoreThenRevert(t *testing.T) {
	pg := testenv.Postgres(t)
	bin := buildProbe(t)
	g := newRestoreRig(t, pg, "killed", rigOpts{rows: 3000, blob: 1 << 20})
	id := g.backup(t)
	g.deploy(t)
	sums, tree := g.sums(t, ""), rigTree(t, g.dataDir)
	cfg := filepath.Join(t.TempDir(), "probe.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`host: %s
state_dir: %s
checks:
  - {name: disk, type: disk, paths: [%q]}
backup:
  dir: %s
  data_dir: %s
  database:
    dsn: %q
rollback:
  log: %s
`, rigHost, g.stateDir, g.backupDir, g.backupDir, g.dataDir, g.dsn, g.rollbackLog)), 0o600); err != nil {
		t.Fatal(err)
	}
	probe := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--config", cfg}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+pg.BinDir+":"+os.Getenv("PATH"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
	revert := func(txn string) {
		t.Helper()
		out, err := probe("revert", txn).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "restore "+txn+" reverted") {
			t.Fatalf("probe revert %s: %v\n%s", txn, err, out)
		}
	}
	records := func() []string {
		f, _ := filepath.Glob(filepath.Join(g.stateDir, "restores", "2*.json"))
		return f
	}

	// One whole run sets the span the kills are spread over.
	t0 := time.Now()
	if out, err := probe("restore", "--snapshot", id, "--yes").CombinedOutput(); err != nil {
		t.Fatalf("probe restore: %v\n%s", err, out)
	}
	span := time.Since(t0)
	if rec := records(); len(rec) != 1 {
		t.Fatalf("records after one restore: %v", rec)
	} else {
		revert(strings.TrimSuffix(filepath.Base(rec[0]), ".json"))
	}
	g.assertWhollyOld(t, "after a whole restore and its revert", sums, tree)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RESTORE_KILL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("whole restore took %s; kill seed %d (RESTORE_KILL_SEED=%d reproduces)", span.Round(time.Millisecond), seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for trial := range 10 {
		seen := records()
		delay := time.Duration(rng.Int64N(int64(span) * 9 / 10))
		if trial == 0 { // early enough that no record may exist yet
			delay /= 20
		}
		cmd := probe("restore", "--snapshot", id, "--yes")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err := cmd.Wait()
		var txn, state string
		for _, p := range records() {
			if !slices.Contains(seen, p) {
				txn = strings.TrimSuffix(filepath.Base(p), ".json")
				var rec struct {
					State string   `json:"state"`
					Done  []string `json:"done"`
				}
				data, _ := os.ReadFile(p)
				json.Unmarshal(data, &rec)
				state = fmt.Sprintf("%s %v", rec.State, rec.Done)
			}
		}
		t.Logf("trial %d: killed after %s (%v); record: %q %s", trial, delay.Round(time.Millisecond), err, txn, state)
		// A statement the killed probe sent (CREATE DATABASE, the swap's
		// renames) still runs to its end in its server backend; the
		// operator's revert comes after that.
		waitNoSessions(t, pg)
		if txn != "" {
			revert(txn)
		}
		g.assertWhollyOld(t, fmt.Sprintf("trial %d (killed after %s)", trial, delay.Round(time.Millisecond)), sums, tree)
		if t.Failed() {
			return
		}
	}
}

// waitNoSessions waits until no other client session is left on pg.
func waitNoSessions(t *testing.T, pg *testenv.PG) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatalf("%d sessions of the killed probe still on the server after 30s", n)
}

// buildProbe builds the probe binary.
func buildProbe(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", path, "backstop/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build backstop/probe: %v\n%s", err, out)
	}
	return path
}
