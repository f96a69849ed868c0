package snapshot

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"backstop/shared/alert"
	"backstop/shared/atomicfile"
	"backstop/shared/clip"
	"backstop/shared/manifest"
	"backstop/shared/store"
)

// ErrNoSpace is a backup refused before it began for lack of free space.
var ErrNoSpace = errors.New("not enough free space")

// Engine takes, lists, verifies, uploads and prunes the snapshots under Dir
// (BACKUP_DIR). Every method that changes Dir holds the backup/restore lock.
type Engine struct {
	Dir       string
	Host      string
	DSN       string // database to dump; "" = no database in snapshots
	Dumper    Dumper // runs pg_dump; required when DSN is set
	PgRestore string // pg_restore for verify; "" = look it up
	DataDir   string // "" = no data directory in snapshots
	AppDir    string // git work tree whose HEAD is the app revision; "" = none
	// AppImage returns the image of the running app container; nil = none.
	AppImage  func(ctx context.Context) (string, error)
	Store     store.Store // off-site copy; nil = local only
	Retention Retention
	// RollbackLog receives the seed's `BACKUP id=... status=...` lines; "" = none.
	RollbackLog string
	Log         *slog.Logger
	// Alert raises an event (the caller queues it); nil = none.
	Alert func(alert.Event)
	// Progress is a terminal for a progress line; nil = none.
	Progress io.Writer
	Level    zstd.EncoderLevel // 0 = DefaultLevel
	Now      func() time.Time  // nil = time.Now

	// SigningKeyFile is the host's Ed25519 key that signs manifests
	// (created by the first backup when missing); TrustedKeys are further
	// public keys a store snapshot's signature may verify with (a rotated
	// key, another host's). See signing().
	SigningKeyFile string
	TrustedKeys    []ed25519.PublicKey
	AllowUnsigned  bool // admit a store snapshot without manifest.sig
}

// Options are one backup's choices.
type Options struct {
	Trigger manifest.Trigger // default manual
	Notes   string
	// SkipRetention leaves every snapshot in place (a pre-restore snapshot
	// must not prune the one being restored).
	SkipRetention bool
	// SkipDB and SkipData leave a part out (a restore keeps that part's
	// pre-state by rename and needs no copy of it).
	SkipDB, SkipData bool
	Upload           bool // copy to Store in the same pass (when Store is set)
}

// Result is what one backup did.
type Result struct {
	Manifest  manifest.Manifest `json:"manifest"`
	Path      string            `json:"path"`
	Uploaded  bool              `json:"uploaded"`
	UploadErr string            `json:"upload_error,omitempty"`
	Removed   []string          `json:"removed,omitempty"` // by retention
	Duration  time.Duration     `json:"-"`
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) catalogPath() string { return filepath.Join(e.Dir, manifest.ManifestFile) }

func (e *Engine) key(id, file string) string {
	return e.Host + "/snapshots/" + id + "/" + file
}

// Backup takes one snapshot. It builds it in <id>.partial/, fsyncs every
// file and the directory, renames it to <id>/ and only then adds it to the
// catalog, so a backup that fails or is killed at any instant leaves nothing
// that List shows (the next backup removes the leftovers). With
// Options.Upload the dump and the archive go to the store in the same pass
// (no second read); a failed upload leaves the local snapshot complete and
// is reported in Result.UploadErr and as an alert event — Push retries it.
func (e *Engine) Backup(ctx context.Context, o Options) (res Result, err error) {
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return res, fmt.Errorf("create backup dir %s: %w", e.Dir, err)
	}
	unlock, err := Lock(e.Dir, "backup")
	if err != nil {
		return res, err
	}
	defer unlock()
	return e.BackupLocked(ctx, o)
}

