package daemon

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"backstop/probe/internal/check"
)

// TestMetricsExposition checks /metrics parses as the Prometheus text
// format with the values the daemon recorded, label values escaped.
func TestMetricsExposition(t *testing.T) {
	m := newMetrics()
	at := time.Unix(1700000000, 500e6)
	m.observe(check.Result{Name: `we"b\n`, Type: "http", Status: check.Critical, Latency: 250 * time.Millisecond, At: at}, 3)
	m.observe(check.Result{Name: "disk", Type: "disk", Status: check.OK, At: at}, 0)
	m.observe(check.Result{Name: "disk", Type: "disk", Status: check.OK, At: at}, 0)
	m.add(mDeliveryErr, 1)
	m.set(mPending, 4)

	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	next:
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if len(s.Label) != len(labels) {
				continue
			}
			if s.Gauge != nil {
				return s.Gauge.GetValue(), true
			}
			return s.Counter.GetValue(), true
		}
		return 0, false
	}
	web := map[string]string{"check": `we"b\n`, "type": "http"}
	disk := map[string]string{"check": "disk", "type": "disk"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{mStatus, web, 2},
		{mUp, web, 0},
		{mLatency, web, 0.25},
		{mLastRun, web, 1700000000.5},
		{mConsecutive, web, 3},
		{mUp, disk, 1},
		{mRuns, map[string]string{"check": "disk", "type": "disk", "status": "ok"}, 2},
		{mDeliveryErr, nil, 1},
		{mPending, nil, 4},
		{mHeartbeat, nil, 0},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got := fams[mRuns].GetType().String(); got != "COUNTER" {
		t.Errorf("%s type %s, want COUNTER", mRuns, got)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
}
