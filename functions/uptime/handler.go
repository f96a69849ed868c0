package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"backstop/shared/alert"
)

// Config is everything the handler needs; main builds it from the
// environment (see configFromEnv).
type Config struct {
	S3           ObjectStore
	StateBucket  string
	StateKey     string // default uptime/state.json
	EventsPrefix string // default uptime/events/

	// Targets come from inline JSON (the TARGETS template parameter) or,
	// when that is empty, from s3://TargetsBucket/TargetsKey, read and
	// validated on every run so an edit takes effect without a deploy.
	TargetsInline []byte
	TargetsBucket string
	TargetsKey    string

	Concurrency int           // checks in flight at once, default 128
	RetryPause  time.Duration // pause before the one retry of a failure, default 2s; < 0: none
	Reserve     time.Duration // time kept back from the checks to save state, default 3s
	Interval    time.Duration // the schedule's rate: minutes each observation counts for, default 1m
	Budget      time.Duration // run time when ctx has no deadline, default 60s
	RootCAs     *x509.CertPool

	Metrics io.Writer // EMF lines, one per target per run (stdout in Lambda)
	Log     io.Writer // a summary line per run (stderr in Lambda)
}

// Defaults.
const (
	DefaultStateKey     = "uptime/state.json"
	DefaultEventsPrefix = "uptime/events/"
	DefaultConcurrency  = 128
	DefaultRetryPause   = 2 * time.Second
	DefaultReserve      = 3 * time.Second
	DefaultInterval     = time.Minute
	maxSaveAttempts     = 10
)

// Handler runs the uptime checks. It is safe for concurrent use: two
// handlers (or two invocations) sharing one state object merge through the
// state's ETag.
type Handler struct {
	cfg    Config
	inline *Targets
	prober *prober
}

// Report is the invocation's result.
type Report struct {
	Run            string   `json:"run"`
	Targets        int      `json:"targets"`
	Up             int      `json:"up"`
	Down           int      `json:"down"`
	Warn           int      `json:"warn"`
	NotObserved    int      `json:"not_observed"`
	Events         []string `json:"events"` // keys of the events this run raised
	SaveAttempts   int      `json:"save_attempts"`
	AlreadyApplied bool     `json:"already_applied,omitempty"` // a retried invocation: nothing new counted
}