// BackupLocked is Backup for a caller that already holds the lock (a
// restore taking its pre-restore snapshot).
func (e *Engine) BackupLocked(ctx context.Context, o Options) (res Result, err error) {
	start := e.now()
	if o.Trigger == "" {
		o.Trigger = manifest.TriggerManual
	}
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return res, fmt.Errorf("create backup dir %s: %w", e.Dir, err)
	}

	cat, err := e.reconcile()
	if err != nil {
		return res, err
	}
	id := manifest.NewID(start, rand.Reader)
	e.logLine("BACKUP id=%s status=start trigger=%s", id, o.Trigger)
	defer func() {
		if err != nil {
			e.logLine("BACKUP id=%s status=failed duration_ms=%d reason=%q", id, time.Since(start).Milliseconds(), clip.Middle(oneSpaced(err.Error()), 300))
			e.raise(alert.Event{Check: "backup", State: alert.Warn, Summary: "backup failed: " + clip.Middle(oneSpaced(err.Error()), 200),
				Detail: err.Error(), IncidentID: id, DedupKey: fmt.Sprintf("probe:%s:backup:%s:failed", e.Host, id)})
		}
	}()

	if err := e.preflightSpace(cat); err != nil {
		return res, err
	}
	m := manifest.Manifest{Schema: manifest.Schema, ID: id, Host: e.Host, CreatedAt: start.UTC(), Trigger: o.Trigger, Notes: o.Notes, Status: manifest.StatusComplete}
	var info Info
	var held *Held
	defer func() { held.Release() }()
	dumpDB := e.DSN != "" && !o.SkipDB
	archiveData := e.DataDir != "" && !o.SkipData
	if dumpDB {
		// The counts' transaction stays open until the dump is done: the
		// dump is taken at its exported snapshot, so they agree exactly.
		if info, held, err = InspectHeld(ctx, e.DSN); err != nil {
			return res, fmt.Errorf("preflight: %w", err)
		}
		if err := Preflight(ctx, e.Dumper, info.ServerMajor); err != nil {
			return res, err
		}
	}
	m.App = e.appInfo(ctx)

	partial := filepath.Join(e.Dir, id+".partial")
	if err := os.Mkdir(partial, 0o700); err != nil {
		return res, fmt.Errorf("create %s: %w", partial, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(partial)
		}
	}()
	up := o.Upload && e.Store != nil
	var upErrs []string
	prog := newProgress(e.Progress, e.expectedSize(cat))
	defer prog.done()

	if dumpDB {
		t0 := time.Now()
		_, full, _ := e.Dumper.Version(ctx)
		sum, uerr, err := e.produce(ctx, partial, manifest.DBFile, up, m.ID, prog.stage("db"), func(w io.Writer) error {
			if sd, ok := e.Dumper.(SnapshotDumper); ok && held != nil {
				return sd.DumpSnapshot(ctx, w, held.ID)
			}
			return e.Dumper.Dump(ctx, w)
		})
		if err != nil {
			return res, fmt.Errorf("dump database: %w", err)
		}
		held.Release()
		if uerr != nil {
			upErrs = append(upErrs, uerr.Error())
		}
		m.DB = &manifest.DB{Database: info.Database, ServerVersion: info.ServerVersion,
			Migration: manifest.Migration{Tool: info.Migration.Tool, Revision: info.Migration.Revision},
			File:      manifest.DBFile, Size: sum.Size, SHA256: sum.SHA256, Compression: manifest.CompressionZstd,
			Tables: info.Tables, DurationMS: time.Since(t0).Milliseconds(), PgDumpVersion: full}
	}
	if archiveData {
		t0 := time.Now()
		var st TarStats
		sum, uerr, err := e.produce(ctx, partial, manifest.DataFile, up, m.ID, prog.stage("data"), func(w io.Writer) error {
			var err error
			st, err = WriteTar(ctx, e.DataDir, w)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("archive data dir %s: %w", e.DataDir, err)
		}
		if uerr != nil {
			upErrs = append(upErrs, uerr.Error())
		}
		m.Data = &manifest.Data{Path: e.DataDir, File: manifest.DataFile, Size: sum.Size, SHA256: sum.SHA256,
			Entries: st.Entries, Compression: manifest.CompressionZstd, Changed: st.Changed, Skipped: st.Skipped,
			DurationMS: time.Since(t0).Milliseconds()}
	}
	if m.DB == nil && m.Data == nil {
		return res, errors.New("nothing to back up: set backup.database.dsn (or DATABASE_URL) and/or backup.data_dir")
	}
	if err := m.Validate(); err != nil {
		return res, fmt.Errorf("manifest: %w", err)
	}
	// The manifest is written last, then the directory is made durable
	// and renamed into place: from here on the snapshot exists.
	if err := e.writeManifest(partial, m); err != nil {
		return res, err
	}
	final := filepath.Join(e.Dir, id)
	if err := os.Rename(partial, final); err != nil {
		return res, fmt.Errorf("rename %s: %w", partial, err)
	}
	if err := atomicfile.SyncDir(e.Dir); err != nil {
		return res, err
	}
	res.Path = final

	if up && len(upErrs) == 0 {
		if err := e.putManifest(ctx, &m, final); err != nil {
			upErrs = append(upErrs, err.Error())
		}
	}
	if err := cat.Upsert(m); err != nil {
		return res, fmt.Errorf("catalog: %w", err)
	}
	if err := cat.Save(e.catalogPath()); err != nil {
		return res, fmt.Errorf("catalog: %w", err)
	}
	res.Manifest = m
	res.Uploaded = up && len(upErrs) == 0
	if len(upErrs) > 0 {
		res.UploadErr = strings.Join(upErrs, "; ")
		e.raise(alert.Event{Check: "backup-upload", State: alert.Warn,
			Summary: "snapshot " + id + " is local only: upload failed", Detail: res.UploadErr + "\nprobe push (or probe run) uploads it later.",
			IncidentID: id, DedupKey: fmt.Sprintf("probe:%s:backup-upload:%s:failed", e.Host, id)})
	}
	if !o.SkipRetention {
		res.Removed, err = e.applyRetention(cat)
	}
	if err != nil {
		// the snapshot is made; a pruning problem is reported, not fatal
		e.log().Warn("retention", "err", err)
		err = nil
	}
	res.Duration = time.Since(start)
	e.logLine("BACKUP id=%s status=complete size=%d duration_ms=%d uploaded=%t", id, totalSize(m), res.Duration.Milliseconds(), res.Uploaded)
	return res, nil
}

