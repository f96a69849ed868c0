package daemon

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"backstop/probe/internal/check"
)

// metrics are the daemon's Prometheus series, written in the text
// exposition format (version 0.0.4) by hand: the client library and the
// protobuf runtime it links cost the binary 2.2 MB for nine series.
// Families come out sorted by name and series by labels, as the client
// library wrote them; a family with labels and no series yet is omitted.
type metrics struct {
	mu       sync.Mutex
	families map[string]*family
}

type family struct {
	help, kind string // kind: gauge or counter
	labels     []string
	series     map[string]float64 // key: rendered label set, "" without labels
}

const (
	mStatus      = "backstop_check_status"
	mUp          = "backstop_check_up"
	mLatency     = "backstop_check_latency_seconds"
	mLastRun     = "backstop_check_last_run_timestamp_seconds"
	mConsecutive = "backstop_check_consecutive_failures"
	mRuns        = "backstop_check_runs_total"
	mPending     = "backstop_alert_outbox_pending"
	mDeliveryErr = "backstop_alert_delivery_failures_total"
	mHeartbeat   = "backstop_heartbeat_timestamp_seconds"
)

func newMetrics() *metrics {
	labels := []string{"check", "type"}
	m := &metrics{families: map[string]*family{}}
	add := func(name, kind, help string, labels ...string) {
		f := &family{help: help, kind: kind, labels: labels, series: map[string]float64{}}
		if len(labels) == 0 {
			f.series[""] = 0
		}
		m.families[name] = f
	}
	add(mStatus, "gauge", "Latest status of the check: 0 ok, 1 warn, 2 critical, 3 unknown.", labels...)
	add(mUp, "gauge", "1 when the latest run of the check was ok, else 0.", labels...)
	add(mLatency, "gauge", "How long the latest run of the check took.", labels...)
	add(mLastRun, "gauge", "Unix time of the latest run of the check.", labels...)
	add(mConsecutive, "gauge", "Runs in a row that were not ok (0 after an ok run).", labels...)
	add(mRuns, "counter", "Check runs by resulting status.", "check", "type", "status")
	add(mPending, "gauge", "Alert events queued on disk and not yet delivered.")
	add(mDeliveryErr, "counter", "Failed attempts to deliver an alert event (it stays queued).")
	add(mHeartbeat, "gauge", "Unix time of the latest heartbeat written.")
	return m
}

// labelSet renders name="value" pairs with the exposition format's escaping.
func (f *family) labelSet(values []string) string {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), len(f.labels)))
	}
	var b strings.Builder
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.labels[i] + `="` + labelEscaper.Replace(v) + `"`)
	}
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// set sets a series; add adds to it (counters).
func (m *metrics) set(name string, v float64, labels ...string) { m.update(name, labels, v, false) }
func (m *metrics) add(name string, v float64, labels ...string) { m.update(name, labels, v, true) }

func (m *metrics) update(name string, labels []string, v float64, add bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.families[name]
	k := f.labelSet(labels)
	if add {
		v += f.series[k]
	}
	f.series[k] = v
}

func (m *metrics) observe(r check.Result, consecutive int) {
	up := 0.0
	if r.Status == check.OK {
		up = 1
	}
	m.set(mStatus, float64(r.Status), r.Name, r.Type)
	m.set(mUp, up, r.Name, r.Type)
	m.set(mLatency, r.Latency.Seconds(), r.Name, r.Type)
	m.set(mLastRun, float64(r.At.UnixMilli())/1000, r.Name, r.Type)
	m.set(mConsecutive, float64(consecutive), r.Name, r.Type)
	m.add(mRuns, 1, r.Name, r.Type, r.Status.String())
}

// ServeHTTP writes every series in the text exposition format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(m.families)) {
		f := m.families[n]
		if len(f.series) == 0 {
			continue
		}
		b.WriteString("# HELP " + n + " " + f.help + "\n# TYPE " + n + " " + f.kind + "\n")
		for _, k := range slices.Sorted(maps.Keys(f.series)) {
			b.WriteString(n)
			if k != "" {
				b.WriteString("{" + k + "}")
			}
			b.WriteString(" " + strconv.FormatFloat(f.series[k], 'g', -1, 64) + "\n")
		}
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
