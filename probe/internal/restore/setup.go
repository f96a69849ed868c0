package restore

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/moby/moby/client"

	"backstop/probe/internal/config"
	"backstop/probe/internal/snapshot"
)

// FromConfig builds the restorer the config describes over snap (from
// snapshot.FromConfig).
func FromConfig(ctx context.Context, cfg *config.Config, snap *snapshot.Engine, log *slog.Logger) (*Restorer, error) {
	rb := cfg.Rollback
	r := &Restorer{
		Snap: snap, DataDir: cfg.Backup.DataDir, ReadyURL: rb.ReadyURL,
		ReadyTimeout: rb.Timeout.D(), ReadyInterval: rb.Interval.D(), RollbackLog: rb.Log,
		StateDir: cfg.StateDir, KeepPre: rb.KeepPre, Log: log,
	}
	if dsn := cfg.Backup.Database.DSN.Reveal(); dsn != "" {
		r.DB = &DB{DSN: dsn, Hook: rb.DBHook, HookEnv: rb.Env, Log: log, TempDir: cfg.Backup.Dir}
	}
	codeState := filepath.Join(cfg.StateDir, "restores")
	switch rb.Code.Strategy {
	case "docker":
		r.ReadyHost = rb.Code.Proxy.Host // kamal-proxy routes by host
		d, err := client.New(client.FromEnv)
		if err != nil {
			return nil, err
		}
		r.Code = NewDockerCode(d, cfg.Backup.App.Container, rb.Code.Port,
			ProxyConfig{Container: rb.Code.Proxy.Container, Service: rb.Code.Proxy.Service, Host: rb.Code.Proxy.Host},
			codeState, max(rb.Timeout.D(), 30*time.Second))
	case "git":
		g := NewGitCode(cfg.Backup.App.Dir, rb.Code.Restart, codeState)
		g.Env = rb.Env
		r.Code = g
	case "command":
		c := NewCommandCode(rb.Code.Command, codeState)
		c.Env = rb.Env
		r.Code = c
	default:
		r.Code = NoCode()
	}
	return r, nil
}