// produce writes one stored file of the snapshot: fill writes the raw
// stream, which is compressed and hashed in one pass into partial/name and,
// with upload, into the store at the same time. A failing upload is detached
// (the local file goes on) and returned as uerr; err fails the backup.
func (e *Engine) produce(ctx context.Context, partial, name string, upload bool, id string, prog io.Writer, fill func(io.Writer) error) (sum Sum, uerr, err error) {
	path := filepath.Join(partial, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return sum, nil, fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	var dst io.Writer = f
	var u *upstream
	if upload {
		u = e.startUpload(ctx, e.key(id, name))
		dst = &tee{local: f, up: u}
	}
	if prog != nil {
		dst = io.MultiWriter(dst, prog)
	}
	sink, err := NewSink(dst, e.level())
	if err != nil {
		u.abort()
		return sum, nil, err
	}
	ferr := fill(sink)
	cerr := sink.Close()
	if err := errors.Join(ferr, cerr); err != nil {
		u.abort()
		return sum, nil, err
	}
	if err := f.Sync(); err != nil {
		u.abort()
		return sum, nil, fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		u.abort()
		return sum, nil, fmt.Errorf("close %s: %w", path, err)
	}
	sum = sink.Sum()
	if u != nil {
		uerr = u.finish(sum)
	}
	return sum, uerr, nil
}

func (e *Engine) level() zstd.EncoderLevel {
	if e.Level == 0 {
		return DefaultLevel
	}
	return e.Level
}

// upstream is one object being uploaded from a pipe while it is produced.
type upstream struct {
	store store.Store
	ctx   context.Context // the backup's, for reading back a write-once conflict
	key   string
	pw    *io.PipeWriter
	done  chan struct{}
	obj   store.Object
	err   error
}

func (e *Engine) startUpload(ctx context.Context, key string) *upstream {
	pr, pw := io.Pipe()
	u := &upstream{key: key, pw: pw, done: make(chan struct{}), store: e.Store, ctx: ctx}
	go func() {
		defer close(u.done)
		u.obj, u.err = e.Store.Put(ctx, key, pr, store.PutOptions{Size: -1, ContentType: "application/zstd", IfNoneMatch: true})
		if u.err == nil {
			u.err = errors.New("upload ended before the stream did")
		}
		pr.CloseWithError(u.err) // unblocks a writer if Put gave up early
	}()
	return u
}

// abort ends the upload with an error so nothing is completed under key.
func (u *upstream) abort() {
	if u == nil {
		return
	}
	u.pw.CloseWithError(errors.New("backup failed"))
	<-u.done
}

// finish ends the stream and waits for the store; the object's SHA-256
// must equal the local file's.
func (u *upstream) finish(local Sum) error {
	u.pw.Close()
	<-u.done
	if errors.Is(u.err, store.ErrExists) {
		// a retried conditional Put can meet the object its first attempt wrote
		u.obj, u.err = sameObject(u.ctx, u.store, u.key, local.SHA256, u.err)
	}
	if u.obj.Key == "" && u.err != nil {
		return fmt.Errorf("upload %s: %w", u.key, u.err)
	}
	if u.obj.SHA256 != "" && u.obj.SHA256 != local.SHA256 {
		return fmt.Errorf("upload %s: stored SHA-256 %s differs from the local file's %s", u.key, u.obj.SHA256, local.SHA256)
	}
	return nil
}

// tee writes to the local file always and to the upload until the upload
// fails: a broken network never fails the local snapshot.
type tee struct {
	local  io.Writer
	up     *upstream
	failed bool
}

func (t *tee) Write(p []byte) (int, error) {
	n, err := t.local.Write(p)
	if err != nil {
		return n, err
	}
	if !t.failed {
		if _, err := t.up.pw.Write(p); err != nil {
			t.failed = true
		}
	}
	return n, nil
}

// putManifest uploads manifest.json last (its arrival marks the snapshot
// complete in the store) and records where it went.
func (e *Engine) putManifest(ctx context.Context, m *manifest.Manifest, dir string) error {
	// the store's copy never records where it is itself: a push retried
	// for a snapshot already there then writes the very same bytes
	stored := *m
	stored.Offsite = nil
	data, err := stored.Encode()
	if err != nil {
		return err
	}
	sig, err := e.signManifest(data)
	if err != nil {
		return err
	}
	if sig != nil {
		// before the manifest: its arrival tells the off-site function
		// the snapshot is complete, signature included
		if err := e.putBytesOnce(ctx, e.key(m.ID, manifest.SigFile), sig, "text/plain"); err != nil {
			return err
		}
	}
	key := e.key(m.ID, manifest.ManifestFile)
	if err := e.putBytesOnce(ctx, key, data, "application/json"); err != nil {
		return err
	}
	m.Offsite = &manifest.Offsite{Bucket: e.Store.String(), Key: key, At: e.now().UTC()}
	// the local copy records where the off-site one is
	return e.writeManifest(dir, *m)
}

// reconcile removes leftovers of killed backups (*.partial) and adopts a
// complete snapshot whose catalog update was lost to a crash.
func (e *Engine) reconcile() (*manifest.Catalog, error) {
	cat, err := manifest.LoadCatalog(e.catalogPath())
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", e.catalogPath(), err)
	}
	if cat.Host == "" {
		cat.Host = e.Host
	}
	ents, err := os.ReadDir(e.Dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Dir, err)
	}
	changed := false
	for _, ent := range ents {
		name := ent.Name()
		switch {
		case strings.HasPrefix(name, "."+manifest.ManifestFile+".tmp-"):
			// a catalog save cut short (atomicfile's temp file)
			if err := os.Remove(filepath.Join(e.Dir, name)); err != nil {
				return nil, fmt.Errorf("remove leftover %s: %w", name, err)
			}
		case strings.HasSuffix(name, ".partial"):
			e.log().Info("removing the leftover of an interrupted backup", "dir", name)
			if err := os.RemoveAll(filepath.Join(e.Dir, name)); err != nil {
				return nil, fmt.Errorf("remove leftover %s: %w", name, err)
			}
		case ent.IsDir():
			if _, err := manifest.ParseID(name); err != nil {
				continue
			}
			if _, ok := cat.Find(name); ok {
				continue
			}
			data, err := os.ReadFile(filepath.Join(e.Dir, name, manifest.ManifestFile))
			if err != nil {
				continue
			}
			m, err := manifest.Decode(data)
			if err != nil || m.ID != name {
				continue
			}
			if err := cat.Upsert(m); err == nil {
				changed = true
			}
		}
	}
	if changed {
		if err := cat.Save(e.catalogPath()); err != nil {
			return nil, err
		}
	}
	return cat, nil
}

