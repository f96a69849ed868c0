package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"backstop/shared/alert"
	"backstop/shared/manifest"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// appDB makes a pgbench database with random text in filler (realistic
// compression) plus an alembic revision, and returns its DSN.
func appDB(t *testing.T, pg *testenv.PG, name string) string {
	t.Helper()
	pg.CreateDB(t, name)
	dsn := pg.DSN(name)
	cmd := exec.Command(pg.Bin("pgbench"), "-i", "-s", "1", "-q", dsn)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pg.Exec(t, name, `UPDATE pgbench_accounts SET filler = substr(md5(random()::text) || md5(random()::text), 1, 60) WHERE aid % 4 = 0`)
	pg.Exec(t, name, `CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('0042_add_visits')`)
	return dsn
}

// dataTree makes a data dir with what a real one holds: nested dirs, an
// empty dir, symlinks (to a file, to a dir, dangling), unicode names, an
// empty file and a large random one.
func dataTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "uploads/2026/11"), 0o750))
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "uploads/2026/11/カルテ_山田.pdf"), []byte("%PDF-1.4 patient record"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o600))
	big := make([]byte, 3<<20)
	rand.Read(big)
	must(os.WriteFile(filepath.Join(dir, "uploads/scan.bin"), big, 0o644))
	must(os.Symlink("uploads/2026/11/カルテ_山田.pdf", filepath.Join(dir, "latest.pdf")))
	must(os.Symlink("uploads", filepath.Join(dir, "uploads-link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	old := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "empty.txt"), old, old))
	return dir
}

type events struct {
	mu  sync.Mutex
	evs []alert.Event
}

func (e *events) add(ev alert.Event) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }
func (e *events) checks() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		out = append(out, ev.Check)
	}
	return out
}

func newEngine(t *testing.T, dsn, data string) (*Engine, *events) {
	t.Helper()
	d, err := NewHostDumper(dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	e := &Engine{Dir: filepath.Join(t.TempDir(), "backups"), Host: "test-host", DSN: dsn, Dumper: d, DataDir: data,
		Retention: Retention{Count: 14, Days: 30}, RollbackLog: filepath.Join(t.TempDir(), "rollback.log"), Alert: ev.add}
	return e, ev
}

// tableSums is an order-independent checksum of every table's content.
func tableSums(t *testing.T, dsn string, tables map[string]int64) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	out := map[string]string{}
	for name := range tables {
		ident := pgx.Identifier(strings.Split(name, "."))
		var sum string
		q := fmt.Sprintf(`SELECT coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), 'empty') FROM %s x`, ident.Sanitize())
		if err := conn.QueryRow(ctx, q).Scan(&sum); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out[name] = sum
	}
	return out
}

// restoreByHand does what an operator would without backstop: zstd -d |
// pg_restore into a fresh database, and untar into a fresh directory.
func restoreByHand(t *testing.T, pg *testenv.PG, snapDir string, m manifest.Manifest) (dsn, dir string) {
	t.Helper()
	pg.CreateDB(t, "restored")
	dsn = pg.DSN("restored")
	f, err := os.Open(filepath.Join(snapDir, m.DB.File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, _ := zstd.NewReader(f)
	defer dec.Close()
	cmd := exec.Command(pg.Bin("pg_restore"), "--no-owner", "--exit-on-error", "-d", dsn)
	cmd.Stdin = dec
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	dir = filepath.Join(t.TempDir(), "restored-data")
	untar(t, filepath.Join(snapDir, m.Data.File), dir)
	return dsn, dir
}

func untar(t *testing.T, path, dest string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, _ := zstd.NewReader(f)
	defer dec.Close()
	tr := tar.NewReader(dec)
	os.MkdirAll(dest, 0o700)
	var dirs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dest, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o700)
			dirs = append(dirs, h)
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o700)
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, fs.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, fs.FileMode(h.Mode).Perm())
			os.Chtimes(p, h.ModTime, h.ModTime)
		}
	}
	for _, h := range dirs {
		p := filepath.Join(dest, h.Name)
		os.Chmod(p, fs.FileMode(h.Mode).Perm())
		os.Chtimes(p, h.ModTime, h.ModTime)
	}
}

