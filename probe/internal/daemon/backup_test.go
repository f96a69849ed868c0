package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backstop/probe/internal/config"
	"backstop/shared/manifest"
	"backstop/shared/testenv"
)

// TestScheduledBackupIsVerified runs the daemon's backup job (what the
// cron schedule triggers) and checks that it leaves a verified snapshot in
// the catalog; a failing one queues an alert event.
func TestScheduledBackupIsVerified(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.CreateDB(t, "app")
	pg.Exec(t, "app", "CREATE TABLE users (id int); INSERT INTO users VALUES (1), (2)")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("hello"), 0o600)
	y := fmt.Sprintf(`
host: test-host
state_dir: %s/state
listen: 127.0.0.1:0
checks:
  - {name: d, type: disk, paths: [/]}
alerts: {via: dir, dir: %s/mail}
backup: {dir: %s/backups, database: {dsn: "%s"}, data_dir: %s}
rollback: {log: %s/rollback.log}
`, dir, dir, dir, pg.DSN("app"), data, dir)
	cfg, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	d.backup(context.Background())
	cat, err := manifest.LoadCatalog(filepath.Join(dir, "backups", manifest.ManifestFile))
	if err != nil || len(cat.Snapshots) != 1 {
		t.Fatalf("catalog = %+v, %v", cat, err)
	}
	m := cat.Snapshots[0]
	if m.Trigger != manifest.TriggerSchedule || m.Status != manifest.StatusVerified {
		t.Errorf("snapshot trigger %s status %s, want schedule/verified", m.Trigger, m.Status)
	}
	if p, _ := d.box.Pending(); len(p) != 0 {
		t.Errorf("events queued for a good backup: %+v", p)
	}

	// The database goes away: the next scheduled backup fails and says so.
	pg.Stop(t)
	d.backup(context.Background())
	mails, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	var subjects []string
	for _, p := range mails {
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Subject: ") {
				subjects = append(subjects, l)
			}
		}
	}
	if len(subjects) != 1 || !strings.Contains(subjects[0], "[WARN] test-host backup") {
		t.Fatalf("mails after a failed backup: %v", subjects)
	}
}
