package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"backstop/probe/internal/check"
	"backstop/probe/internal/cmdpoll"
	"backstop/probe/internal/config"
	"backstop/probe/internal/outbox"
	"backstop/probe/internal/restore"
	"backstop/probe/internal/snapshot"
	"backstop/shared/alert"
	"backstop/shared/atomicfile"
	"backstop/shared/command"
	"backstop/shared/filelock"
	"backstop/shared/mail"
	"backstop/shared/manifest"
	"backstop/shared/store"
)

// ShutdownGrace bounds how long in-flight checks may go on after SIGTERM
// before they are cancelled.
const ShutdownGrace = 5 * time.Second

// deliverEvery is how often queued alert events are retried when no round
// triggers a delivery (the outbox's own backoff decides what is due).
const deliverEvery = 15 * time.Second

// Daemon runs scheduled check rounds and turns their results into alerts.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	entries []check.Entry
	policy  alert.Policy
	metrics *metrics

	mu          sync.Mutex // guards tracker, fails, latest, outbox writes
	tracker     *alert.Tracker
	trackerPath string
	fails       map[string]int
	latest      map[string]check.Result
	box         *outbox.Outbox
	sender      outbox.Sender
	deliverMu   sync.Mutex // one delivery pass at a time
	lastRound   time.Time
	minInterval time.Duration
	started     time.Time
	snapshots   *snapshot.Engine // nil: no backup configured
	store       store.Store      // off-site store for the heartbeat; nil: none
	cmds        *cmdpoll.Poller  // restore commands from the store; nil: commands.hmac_key_file unset
}

// heartbeatTimeout bounds the heartbeat upload so a dead store never stalls
// the rounds.
const heartbeatTimeout = 10 * time.Second

// New prepares a daemon: it builds every checker, opens the state directory
// and the outbox and loads the alert state. Nothing runs until Run.
func New(cfg *config.Config, log *slog.Logger, version string) (*Daemon, error) {
	entries, err := check.Build(cfg.Checks)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", cfg.StateDir, err)
	}
	d := &Daemon{
		cfg: cfg, log: log, version: version, entries: entries, metrics: newMetrics(),
		policy: alert.Policy{
			FailureThreshold: cfg.Alerts.FailureThreshold,
			SuccessThreshold: cfg.Alerts.SuccessThreshold,
			Reminder:         cfg.Alerts.Reminder.D(),
		},
		trackerPath: filepath.Join(cfg.StateDir, "alert-state.json"),
		fails:       map[string]int{},
		latest:      map[string]check.Result{},
	}
	if d.policy.Reminder == 0 {
		d.policy.Reminder = -1 // reminder: 0s in the file means never
	}
	d.tracker, err = alert.LoadTracker(d.trackerPath, "probe", cfg.Host, cfg.Alerts.Locale)
	if err != nil {
		return nil, err
	}
	d.box, err = outbox.Open(filepath.Join(cfg.StateDir, "outbox"))
	if err != nil {
		return nil, err
	}
	d.sender, err = NewSender(cfg)
	if err != nil {
		return nil, err
	}
	if d.store, err = snapshot.NewStore(context.Background(), cfg.Store); err != nil {
		return nil, err
	}
	if cfg.Backup.Database.DSN != "" || cfg.Backup.DataDir != "" {
		d.snapshots, err = snapshot.FromConfig(context.Background(), cfg, log)
		if err != nil {
			return nil, err
		}
		d.snapshots.Alert = d.raise
	}
	if cfg.Commands.HMACKeyFile != "" {
		if d.cmds, err = d.commandPoller(); err != nil {
			return nil, err
		}
	}
	for _, e := range entries {
		if iv := e.Config.Interval.D(); d.minInterval == 0 || iv < d.minInterval {
			d.minInterval = iv
		}
	}
	return d, nil
}

// NewSender is the delivery channel alerts.via configures.
func NewSender(cfg *config.Config) (outbox.Sender, error) {
	a := cfg.Alerts
	switch a.Via {
	case "sendgrid":
		return &outbox.MailSender{Mailer: &mail.SendGrid{
			APIKey: a.SendGridAPIKey.Reveal(), From: a.From, To: a.To, Endpoint: a.SendGridEndpoint,
			HTTPClient: &http.Client{Timeout: 30 * time.Second},
		}}, nil
	case "store":
		st, err := snapshot.NewStore(context.Background(), cfg.Store)
		if err != nil {
			return nil, err
		}
		return &outbox.StoreSender{Store: objectWriter{st}}, nil
	default:
		if err := os.MkdirAll(a.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("create alerts.dir %s: %w", a.Dir, err)
		}
		return &outbox.DirSender{Dir: a.Dir, From: a.From, To: a.To}, nil
	}
}