// preflightSpace refuses a backup when the backup dir's free space is below
// 1.2 × the newest snapshot's size.
func (e *Engine) preflightSpace(cat *manifest.Catalog) error {
	last, ok := cat.Newest(nil)
	if !ok {
		return nil
	}
	need := int64(float64(totalSize(last)) * 1.2)
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.Dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", e.Dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w in %s: %s free, the last snapshot took %s (need 1.2×: %s)", ErrNoSpace, e.Dir,
			HumanSize(free), HumanSize(totalSize(last)), HumanSize(need))
	}
	return nil
}

func (e *Engine) expectedSize(cat *manifest.Catalog) int64 {
	if last, ok := cat.Newest(nil); ok {
		return totalSize(last)
	}
	return 0
}

// applyRetention removes what the policy lets go. It runs under the lock,
// so no restore is using a snapshot meanwhile. The catalog drops the
// snapshots first; then each directory is renamed to <id>.partial and
// removed. A crash at any point thus never leaves a listed snapshot
// without its files, nor a half-removed <id>/ that reconcile would adopt:
// a leftover <id>.partial is removed by the next backup, and a whole <id>/
// not yet renamed is adopted again and pruned again.
func (e *Engine) applyRetention(cat *manifest.Catalog) ([]string, error) {
	_, remove := PlanRetention(cat.Snapshots, e.Retention, e.now(), nil)
	if len(remove) == 0 {
		return nil, nil
	}
	for _, id := range remove {
		cat.Remove(id)
	}
	if err := cat.Save(e.catalogPath()); err != nil {
		return nil, err
	}
	var errs []error
	var removed []string
	for _, id := range remove {
		dir := filepath.Join(e.Dir, id)
		if err := os.Rename(dir, dir+".partial"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove snapshot %s: %w", id, err))
			continue
		}
		if err := os.RemoveAll(dir + ".partial"); err != nil {
			errs = append(errs, fmt.Errorf("remove snapshot %s: %w", id, err))
			continue
		}
		removed = append(removed, id)
		e.logLine("BACKUP id=%s status=pruned", id)
	}
	return removed, errors.Join(errs...)
}