// New checks cfg, fills defaults and parses inline targets.
func New(cfg Config) (*Handler, error) {
	if cfg.S3 == nil {
		return nil, errors.New("uptime: no S3 client")
	}
	if cfg.StateBucket == "" {
		return nil, errors.New("uptime: no state bucket (STATE_BUCKET)")
	}
	if cfg.StateKey == "" {
		cfg.StateKey = DefaultStateKey
	}
	if cfg.EventsPrefix == "" {
		cfg.EventsPrefix = DefaultEventsPrefix
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.RetryPause == 0 {
		cfg.RetryPause = DefaultRetryPause
	}
	cfg.RetryPause = max(cfg.RetryPause, 0)
	if cfg.Reserve <= 0 {
		cfg.Reserve = DefaultReserve
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Budget <= 0 {
		cfg.Budget = time.Minute
	}
	if cfg.Metrics == nil {
		cfg.Metrics = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	h := &Handler{cfg: cfg, prober: &prober{
		client: newHTTPClient(cfg.RootCAs, cfg.Concurrency), roots: cfg.RootCAs, retryPause: cfg.RetryPause,
	}}
	switch {
	case len(cfg.TargetsInline) > 0:
		t, err := ParseTargets(cfg.TargetsInline)
		if err != nil {
			return nil, fmt.Errorf("targets (TARGETS): %w", err)
		}
		h.inline = t
	case cfg.TargetsBucket == "" || cfg.TargetsKey == "":
		return nil, errors.New("uptime: no targets: set TARGETS, or TARGETS_KEY (and TARGETS_BUCKET)")
	}
	return h, nil
}

// Handle runs one round: load the targets, check them all concurrently
// within the deadline (ctx's, less Reserve), write one EMF line per
// checked target, merge the observations into the state (compare-and-swap
// on its ETag, re-read and re-applied on a conflict), then write the
// events the state machine raised. A target whose check the deadline cut
// short observes nothing; the state is still saved and Handle returns an
// error naming how many were missed. An invocation retried with the same
// event id counts nothing twice.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) (Report, error) {
	start := time.Now()
	rep := Report{Run: runID(ctx, ev)}
	tg, err := h.targets(ctx)
	if err != nil {
		return rep, err
	}
	rep.Targets = len(tg.Targets)

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(h.cfg.Budget)
	}
	reserve := min(h.cfg.Reserve, deadline.Sub(start)/3)
	checkCtx, cancel := context.WithDeadline(ctx, deadline.Add(-reserve))
	obs := h.checkAll(checkCtx, tg)
	cancel()

	missed := 0
	for _, o := range obs {
		switch {
		case o.Deadline:
			missed++
			rep.NotObserved++
		case o.Level == alert.LevelOK:
			rep.Up++
		case o.Level == alert.LevelWarn:
			rep.Warn++
		case o.Level == alert.LevelDown:
			rep.Down++
		default:
			rep.NotObserved++
		}
	}
	h.writeMetrics(obs)

	byName := make(map[string]*Target, len(tg.Targets))
	for i := range tg.Targets {
		byName[tg.Targets[i].Name] = &tg.Targets[i]
	}
	r := &run{
		ID: rep.Run, At: start.UTC(), Obs: obs, Targets: byName, Reminder: tg.reminder,
		Host: tg.Host, Interval: h.cfg.Interval, Prefix: h.cfg.EventsPrefix,
	}
	st, raised, attempts, already, saveErr := h.save(ctx, r)
	rep.SaveAttempts, rep.AlreadyApplied = attempts, already
	for _, e := range raised {
		rep.Events = append(rep.Events, e.Key)
	}
	var errs []error
	if saveErr != nil {
		errs = append(errs, saveErr)
	} else if err := h.flush(ctx, st.Outbox); err != nil {
		errs = append(errs, err)
	}
	if missed > 0 {
		errs = append(errs, fmt.Errorf("uptime run %s: %d of %d targets not checked before the deadline", rep.Run, missed, len(obs)))
	}
	fmt.Fprintf(h.cfg.Log, "uptime run %s: %d targets: %d up, %d down, %d warn, %d not observed; %d event(s); saved in %d attempt(s); %s\n",
		rep.Run, rep.Targets, rep.Up, rep.Down, rep.Warn, rep.NotObserved, len(rep.Events), rep.SaveAttempts, time.Since(start).Round(time.Millisecond))
	return rep, errors.Join(errs...)
}

// targets returns the inline targets or reads and validates the S3 object.
func (h *Handler) targets(ctx context.Context) (*Targets, error) {
	if h.inline != nil {
		return h.inline, nil
	}
	data, _, err := getObject(ctx, h.cfg.S3, h.cfg.TargetsBucket, h.cfg.TargetsKey)
	if err != nil {
		return nil, fmt.Errorf("load targets: %w", err)
	}
	t, err := ParseTargets(data)
	if err != nil {
		return nil, fmt.Errorf("targets s3://%s/%s: %w", h.cfg.TargetsBucket, h.cfg.TargetsKey, err)
	}
	return t, nil
}

// checkAll checks every target, at most Concurrency at once, and returns
// the observations sorted by target name.
func (h *Handler) checkAll(ctx context.Context, tg *Targets) []Observed {
	obs := make([]Observed, len(tg.Targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(h.cfg.Concurrency, len(tg.Targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				obs[i] = h.prober.Check(ctx, &tg.Targets[i])
			}
		}()
	}
	for i := range tg.Targets {
		next <- i
	}
	close(next)
	wg.Wait()
	sort.Slice(obs, func(i, j int) bool { return obs[i].Target < obs[j].Target })
	return obs
}

// save merges the run into uptime/state.json: read (with its ETag), apply,
// write with If-Match (If-None-Match: * when there is none yet); on a
// refused condition read again and re-apply, so two overlapping runs both
// land and every transition (and so every event) happens in exactly one
// saved state. Events already in the read state's outbox are written
// (idempotently) first and dropped from it.
func (h *Handler) save(ctx context.Context, r *run) (st *State, raised []EventObject, attempts int, already bool, err error) {
	confirmed := map[string]bool{}
	for attempts = 1; attempts <= maxSaveAttempts; attempts++ {
		var etag string
		st, etag, err = h.loadState(ctx)
		if err != nil {
			return nil, nil, attempts, false, err
		}
		if len(st.Outbox) > 0 {
			_ = h.flushInto(ctx, st.Outbox, confirmed) // what fails stays in the outbox
			st.dropConfirmed(confirmed)
		}
		already = st.applied(r.ID)
		raised = st.apply(r)
		data, mErr := json.Marshal(st)
		if mErr != nil {
			return nil, nil, attempts, false, fmt.Errorf("encode state: %w", mErr)
		}
		_, err = putObject(ctx, h.cfg.S3, h.cfg.StateBucket, h.cfg.StateKey, data, etag, etag == "")
		if err == nil {
			return st, raised, attempts, already, nil
		}
		if !errors.Is(err, errPrecondition) && !errors.Is(err, errConflict) {
			return nil, nil, attempts, false, fmt.Errorf("save state: %w", err)
		}
		// Someone else saved in between: back off a little, jittered, and merge again.
		wait := time.Duration(10<<min(attempts, 5))*time.Millisecond + time.Duration(rand.Int64N(int64(20*time.Millisecond)))
		select {
		case <-ctx.Done():
			return nil, nil, attempts, false, fmt.Errorf("save state: %w (after %d attempts)", ctx.Err(), attempts)
		case <-time.After(wait):
		}
	}
	return nil, nil, maxSaveAttempts, false, fmt.Errorf("save state s3://%s/%s: still conflicting after %d attempts: %w", h.cfg.StateBucket, h.cfg.StateKey, maxSaveAttempts, err)
}

// loadState reads the state; a missing object is a new state (etag "").
func (h *Handler) loadState(ctx context.Context) (*State, string, error) {
	data, etag, err := getObject(ctx, h.cfg.S3, h.cfg.StateBucket, h.cfg.StateKey)
	if errors.Is(err, errNotFound) {
		return newState(), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load state: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(data, st); err != nil {
		return nil, "", fmt.Errorf("load state s3://%s/%s: %w", h.cfg.StateBucket, h.cfg.StateKey, err)
	}
	if err := st.normalise(); err != nil {
		return nil, "", fmt.Errorf("load state s3://%s/%s: %w", h.cfg.StateBucket, h.cfg.StateKey, err)
	}
	return st, etag, nil
}

// flush writes the outbox's events; see flushInto.
func (h *Handler) flush(ctx context.Context, outbox []EventObject) error {
	return h.flushInto(ctx, outbox, map[string]bool{})
}

// flushInto writes each event with If-None-Match: * and marks it in
// confirmed when it is written or already there (412). The first few
// failures are returned; those events stay in the outbox for the next run.
func (h *Handler) flushInto(ctx context.Context, outbox []EventObject, confirmed map[string]bool) error {
	var errs []error
	for _, e := range outbox {
		if confirmed[e.Key] {
			continue
		}
		obj := e
		obj.Key = ""
		data, err := json.Marshal(obj)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode event %s: %w", e.Key, err))
			continue
		}
		_, err = putObject(ctx, h.cfg.S3, h.cfg.StateBucket, e.Key, data, "", true)
		if err == nil || errors.Is(err, errPrecondition) {
			confirmed[e.Key] = true
			continue
		}
		errs = append(errs, fmt.Errorf("write event: %w", err))
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more event writes failed", len(errs)-3))
	}
	return errors.Join(errs...)
}

// emf is one CloudWatch Embedded Metric Format record.
type emf struct {
	AWS struct {
		Timestamp         int64          `json:"Timestamp"`
		CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Target    string  `json:"target"`
	LatencyMS float64 `json:"latency_ms"`
	Up        int     `json:"up"`
	// Properties beside the metrics, for Logs Insights.
	Kind    string `json:"kind"`
	Level   string `json:"level"`
	Summary string `json:"summary,omitempty"`
	Retried bool   `json:"retried,omitempty"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

// MetricsNamespace is the CloudWatch namespace of the EMF lines.
const MetricsNamespace = "Backstop/Uptime"

var emfDirectives = []emfDirective{{
	Namespace:  MetricsNamespace,
	Dimensions: [][]string{{"target"}},
	Metrics:    []emfMetric{{Name: "latency_ms", Unit: "Milliseconds"}, {Name: "up", Unit: "Count"}},
}}

// writeMetrics writes one EMF line per target that was checked (not the
// ones the deadline cut short).
func (h *Handler) writeMetrics(obs []Observed) {
	w := bufio.NewWriter(h.cfg.Metrics)
	enc := json.NewEncoder(w)
	for _, o := range obs {
		if o.Deadline {
			continue
		}
		var m emf
		m.AWS.Timestamp = o.At.UnixMilli()
		m.AWS.CloudWatchMetrics = emfDirectives
		m.Target, m.Kind, m.Level, m.Retried = o.Target, o.Kind, string(o.Level), o.Retried
		m.LatencyMS = float64(o.Latency.Microseconds()) / 1000
		if o.Level == alert.LevelOK {
			m.Up = 1
		} else {
			m.Summary = o.Summary
			if o.Level == alert.LevelNone {
				m.Level, m.Summary = "none", o.Skipped
			}
		}
		_ = enc.Encode(&m) // one line each
	}
	_ = w.Flush()
}

// runID identifies the run for idempotence: the scheduled event's id (the
// same on Lambda's retries), else the request id, else random.
func runID(ctx context.Context, ev events.EventBridgeEvent) string {
	if ev.ID != "" {
		return ev.ID
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		return lc.AwsRequestID
	}
	b := make([]byte, 8)
	_, _ = crand.Read(b)
	return "run-" + hex.EncodeToString(b)
}
