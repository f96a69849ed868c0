package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/moby/moby/client"

	"backstop/probe/internal/config"
	"backstop/probe/internal/containers"
	"backstop/shared/store"
)

// NewStore opens the configured off-site store; nil when none is set.
func NewStore(ctx context.Context, c config.Store) (store.Store, error) {
	switch {
	case c.S3 != nil:
		s, err := store.NewS3(ctx, store.S3Config{Bucket: c.S3.Bucket, Region: c.S3.Region, Endpoint: c.S3.Endpoint,
			Prefix: c.S3.Prefix, PathStyle: c.S3.Endpoint != ""})
		if err != nil {
			return nil, fmt.Errorf("store s3://%s: %w", c.S3.Bucket, err)
		}
		return s, nil
	case c.Dir != "":
		s, err := store.NewDir(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", c.Dir, err)
		}
		return s, nil
	}
	return nil, nil
}

// FromConfig builds the engine the config describes. The Docker client is
// made only when the dump runs in a container or the app has a container.
func FromConfig(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Engine, error) {
	b := cfg.Backup
	e := &Engine{
		Dir: b.Dir, Host: cfg.Host, DSN: b.Database.DSN.Reveal(), DataDir: b.DataDir, AppDir: b.App.Dir,
		Retention: Retention{Count: b.Retention.Count, Days: b.Retention.Days}, RollbackLog: cfg.Rollback.Log, Log: log,
		SigningKeyFile: b.SigningKeyFile, TrustedKeys: b.TrustedKeys(),
	}
	var docker *client.Client
	dockerClient := func() (*client.Client, error) {
		if docker != nil {
			return docker, nil
		}
		c, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		docker = c
		return c, nil
	}
	if e.DSN != "" {
		if name, ok := strings.CutPrefix(b.Database.PgDump, "container:"); ok {
			d, err := dockerClient()
			if err != nil {
				return nil, err
			}
			if e.Dumper, err = NewContainerDumper(d, name, e.DSN); err != nil {
				return nil, err
			}
		} else {
			d, err := NewHostDumper(e.DSN, "")
			if err != nil {
				return nil, err
			}
			e.Dumper = d
		}
	}
	if name := b.App.Container; name != "" {
		d, err := dockerClient()
		if err != nil {
			return nil, err
		}
		e.AppImage = func(ctx context.Context) (string, error) {
			c, found, err := containers.Find(ctx, d, name)
			if err != nil {
				return "", err
			}
			if !found {
				return "", fmt.Errorf("no container named %s or %s-*", name, name)
			}
			return c.Image, nil
		}
	}
	if e.DSN == "" && e.DataDir == "" {
		return nil, errors.New("nothing to back up: set backup.database.dsn (or DATABASE_URL) and/or backup.data_dir")
	}
	var err error
	if e.Store, err = NewStore(ctx, cfg.Store); err != nil {
		return nil, err
	}
	return e, nil
}
