package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"backstop/probe/internal/check"
)

// metrics are the daemon's Prometheus series, on their own registry (no
// package-level default registry).
type metrics struct {
	reg         *prometheus.Registry
	status      *prometheus.GaugeVec
	up          *prometheus.GaugeVec
	latency     *prometheus.GaugeVec
	lastRun     *prometheus.GaugeVec
	consecutive *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	pending     prometheus.Gauge
	deliveryErr prometheus.Counter
	heartbeat   prometheus.Gauge
}

func newMetrics() *metrics {
	labels := []string{"check", "type"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backstop_check_status",
			Help: "Latest status of the check: 0 ok, 1 warn, 2 critical, 3 unknown."}, labels),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backstop_check_up",
			Help: "1 when the latest run of the check was ok, else 0."}, labels),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backstop_check_latency_seconds",
			Help: "How long the latest run of the check took."}, labels),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backstop_check_last_run_timestamp_seconds",
			Help: "Unix time of the latest run of the check."}, labels),
		consecutive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backstop_check_consecutive_failures",
			Help: "Runs in a row that were not ok (0 after an ok run)."}, labels),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backstop_check_runs_total",
			Help: "Check runs by resulting status."}, []string{"check", "type", "status"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "backstop_alert_outbox_pending",
			Help: "Alert events queued on disk and not yet delivered."}),
		deliveryErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "backstop_alert_delivery_failures_total",
			Help: "Failed attempts to deliver an alert event (it stays queued)."}),
		heartbeat: prometheus.NewGauge(prometheus.GaugeOpts{Name: "backstop_heartbeat_timestamp_seconds",
			Help: "Unix time of the latest heartbeat written."}),
	}
	m.reg.MustRegister(m.status, m.up, m.latency, m.lastRun, m.consecutive, m.runs, m.pending, m.deliveryErr, m.heartbeat)
	return m
}

func (m *metrics) observe(r check.Result, consecutive int) {
	l := []string{r.Name, r.Type}
	m.status.WithLabelValues(l...).Set(float64(r.Status))
	up := 0.0
	if r.Status == check.OK {
		up = 1
	}
	m.up.WithLabelValues(l...).Set(up)
	m.latency.WithLabelValues(l...).Set(r.Latency.Seconds())
	m.lastRun.WithLabelValues(l...).Set(float64(r.At.UnixMilli()) / 1000)
	m.consecutive.WithLabelValues(l...).Set(float64(consecutive))
	m.runs.WithLabelValues(r.Name, r.Type, r.Status.String()).Inc()
}
