package condition

import (
	"testing"
	"time"
)

// FuzzParseEval holds Parse and Eval to their contract on arbitrary input:
// no panic, a parsed condition round-trips through String() and through its
// canonical form, and evaluation is deterministic and explained.
func FuzzParseEval(f *testing.F) {
	f.Add("[STATUS] == 200", []byte(`{"status":"ok"}`), 200, int64(120), int64(0), true, "127.0.0.1")
	f.Add("[BODY].data.items[0].name == pat(*a*)", []byte(`{"data":{"items":[{"name":"abc"}]}}`), 200, int64(5), int64(0), true, "")
	f.Add("len([BODY].items) >= 3", []byte(`{"items":[1,2]}`), 200, int64(5), int64(0), true, "")
	f.Add("[CERTIFICATE_EXPIRATION] > 336h", []byte(nil), 200, int64(5), int64(400*3600*1000), true, "")
	f.Fuzz(func(t *testing.T, expr string, body []byte, status int, respMs, certMs int64, connected bool, ip string) {
		c, err := Parse(expr)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("Parse(%q) error is %T, want *SyntaxError", expr, err)
			}
			return
		}
		if c.String() != expr {
			t.Fatalf("String() = %q, want %q", c.String(), expr)
		}
		again, err := Parse(c.String())
		if err != nil {
			t.Fatalf("Parse(String()) of %q: %v", expr, err)
		}
		canon := c.canonical()
		fromCanon, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(canonical %q) of %q: %v", canon, expr, err)
		}
		if got := fromCanon.canonical(); got != canon {
			t.Fatalf("canonical of %q: %q, then %q", expr, canon, got)
		}
		in := Input{
			Status:       status,
			Body:         body,
			ResponseTime: time.Duration(respMs) * time.Millisecond,
			CertExpiry:   time.Duration(certMs) * time.Millisecond,
			Connected:    connected,
			IP:           ip,
		}
		out := c.Eval(in)
		if out.Explanation == "" {
			t.Fatalf("Eval(%q) gave no explanation", expr)
		}
		if again.Eval(in) != out {
			t.Fatalf("Eval(%q) not deterministic", expr)
		}
		if fromCanon.Eval(in).OK != out.OK {
			t.Fatalf("canonical %q of %q evaluates differently", canon, expr)
		}
	})
}