// treeOf describes a tree: per path its kind, mode, mtime, content hash or
// link target.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v", info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			desc += fmt.Sprintf(" %d %s %s", len(b), hex.EncodeToString(sum[:8]), info.ModTime().UTC().Truncate(time.Second).Format(time.RFC3339))
		case info.IsDir():
			desc += " " + info.ModTime().UTC().Truncate(time.Second).Format(time.RFC3339)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupRoundTrip(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := appDB(t, pg, "app")
	data := dataTree(t)
	e, ev := newEngine(t, dsn, data)
	ctx := context.Background()

	res, err := e.Backup(ctx, Options{Notes: "before deploy"})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.DB == nil || m.Data == nil || m.Status != manifest.StatusComplete || m.Notes != "before deploy" {
		t.Fatalf("manifest = %+v", m)
	}
	if m.DB.Tables["public.pgbench_accounts"] != 100000 || m.DB.Migration.Tool != "alembic" || m.DB.Migration.Revision != "0042_add_visits" {
		t.Errorf("db facts = %+v", m.DB)
	}
	if len(ev.checks()) != 0 {
		t.Errorf("events on a good backup: %v", ev.checks())
	}
	// Files 0600, directories 0700.
	for _, p := range []string{res.Path, filepath.Join(res.Path, m.DB.File), filepath.Join(res.Path, m.Data.File), filepath.Join(res.Path, manifest.ManifestFile), e.catalogPath()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	list, _ := e.List()
	if len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("list = %v", list)
	}
	vr, err := e.Verify(ctx, m.ID)
	if err != nil || !vr.OK {
		t.Fatalf("verify: %+v %v", vr, err)
	}
	list, _ = e.List()
	if list[0].Status != manifest.StatusVerified {
		t.Errorf("verify did not mark the catalog: %s", list[0].Status)
	}

	rdsn, rdir := restoreByHand(t, pg, res.Path, m)
	want, got := tableSums(t, dsn, m.DB.Tables), tableSums(t, rdsn, m.DB.Tables)
	for table, sum := range want {
		if got[table] != sum {
			t.Errorf("table %s differs after restore", table)
		}
	}
	wantTree, gotTree := treeOf(t, data), treeOf(t, rdir)
	if len(wantTree) != len(gotTree) {
		t.Errorf("tree has %d entries, restored %d", len(wantTree), len(gotTree))
	}
	for p, d := range wantTree {
		if gotTree[p] != d {
			t.Errorf("%s: %q, restored %q", p, d, gotTree[p])
		}
	}
	log, _ := os.ReadFile(e.RollbackLog)
	for _, want := range []string{"BACKUP id=" + m.ID + " status=start", "BACKUP id=" + m.ID + " status=complete size="} {
		if !strings.Contains(string(log), want) {
			t.Errorf("rollback log lacks %q:\n%s", want, log)
		}
	}
}

