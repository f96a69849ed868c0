package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// TestHeartbeatAndEventsReachS3 runs the daemon against a real S3 server
// with alerts.via store: the heartbeat lands at <host>/heartbeat.json and
// the DOWN event at <host>/events/, where the alert function picks it up.
func TestHeartbeatAndEventsReachS3(t *testing.T) {
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	a := newApp(t)
	a.healthy.Store(false)
	dir := t.TempDir()
	y := fmt.Sprintf(`
host: s3-host
state_dir: %s/state
listen: 127.0.0.1:%d
checks:
  - {name: web, type: http, url: "%s/health", interval: 1s, timeout: 900ms}
alerts: {via: store, failure_threshold: 2}
store: {s3: {bucket: %s, region: %s, endpoint: "%s"}}
`, dir, testenv.FreePort(t), a.srv.URL, srv.Bucket, srv.Region, srv.Endpoint)
	cfg, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	st, err := store.NewS3(context.Background(), store.S3Config{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	var heartbeat, event bool
	waitFor(t, "heartbeat and a DOWN event in S3", 20*time.Second, func() bool {
		objs, err := st.List(context.Background(), "s3-host/")
		if err != nil {
			return false
		}
		for _, o := range objs {
			heartbeat = heartbeat || o.Key == "s3-host/heartbeat.json"
			if strings.HasPrefix(o.Key, "s3-host/events/") {
				rc, _, err := st.Get(context.Background(), o.Key)
				if err == nil {
					b, _ := io.ReadAll(rc)
					rc.Close()
					event = event || strings.Contains(string(b), `"state": "down"`) || strings.Contains(string(b), `"state":"down"`)
				}
			}
		}
		return heartbeat && event
	})
}