// appInfo records the app's revision: HEAD of the app dir's git work tree
// and the running app container's image. Either may be missing; that is
// logged, not fatal.
func (e *Engine) appInfo(ctx context.Context) manifest.App {
	var app manifest.App
	if e.AppDir != "" {
		out, err := exec.CommandContext(ctx, "git", "-C", e.AppDir, "rev-parse", "HEAD").Output()
		if err != nil {
			e.log().Warn("app revision: git rev-parse HEAD failed", "dir", e.AppDir, "err", err)
		} else {
			app.Revision = strings.TrimSpace(string(out))
		}
	}
	if e.AppImage != nil {
		img, err := e.AppImage(ctx)
		if err != nil {
			e.log().Warn("app image", "err", err)
		} else {
			app.Image = img
			if app.Revision == "" {
				if _, tag, ok := strings.Cut(img, ":"); ok {
					app.Revision = tag
				}
			}
		}
	}
	return app
}

func (e *Engine) raise(ev alert.Event) {
	if e.Alert == nil {
		return
	}
	ev.Source, ev.Host, ev.At = "probe", e.Host, e.now().UTC()
	e.Alert(ev)
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return e.Log
}

// logLine appends one line in the seed's format to the rollback log.
func (e *Engine) logLine(format string, args ...any) {
	if e.RollbackLog == "" {
		return
	}
	line := e.now().UTC().Format(time.RFC3339) + " " + fmt.Sprintf(format, args...) + "\n"
	if err := os.MkdirAll(filepath.Dir(e.RollbackLog), 0o700); err != nil {
		e.log().Warn("rollback log", "err", err)
		return
	}
	f, err := os.OpenFile(e.RollbackLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		e.log().Warn("rollback log", "err", err)
		return
	}
	defer f.Close()
	f.WriteString(line)
}

// oneSpaced collapses every run of white space (newlines included) to one
// space.
func oneSpaced(s string) string { return strings.Join(strings.Fields(s), " ") }

// HumanSize formats bytes for people: "512 B", "1.5 MiB".
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// totalSize is the bytes a snapshot's stored files take.
func totalSize(m manifest.Manifest) int64 {
	var n int64
	if m.DB != nil {
		n += m.DB.Size
	}
	if m.Data != nil {
		n += m.Data.Size
	}
	return n
}