func TestVerifyNamesTheFileAtFault(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := appDB(t, pg, "app")
	e, _ := newEngine(t, dsn, dataTree(t))
	ctx := context.Background()
	res, err := e.Backup(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(path string, off int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		f.ReadAt(b, off)
		b[0] ^= 0x01
		f.WriteAt(b, off)
	}
	for _, c := range []struct {
		file string
		off  func(size int64) int64
	}{
		{manifest.DBFile, func(n int64) int64 { return n / 2 }},
		{manifest.DBFile, func(n int64) int64 { return n - 1 }},
		{manifest.DataFile, func(n int64) int64 { return n / 3 }},
		{manifest.DataFile, func(int64) int64 { return 0 }},
		{manifest.ManifestFile, func(n int64) int64 { return n / 2 }},
	} {
		path := filepath.Join(res.Path, c.file)
		fi, _ := os.Stat(path)
		off := c.off(fi.Size())
		t.Run(fmt.Sprintf("%s@%d", c.file, off), func(t *testing.T) {
			flip(path, off)
			defer flip(path, off)
			r, err := e.Verify(ctx, res.Manifest.ID)
			if !errors.Is(err, ErrCorrupt) || r.OK {
				t.Fatalf("verify passed a flipped byte: %+v %v", r, err)
			}
			if !strings.Contains(err.Error(), c.file) {
				t.Errorf("error does not name %s: %v", c.file, err)
			}
		})
	}
	// flipped back: whole again
	if _, err := e.Verify(ctx, res.Manifest.ID); err != nil {
		t.Fatalf("verify after restoring the bytes: %v", err)
	}
	// An edited manifest (a row count changed, checksums left) is caught too.
	mp := filepath.Join(res.Path, manifest.ManifestFile)
	b, _ := os.ReadFile(mp)
	edited := bytes.Replace(b, []byte(`"public.pgbench_branches": 1`), []byte(`"public.pgbench_branches": 2`), 1)
	if bytes.Equal(b, edited) {
		t.Fatalf("test setup: manifest holds no pgbench_branches count:\n%s", b)
	}
	os.WriteFile(mp, edited, 0o600)
	if _, err := e.Verify(ctx, res.Manifest.ID); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("edited manifest passed: %v", err)
	}
}