// objectWriter lets the outbox write event objects into the shared store.
type objectWriter struct{ s store.Store }

func (w objectWriter) Put(ctx context.Context, key string, data []byte) error {
	_, err := w.s.Put(ctx, key, bytes.NewReader(data), store.PutOptions{Size: int64(len(data)), ContentType: "application/json"})
	return err
}

// Run schedules the rounds and serves /metrics and /healthz until ctx ends,
// then lets in-flight checks finish (cancelling them after ShutdownGrace),
// saves the alert state and makes one last delivery attempt.
func (d *Daemon) Run(ctx context.Context) error {
	unlock, err := lockFile(filepath.Join(d.cfg.StateDir, "probe.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	loc, err := time.LoadLocation(d.cfg.Timezone)
	if err != nil {
		return fmt.Errorf("timezone %q: %w", d.cfg.Timezone, err)
	}
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s for /metrics: %w", d.cfg.Listen, err)
	}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	// Checks run under runCtx, which outlives ctx by ShutdownGrace.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()

	s, err := gocron.NewScheduler(gocron.WithLocation(loc), gocron.WithStopTimeout(ShutdownGrace+time.Second))
	if err != nil {
		return fmt.Errorf("create scheduler: %w", err)
	}
	d.started = time.Now()
	for iv, group := range groupByInterval(d.entries) {
		_, err := s.NewJob(gocron.DurationJob(iv),
			gocron.NewTask(func() { d.round(runCtx, group) }),
			gocron.WithName(fmt.Sprintf("checks every %s", iv)),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithStartAt(gocron.WithStartImmediately()))
		if err != nil {
			return fmt.Errorf("schedule checks every %s: %w", iv, err)
		}
	}
	if _, err := s.NewJob(gocron.DurationJob(deliverEvery), gocron.NewTask(func() { d.deliver(runCtx) }),
		gocron.WithName("alert delivery"), gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
		return fmt.Errorf("schedule alert delivery: %w", err)
	}
	if d.snapshots != nil {
		if _, err := s.NewJob(gocron.CronJob(d.cfg.Backup.Schedule, false), gocron.NewTask(func() { d.backup(runCtx) }),
			gocron.WithName("backup"), gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
			return fmt.Errorf("schedule backup %q: %w", d.cfg.Backup.Schedule, err)
		}
		if d.cfg.Rollback.Drill != "off" && d.cfg.Backup.Database.DSN != "" {
			if _, err := s.NewJob(gocron.CronJob(d.cfg.Rollback.Drill, false), gocron.NewTask(func() { d.drill(runCtx) }),
				gocron.WithName("restore drill"), gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
				return fmt.Errorf("schedule restore drill %q: %w", d.cfg.Rollback.Drill, err)
			}
		}
		if d.snapshots.Store != nil {
			if _, err := s.NewJob(gocron.DurationJob(pushEvery), gocron.NewTask(func() { d.push(runCtx) }),
				gocron.WithName("upload retries"), gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
				return fmt.Errorf("schedule upload retries: %w", err)
			}
		}
	}
	if d.cmds != nil {
		if _, err := s.NewJob(gocron.DurationJob(d.cfg.Commands.Poll.D()), gocron.NewTask(func() { d.pollCommands(runCtx) }),
			gocron.WithName("restore commands"), gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithStartAt(gocron.WithStartImmediately())); err != nil {
			return fmt.Errorf("schedule command polling: %w", err)
		}
	}
	d.log.Info("probe running", "host", d.cfg.Host, "checks", len(d.entries), "listen", ln.Addr().String(),
		"alerts_via", d.cfg.Alerts.Via, "timezone", d.cfg.Timezone, "version", d.version)
	s.Start()

	<-ctx.Done()
	d.log.Info("stopping: letting in-flight checks finish", "grace", ShutdownGrace.String())
	timer := time.AfterFunc(ShutdownGrace, cancelRun)
	if err := s.Shutdown(); err != nil {
		d.log.Warn("scheduler shutdown", "err", err)
	}
	timer.Stop()
	cancelRun()
	d.mu.Lock()
	if err := d.tracker.Save(d.trackerPath); err != nil {
		d.log.Error("save alert state", "err", err)
	}
	d.mu.Unlock()
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	d.deliver(final)
	cancel()
	d.log.Info("stopped")
	return nil
}

func groupByInterval(entries []check.Entry) map[time.Duration][]check.Entry {
	out := map[time.Duration][]check.Entry{}
	for _, e := range entries {
		iv := e.Config.Interval.D()
		out[iv] = append(out[iv], e)
	}
	return out
}

// round runs one group of checks and feeds the results to the alert state
// machine. Events are enqueued on disk before the state that produced them
// is saved, so a crash in between re-creates the same events (same dedup
// keys) rather than losing them; the outbox ignores the duplicates.
func (d *Daemon) round(ctx context.Context, group []check.Entry) {
	results := check.Run(ctx, group)
	d.mu.Lock()
	var events []alert.Event
	for _, r := range results {
		if r.Status == check.OK {
			d.fails[r.Name] = 0
		} else {
			d.fails[r.Name]++
		}
		d.latest[r.Name] = r
		d.metrics.observe(r, d.fails[r.Name])
		d.logResult(r)
		events = append(events, d.tracker.Observe(d.policy, observation(r, d.loc()))...)
	}
	for _, ev := range events {
		if err := d.box.Enqueue(ev); err != nil {
			d.log.Error("queue alert event", "check", ev.Check, "state", ev.State, "err", err)
		} else {
			d.log.Warn("alert", "check", ev.Check, "state", ev.State, "summary", ev.Summary, "incident", ev.IncidentID)
		}
	}
	if err := d.tracker.Save(d.trackerPath); err != nil {
		d.log.Error("save alert state", "err", err)
	}
	d.lastRound = time.Now()
	d.mu.Unlock()
	d.writeHeartbeat()
	if len(events) > 0 {
		d.deliver(ctx)
	}
}

func (d *Daemon) logResult(r check.Result) {
	attrs := []any{"check", r.Name, "type", r.Type, "status", r.Status.String(), "value", r.Value,
		"latency_ms", r.Latency.Milliseconds(), "message", r.Message}
	if stack, ok := r.Observed["stack"]; ok {
		attrs = append(attrs, "stack", stack)
	}
	if r.Status == check.OK {
		d.log.Debug("check", attrs...)
	} else {
		d.log.Info("check", attrs...)
	}
}

// observation maps a check result onto the alert state machine's levels:
// critical and unknown are outages, warn is a warning. Its time is in loc
// (the configured time zone), which every mail and event then shows.
func observation(r check.Result, loc *time.Location) alert.Observation {
	lvl := alert.LevelDown
	switch r.Status {
	case check.OK:
		lvl = alert.LevelOK
	case check.Warn:
		lvl = alert.LevelWarn
	}
	summary := r.Value
	if r.Status != check.OK && r.Message != "" {
		summary = r.Message
	}
	return alert.Observation{Check: r.Name, Level: lvl, Summary: summary, Detail: r.Message, Value: r.Value, At: r.At.In(loc)}
}

// deliver sends what is due from the outbox; failures stay queued.
func (d *Daemon) deliver(ctx context.Context) {
	if !d.deliverMu.TryLock() {
		return
	}
	defer d.deliverMu.Unlock()
	rep, err := d.box.Deliver(ctx, d.sender, time.Now())
	if err != nil {
		d.metrics.add(mDeliveryErr, 1)
		d.log.Warn("alert delivery failed; events stay queued and are retried", "err", err)
	}
	if rep.Sent > 0 {
		d.log.Info("alerts delivered", "sent", rep.Sent, "via", d.cfg.Alerts.Via)
	}
	if p, err := d.box.Pending(); err == nil {
		d.metrics.set(mPending, float64(len(p)))
	}
}

// pushEvery is how often snapshots that are not yet off-site are retried.
const pushEvery = 10 * time.Minute

// backup takes the scheduled snapshot and verifies it right away.
func (d *Daemon) backup(ctx context.Context) {
	res, err := d.snapshots.Backup(ctx, snapshot.Options{Trigger: manifest.TriggerSchedule, Upload: true})
	if err != nil {
		d.log.Error("scheduled backup failed", "err", err)
		d.deliver(ctx)
		return
	}
	d.log.Info("backup complete", "id", res.Manifest.ID, "duration_ms", res.Duration.Milliseconds(),
		"uploaded", res.Uploaded, "removed", res.Removed)
	if _, err := d.snapshots.Verify(ctx, res.Manifest.ID); err != nil {
		d.log.Error("verify of the new snapshot failed", "id", res.Manifest.ID, "err", err)
		d.raise(alert.Event{Check: "backup-verify", State: alert.Warn, Summary: "snapshot " + res.Manifest.ID + " failed verification",
			Detail: err.Error(), IncidentID: res.Manifest.ID, DedupKey: fmt.Sprintf("probe:%s:backup-verify:%s:failed", d.cfg.Host, res.Manifest.ID)})
	}
	d.deliver(ctx)
}

// drill restores the newest snapshot into a scratch database, validates
// and drops it (the monthly restore test); the outcome is an event.
func (d *Daemon) drill(ctx context.Context) {
	r, err := restore.FromConfig(ctx, d.cfg, d.snapshots, d.log)
	if err != nil {
		d.log.Error("restore drill", "err", err)
		return
	}
	r.Alert = d.raise
	res, err := r.Drill(ctx, "")
	if err != nil {
		d.log.Error("restore drill failed", "snapshot", res.Snapshot, "err", err)
	} else {
		d.log.Info("restore drill passed", "snapshot", res.Snapshot, "duration_ms", res.DurationMS)
	}
	d.deliver(ctx)
}

// push retries uploads of snapshots that are still local only.
func (d *Daemon) push(ctx context.Context) {
	pushed, err := d.snapshots.Push(ctx, "")
	if len(pushed) > 0 {
		d.log.Info("snapshots uploaded", "ids", pushed)
	}
	if err != nil && !errors.Is(err, snapshot.ErrLocked) {
		d.log.Warn("upload retry failed; retrying later", "err", err, "every", pushEvery.String())
	}
}

// commandPoller reads the command key (a missing or short key file stops
// the daemon at startup) and builds the poller over the store, with the
// restore engine as what runs a command.
func (d *Daemon) commandPoller() (*cmdpoll.Poller, error) {
	key, err := command.LoadKey(d.cfg.Commands.HMACKeyFile)
	if err != nil {
		return nil, fmt.Errorf("commands.hmac_key_file: %w", err)
	}
	if d.store == nil {
		return nil, errors.New("commands.hmac_key_file is set but no store is configured: commands are read from store.s3 or store.dir")
	}
	if d.snapshots == nil {
		return nil, errors.New("commands.hmac_key_file is set but backup is not configured: a command restores a snapshot")
	}
	return &cmdpoll.Poller{Store: d.store, Host: d.cfg.Host, Key: key, TTL: d.cfg.Commands.TTL.D(), LedgerPath: filepath.Join(d.cfg.StateDir, "command-ledger.json"),
		Run: d.runCommand, Alert: d.raise, Log: d.log}, nil
}

// runCommand restores what a verified, claimed command asks for.
func (d *Daemon) runCommand(ctx context.Context, c command.Command) (restore.Result, error) {
	r, err := restore.FromConfig(ctx, d.cfg, d.snapshots, d.log)
	if err != nil {
		return restore.Result{}, err
	}
	r.Alert = d.raise
	parts := map[string]bool{}
	for _, p := range c.Parts {
		parts[p] = true
	}
	return r.Restore(ctx, restore.Request{Snapshot: c.Snapshot, Parts: parts, DryRun: c.DryRun, Reason: c.Reason,
		Trigger: "command", RequestedBy: c.RequestedBy})
}

// pollCommands runs the commands that arrived; their events go out now.
func (d *Daemon) pollCommands(ctx context.Context) {
	n, err := d.cmds.Poll(ctx)
	if err != nil {
		d.log.Warn("command poll failed; retrying at the next poll", "err", err, "every", d.cfg.Commands.Poll.D().String())
	}
	if n > 0 {
		d.deliver(ctx)
	}
}

// loc is the configured time zone (validated with the config); UTC if it
// cannot be loaded.
func (d *Daemon) loc() *time.Location {
	if loc, err := time.LoadLocation(d.cfg.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

// raise queues an event that is not a check's (backups, uploads).
func (d *Daemon) raise(ev alert.Event) {
	if ev.Source == "" {
		ev.Source, ev.Host, ev.At = "probe", d.cfg.Host, time.Now().In(d.loc())
	}
	if ev.Locale == "" {
		ev.Locale = d.cfg.Alerts.Locale
	}
	if err := d.box.Enqueue(ev); err != nil {
		d.log.Error("queue alert event", "check", ev.Check, "err", err)
	}
}

// Heartbeat is written to <state_dir>/heartbeat.json after every round (and
// to the store when store.dir is set), so a dead man's switch can tell the
// probe is alive.
type Heartbeat struct {
	Host    string            `json:"host"`
	At      time.Time         `json:"at"`
	Version string            `json:"version"`
	PID     int               `json:"pid"`
	Status  string            `json:"status"`
	Checks  map[string]string `json:"checks"`
}

func (d *Daemon) writeHeartbeat() {
	d.mu.Lock()
	hb := Heartbeat{Host: d.cfg.Host, At: time.Now().UTC(), Version: d.version, PID: os.Getpid(), Checks: map[string]string{}}
	var all []check.Result
	for name, r := range d.latest {
		hb.Checks[name] = r.Status.String()
		all = append(all, r)
	}
	d.mu.Unlock()
	hb.Status = check.Worst(all).String()
	data, _ := json.MarshalIndent(hb, "", "  ")
	if err := atomicfile.Write(filepath.Join(d.cfg.StateDir, "heartbeat.json"), data, 0o600); err != nil {
		d.log.Warn("write heartbeat", "err", err)
	}
	if d.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
		err := objectWriter{d.store}.Put(ctx, d.cfg.Host+"/heartbeat.json", data)
		cancel()
		if err != nil {
			d.log.Warn("heartbeat to store", "store", d.store.String(), "err", err)
		}
	}
	d.metrics.set(mHeartbeat, float64(hb.At.UnixMilli())/1000)
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics)
	mux.HandleFunc("GET /healthz", d.healthz)
	return mux
}

// healthz answers 200 while rounds run on time, 503 when none has finished
// within three of the shortest intervals (a wedged scheduler).
func (d *Daemon) healthz(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	last := d.lastRound
	checks := map[string]string{}
	names := make([]string, 0, len(d.latest))
	for n, r := range d.latest {
		checks[n] = r.Status.String()
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	stale := 3 * d.minInterval
	ok := time.Since(d.started) < stale || (!last.IsZero() && time.Since(last) < stale)
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(map[string]any{"ok": ok, "host": d.cfg.Host, "last_round": last, "checks": checks})
}

// QueueAndDeliver queues events from a one-shot command (probe backup) in
// the state dir's outbox. When no daemon holds the state dir it also
// delivers what is due now; otherwise the running daemon delivers them
// (the outbox has one deliverer at a time).
func QueueAndDeliver(ctx context.Context, cfg *config.Config, events []alert.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir %s: %w", cfg.StateDir, err)
	}
	box, err := outbox.Open(filepath.Join(cfg.StateDir, "outbox"))
	if err != nil {
		return err
	}
	for _, ev := range events {
		if ev.Locale == "" {
			ev.Locale = cfg.Alerts.Locale
		}
		if err := box.Enqueue(ev); err != nil {
			return err
		}
	}
	unlock, err := lockFile(filepath.Join(cfg.StateDir, "probe.lock"))
	if err != nil {
		return nil // a daemon runs and will deliver
	}
	defer unlock()
	sender, err := NewSender(cfg)
	if err != nil {
		return err
	}
	_, err = box.Deliver(ctx, sender, time.Now())
	return err
}

// lockFile takes an exclusive flock so that one daemon owns the state dir
// (outbox and alert state assume a single writer). The kernel drops the
// lock when the process dies, so a stale lock cannot block a restart.
func lockFile(path string) (func(), error) {
	l, err := filelock.TryLock(path)
	if errors.Is(err, filelock.ErrHeld) {
		return nil, fmt.Errorf("another probe run holds %s (one daemon per state_dir)", path)
	}
	if err != nil {
		return nil, err
	}
	if err := l.WriteHolder(fmt.Appendf(nil, "%d\n", os.Getpid())); err != nil {
		slog.Warn("daemon lock held, but its holder note was not written; continuing", "err", err)
	}
	return l.Unlock, nil
}
