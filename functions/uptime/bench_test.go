package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"backstop/shared/testenv"
)

// slowTargets starts four loopback servers that answer /t/<i> after
// 50-200 ms (spread by i) and returns n targets over them.
func slowTargets(b *testing.B, n int) string {
	b.Helper()
	var urls []string
	for range 4 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/t/"))
			select {
			case <-time.After(time.Duration(50+(i*37)%151) * time.Millisecond):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}))
		b.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	ts := make([]string, n)
	for i := range ts {
		ts[i] = fmt.Sprintf(`{"name":"t%04d","url":"%s/t/%d","conditions":["[STATUS] == 200","[BODY].status == ok"]}`, i, urls[i%len(urls)], i)
	}
	return targetsJSON(ts...)
}

// BenchmarkHandler1000Targets is one invocation over 1,000 loopback targets
// with 50-200 ms latency: the handler in process (ns/op is the wall per
// invocation), the built bootstrap under the Lambda harness (with the
// process's peak RSS), and the baseline of checking 50 targets one by one,
// scaled to 1,000. Run: go test ./functions/uptime -run '^$' -bench Handler1000 -benchtime 1x
func BenchmarkHandler1000Targets(b *testing.B) {
	b.Run("handler", func(b *testing.B) {
		w := newWorld(b)
		h, _ := w.handler(b, slowTargets(b, 1000), func(c *Config) { c.Log = io.Discard })
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			rep, err := h.Handle(ctx, scheduled(b, fmt.Sprintf("bench-%d", i)))
			cancel()
			if err != nil || rep.Up != 1000 {
				b.Fatalf("run: %v %+v", err, rep)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/invocation")
		b.ReportMetric(float64(maxRSS())/1024, "test-process-peak-RSS-MB")
	})

	b.Run("bootstrap", func(b *testing.B) {
		bin := testenv.BuildBootstrap(b, "backstop/functions/uptime")
		w := newWorld(b)
		w.put(b, "uptime/targets.json", slowTargets(b, 1000))
		fn := testenv.StartLambda(b, bin, testenv.LambdaOptions{Env: w.lambdaEnv(nil), Timeout: 30 * time.Second})
		cold := fn.ColdStart()
		b.ResetTimer()
		for i := range b.N {
			data, _ := json.Marshal(scheduled(b, fmt.Sprintf("boot-%d", i)))
			resp, fnErr := fn.Invoke(b, data)
			if fnErr != nil {
				b.Fatalf("invoke: %v", fnErr)
			}
			var rep Report
			if err := json.Unmarshal(resp, &rep); err != nil || rep.Up != 1000 {
				b.Fatalf("report %s: %v", resp, err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/invocation")
		b.ReportMetric(float64(cold.Microseconds())/1000, "cold-start-ms")
		if rss := fn.PeakRSS(); rss > 0 {
			b.ReportMetric(float64(rss)/(1<<20), "bootstrap-peak-RSS-MB")
		}
		if st, err := os.Stat(bin); err == nil {
			b.ReportMetric(float64(st.Size())/(1<<20), "bootstrap-MB(host-arch)")
		}
	})

	b.Run("baseline-sequential-50-scaled-to-1000", func(b *testing.B) {
		doc, err := ParseTargets([]byte(slowTargets(b, 50)))
		if err != nil {
			b.Fatal(err)
		}
		p := &prober{client: newHTTPClient(nil, 1)}
		b.ResetTimer()
		for range b.N {
			for i := range doc.Targets {
				if o := p.Check(context.Background(), &doc.Targets[i]); o.Level != "ok" {
					b.Fatalf("%s: %+v", o.Target, o)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)*20, "ms/invocation(x20)")
	})
}

// maxRSS is this process's peak resident set in KiB.
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}