func s3Store(t *testing.T, srv *testenv.S3Server) *store.S3 {
	t.Helper()
	s, err := store.NewS3(context.Background(), store.S3Config{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true, PartSize: store.MinPartSize,
		MaxAttempts: 2, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// remoteSum downloads an object and hashes it.
func remoteSum(t *testing.T, s store.Store, key string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	io.Copy(h, rc)
	return hex.EncodeToString(h.Sum(nil))
}

func TestBackupUploadsInTheSamePass(t *testing.T) {
	pg := testenv.Postgres(t)
	srv := testenv.S3(t)
	e, _ := newEngine(t, appDB(t, pg, "app"), dataTree(t))
	e.Store = s3Store(t, srv)
	ctx := context.Background()
	res, err := e.Backup(ctx, Options{Upload: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Uploaded || res.UploadErr != "" || res.Manifest.Offsite == nil {
		t.Fatalf("uploaded=%v err=%q offsite=%v", res.Uploaded, res.UploadErr, res.Manifest.Offsite)
	}
	m := res.Manifest
	if got := remoteSum(t, e.Store, e.key(m.ID, m.DB.File)); got != m.DB.SHA256 {
		t.Errorf("S3 db.dump.zst sha %s, manifest %s", got, m.DB.SHA256)
	}
	if got := remoteSum(t, e.Store, e.key(m.ID, m.Data.File)); got != m.Data.SHA256 {
		t.Errorf("S3 data.tar.zst sha %s, manifest %s", got, m.Data.SHA256)
	}
	remote, err := e.ListRemote(ctx)
	if err != nil || len(remote) != 1 || remote[0].ID != m.ID {
		t.Fatalf("ListRemote = %v, %v", remote, err)
	}
	local, _ := e.List()
	if local[0].Offsite == nil {
		t.Errorf("catalog does not record the off-site copy")
	}
}

// stopMidway is the real S3 store; it stops the real server once a Put has
// streamed more than after bytes.
type stopMidway struct {
	store.Store
	after int64
	stop  func()
	once  sync.Once
}

type countingReader struct {
	r    io.Reader
	n    atomic.Int64
	hook func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.hook(c.n.Add(int64(n)))
	return n, err
}

func (s *stopMidway) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (store.Object, error) {
	cr := &countingReader{r: r, hook: func(n int64) {
		if n > s.after {
			s.once.Do(s.stop)
		}
	}}
	return s.Store.Put(ctx, key, cr, o)
}

func TestUploadFailureKeepsLocalSnapshotAndPushCompletes(t *testing.T) {
	pg := testenv.Postgres(t)
	srv := testenv.S3(t)
	e, ev := newEngine(t, appDB(t, pg, "app"), dataTree(t))
	real := s3Store(t, srv)
	e.Store = &stopMidway{Store: real, after: 1 << 20, stop: func() { srv.Stop(t) }}
	ctx := context.Background()

	res, err := e.Backup(ctx, Options{Upload: true})
	if err != nil {
		t.Fatalf("backup failed with S3 down; the local snapshot must still be made: %v", err)
	}
	if res.Uploaded || res.UploadErr == "" || res.Manifest.Offsite != nil {
		t.Fatalf("uploaded=%v err=%q", res.Uploaded, res.UploadErr)
	}
	if got := ev.checks(); len(got) != 1 || got[0] != "backup-upload" {
		t.Errorf("events = %v, want one backup-upload", got)
	}
	if _, err := e.Verify(ctx, res.Manifest.ID); err != nil {
		t.Fatalf("local snapshot after a failed upload: %v", err)
	}

	srv.Start(t)
	e.Store = real
	if remote, err := e.ListRemote(ctx); err != nil || len(remote) != 0 {
		t.Fatalf("an incomplete upload is listed remotely: %v %v", remote, err)
	}
	pushed, err := e.Push(ctx, "")
	if err != nil || len(pushed) != 1 || pushed[0] != res.Manifest.ID {
		t.Fatalf("push = %v, %v", pushed, err)
	}
	m := res.Manifest
	if got := remoteSum(t, real, e.key(m.ID, m.DB.File)); got != m.DB.SHA256 {
		t.Errorf("pushed db sha %s, manifest %s", got, m.DB.SHA256)
	}
	if got := remoteSum(t, real, e.key(m.ID, m.Data.File)); got != m.Data.SHA256 {
		t.Errorf("pushed data sha %s, manifest %s", got, m.Data.SHA256)
	}
	remote, err := e.ListRemote(ctx)
	if err != nil || len(remote) != 1 {
		t.Fatalf("after push ListRemote = %v, %v", remote, err)
	}
	if pushed, err := e.Push(ctx, ""); err != nil || len(pushed) != 0 {
		t.Errorf("second push uploaded again: %v %v", pushed, err)
	}
}

// TestCountsMatchTheDumpUnderWrites inserts rows without pause during a
// backup: the manifest's row counts must equal what the dump holds (the
// dump is taken at the counting transaction's exported snapshot), or a
// restore's exact validation would refuse a good snapshot.
func TestCountsMatchTheDumpUnderWrites(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := appDB(t, pg, "app")
	pg.Exec(t, "app", "CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
	e, _ := newEngine(t, dsn, dataTree(t))
	ctx, cancel := context.WithCancel(context.Background())
	var inserted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, "INSERT INTO visits DEFAULT VALUES"); err == nil {
				inserted.Add(1)
			}
		}
	}()
	for inserted.Load() < 50 { // writes are under way before the backup starts
		time.Sleep(10 * time.Millisecond)
	}
	before := inserted.Load()
	res, err := e.Backup(context.Background(), Options{})
	during := inserted.Load() - before
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if during == 0 {
		t.Fatal("test setup: no rows were written during the backup")
	}
	t.Logf("%d rows inserted while the backup ran", during)
	rdsn, _ := restoreByHand(t, pg, res.Path, res.Manifest)
	conn, err := pgx.Connect(context.Background(), rdsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	conn.QueryRow(context.Background(), "SELECT count(*) FROM visits").Scan(&n)
	if want := res.Manifest.DB.Tables["public.visits"]; n != want {
		t.Fatalf("dump holds %d visits, the manifest counted %d", n, want)
	}
}
