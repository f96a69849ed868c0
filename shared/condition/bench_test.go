package condition

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// BenchmarkEval compares evaluating the seed's health conditions with the
// code one would write by hand for them (baseline): decode the body into a
// map and compare. scripts/bench.sh prints each sub-benchmark as a ratio of
// its baseline.
func BenchmarkEval(b *testing.B) {
	body := []byte(`{"status":"ok","checks":{"db":"ok","redis":"ok"},"version":"1.4.2","items":[` +
		strings.Repeat(`{"id":1,"name":"visit"},`, 50) + `{"id":2,"name":"last"}]}`)
	in := Input{Status: 200, Body: body, ResponseTime: 120 * time.Millisecond}
	exprs := []string{"[STATUS] == 200", "[BODY].status == ok", "[RESPONSE_TIME] < 2000"}
	conds := make([]*Condition, len(exprs))
	for i, e := range exprs {
		c, err := Parse(e)
		if err != nil {
			b.Fatal(err)
		}
		conds[i] = c
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(in.Body, &m); err != nil {
				b.Fatal(err)
			}
			if !(in.Status == 200 && m["status"] == "ok" && in.ResponseTime < 2*time.Second) {
				b.Fatal("baseline says unhealthy")
			}
		}
	})
	b.Run("conditions", func(b *testing.B) {
		for b.Loop() {
			for _, c := range conds {
				if !c.Eval(in).OK {
					b.Fatal(c.Eval(in).Explanation)
				}
			}
		}
	})
}
