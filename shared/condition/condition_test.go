package condition

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEval(t *testing.T) {
	health := []byte(`{"status":"ok","version":"1.4.2","count":3,"ratio":0.5,"ready":true,"none":null,
		"data":{"items":[{"name":"alpha","tags":["a","b"]},{"name":"beta"}],"empty":[]},"errors":[],"name":"名前"}`)
	base := Input{
		Status:       200,
		Body:         health,
		ResponseTime: 153*time.Millisecond + 700*time.Microsecond,
		CertExpiry:   30 * 24 * time.Hour,
		Connected:    true,
		IP:           "127.0.0.1",
	}
	with := func(f func(*Input)) Input { in := base; f(&in); return in }

	tests := []struct {
		name    string
		expr    string
		in      Input
		ok      bool
		explain string
	}{
		// [STATUS]
		{"status equal", "[STATUS] == 200", base, true, "[STATUS] (200) == 200"},
		{"status differs", "[STATUS] == 200", with(func(i *Input) { i.Status = 502 }), false, "[STATUS] (502) == 200"},
		{"status not equal", "[STATUS] != 500", base, true, "[STATUS] (200) != 500"},
		{"status less", "[STATUS] < 300", base, true, "[STATUS] (200) < 300"},
		{"status less fails", "[STATUS] < 300", with(func(i *Input) { i.Status = 404 }), false, "[STATUS] (404) < 300"},
		{"status greater", "[STATUS] > 199", base, true, "[STATUS] (200) > 199"},
		{"status less or equal at bound", "[STATUS] <= 200", base, true, "[STATUS] (200) <= 200"},
		{"status greater or equal at bound", "[STATUS] >= 200", base, true, "[STATUS] (200) >= 200"},
		{"status greater or equal fails", "[STATUS] >= 201", base, false, "[STATUS] (200) >= 201"},
		{"numbers compare as numbers", "[STATUS] == 200.0", base, true, "[STATUS] (200) == 200.0"},
		{"literal on the left", "200 == [STATUS]", base, true, "200 == [STATUS] (200)"},
		{"no spaces around operator", "[STATUS]==200", base, true, "[STATUS] (200) == 200"},
		// any()
		{"any matches", "[STATUS] == any(200, 201)", base, true, "[STATUS] (200) == any(200, 201)"},
		{"any misses", "[STATUS] == any(200, 201)", with(func(i *Input) { i.Status = 204 }), false, "[STATUS] (204) == any(200, 201)"},
		{"not any", "[STATUS] != any(500, 502, 503)", base, true, "[STATUS] (200) != any(500, 502, 503)"},
		{"any on the left", "any(ok, up) == [BODY].status", base, true, "any(ok, up) == [BODY].status (ok)"},
		// [BODY]
		{"json string", "[BODY].status == ok", base, true, "[BODY].status (ok) == ok"},
		{"json string differs", "[BODY].status == ok", with(func(i *Input) { i.Body = []byte(`{"status":"degraded"}`) }), false, "[BODY].status (degraded) == ok"},
		{"json nested index", "[BODY].data.items[0].name == alpha", base, true, "[BODY].data.items[0].name (alpha) == alpha"},
		{"json deep index", "[BODY].data.items[0].tags[1] == b", base, true, "[BODY].data.items[0].tags[1] (b) == b"},
		{"json number", "[BODY].count == 3", base, true, "[BODY].count (3) == 3"},
		{"json number ordering", "[BODY].count > 2", base, true, "[BODY].count (3) > 2"},
		{"json float", "[BODY].ratio < 1", base, true, "[BODY].ratio (0.5) < 1"},
		{"json bool", "[BODY].ready == true", base, true, "[BODY].ready (true) == true"},
		{"json null", "[BODY].none == null", base, true, "[BODY].none (null) == null"},
		{"json object as compact JSON", "[BODY].data.items[1] == {\"name\":\"beta\"}", base, true, `[BODY].data.items[1] ({"name":"beta"}) == {"name":"beta"}`},
		{"json unicode", "[BODY].name == 名前", base, true, "[BODY].name (名前) == 名前"},
		{"json top-level array", "[BODY][1] == y", with(func(i *Input) { i.Body = []byte(`["x","y"]`) }), true, "[BODY][1] (y) == y"},
		{"json number in string compares numerically", "[BODY].v >= 2", with(func(i *Input) { i.Body = []byte(`{"v":"10"}`) }), true, "[BODY].v (10) >= 2"},
		{"big integers stay exact", "[BODY].id == 9007199254740993", with(func(i *Input) { i.Body = []byte(`{"id":9007199254740992}`) }), false, "[BODY].id (9007199254740992) == 9007199254740993"},
		{"body not JSON", "[BODY].status == ok", with(func(i *Input) { i.Body = []byte("<html>ok</html>") }), false, "[BODY].status (absent: body is not JSON) == ok"},
		{"body not JSON with !=", "[BODY].status != down", with(func(i *Input) { i.Body = []byte("down") }), false, "[BODY].status (absent: body is not JSON) != down"},
		{"body JSON with trailing garbage", "[BODY].a == 1", with(func(i *Input) { i.Body = []byte(`{"a":1} x`) }), false, "[BODY].a (absent: body is not JSON) == 1"},
		{"body empty", "[BODY].status == ok", with(func(i *Input) { i.Body = nil }), false, "[BODY].status (absent: body is empty) == ok"},
		{"missing key", "[BODY].state == ok", base, false, `[BODY].state (absent: no key "state") == ok`},
		{"missing nested key", "[BODY].data.total == 2", base, false, `[BODY].data.total (absent: no key "total" in [BODY].data) == 2`},
		{"index out of range", "[BODY].data.items[5].name == x", base, false, "[BODY].data.items[5].name (absent: [BODY].data.items has 2 elements, no [5]) == x"},
		{"index into object", "[BODY].data[0] == x", base, false, "[BODY].data[0] (absent: [BODY].data is not an array) == x"},
		{"key into string", "[BODY].status.code == x", base, false, "[BODY].status.code (absent: [BODY].status is not an object) == x"},
		{"not a number for ordering", "[BODY].status < 5", base, false, "[BODY].status (ok, not a number) < 5"},
		{"bare body", "[BODY] == pong", with(func(i *Input) { i.Body = []byte("pong") }), true, "[BODY] (pong) == pong"},
		{"bare body number", "[BODY] > 10", with(func(i *Input) { i.Body = []byte("42\n") }), true, "[BODY] (42 ) > 10"},
		// pat()
		{"pattern matches", "[BODY] == pat(*healthy*)", with(func(i *Input) { i.Body = []byte("service is healthy today") }), true, "[BODY] (service is healthy today) == pat(*healthy*)"},
		{"pattern misses", "[BODY] == pat(*healthy*)", with(func(i *Input) { i.Body = []byte("unhealth") }), false, "[BODY] (unhealth) == pat(*healthy*)"},
		{"pattern prefix", "[BODY].version == pat(1.4.*)", base, true, "[BODY].version (1.4.2) == pat(1.4.*)"},
		{"pattern anchored", "[BODY].version == pat(1.4)", base, false, "[BODY].version (1.4.2) == pat(1.4)"},
		{"pattern inner parts", "[IP] == pat(127.*.*.1)", base, true, "[IP] (127.0.0.1) == pat(127.*.*.1)"},
		{"pattern negated", "[BODY] != pat(*error*)", with(func(i *Input) { i.Body = []byte("all fine") }), true, "[BODY] (all fine) != pat(*error*)"},
		{"long body truncated in explanation", "[BODY] == pat(*zzz*)", with(func(i *Input) { i.Body = []byte(strings.Repeat("a", 100)) }), false, "[BODY] (" + strings.Repeat("a", 64) + "...(truncated)) == pat(*zzz*)"},
		{"control characters kept on one line", "[BODY] == x", with(func(i *Input) { i.Body = []byte("a\nb") }), false, "[BODY] (a b) == x"},
		// len() and has()
		{"len of array", "len([BODY].data.items) == 2", base, true, "len([BODY].data.items) (2) == 2"},
		{"len of array differs", "len([BODY].data.items) == 3", base, false, "len([BODY].data.items) (2) == 3"},
		{"len of empty array", "len([BODY].errors) == 0", base, true, "len([BODY].errors) (0) == 0"},
		{"len of string in characters", "len([BODY].name) == 2", base, true, "len([BODY].name) (2) == 2"},
		{"len of object", "len([BODY].data) >= 2", base, true, "len([BODY].data) (2) >= 2"},
		{"len of missing path", "len([BODY].nope) == 0", base, false, `len([BODY].nope) (absent: no key "nope") == 0`},
		{"len of bare text body", "len([BODY]) == 4", with(func(i *Input) { i.Body = []byte("pong") }), true, "len([BODY]) (4) == 4"},
		{"len of bare JSON array body", "len([BODY]) == 3", with(func(i *Input) { i.Body = []byte(`[1,2,3]`) }), true, "len([BODY]) (3) == 3"},
		{"has present", "has([BODY].errors) == true", base, true, "has([BODY].errors) (true) == true"},
		{"has absent", "has([BODY].failures) == false", base, true, "has([BODY].failures) (false) == false"},
		{"has on non-JSON body", "has([BODY].errors) == false", with(func(i *Input) { i.Body = []byte("nope") }), true, "has([BODY].errors) (false) == false"},
		{"has bare body", "has([BODY]) == true", with(func(i *Input) { i.Body = nil }), false, "has([BODY]) (false) == true"},
		// [RESPONSE_TIME]
		{"response time fast", "[RESPONSE_TIME] < 2000", base, true, "[RESPONSE_TIME] (153) < 2000"},
		{"response time slow", "[RESPONSE_TIME] < 2000", with(func(i *Input) { i.ResponseTime = 2500 * time.Millisecond }), false, "[RESPONSE_TIME] (2500) < 2000"},
		{"response time against duration", "[RESPONSE_TIME] <= 2s", with(func(i *Input) { i.ResponseTime = 2 * time.Second }), true, "[RESPONSE_TIME] (2000) <= 2s"},
		{"response time against sub-ms duration", "[RESPONSE_TIME] < 153.5ms", base, true, "[RESPONSE_TIME] (153) < 153.5ms"},
		// [CERTIFICATE_EXPIRATION]
		{"cert far from expiry", "[CERTIFICATE_EXPIRATION] > 336h", base, true, "[CERTIFICATE_EXPIRATION] (720h) > 336h"},
		{"cert close to expiry", "[CERTIFICATE_EXPIRATION] > 336h", with(func(i *Input) { i.CertExpiry = 47*time.Hour + 30*time.Minute + 2*time.Second + time.Millisecond }), false, "[CERTIFICATE_EXPIRATION] (47h30m2s) > 336h"},
		{"cert in plain ms", "[CERTIFICATE_EXPIRATION] > 172800000", with(func(i *Input) { i.CertExpiry = 49 * time.Hour }), true, "[CERTIFICATE_EXPIRATION] (49h) > 172800000"},
		{"cert expired", "[CERTIFICATE_EXPIRATION] > 0", with(func(i *Input) { i.CertExpiry = -2 * time.Hour }), false, "[CERTIFICATE_EXPIRATION] (-2h) > 0"},
		{"no cert", "[CERTIFICATE_EXPIRATION] > 48h", with(func(i *Input) { i.CertExpiry = 0 }), false, "[CERTIFICATE_EXPIRATION] (absent: no certificate) > 48h"},
		// [CONNECTED], [IP]
		{"connected", "[CONNECTED] == true", base, true, "[CONNECTED] (true) == true"},
		{"not connected", "[CONNECTED] == true", with(func(i *Input) { i.Connected = false }), false, "[CONNECTED] (false) == true"},
		{"ip equal", "[IP] == 127.0.0.1", base, true, "[IP] (127.0.0.1) == 127.0.0.1"},
		{"ip unknown", "[IP] == 127.0.0.1", with(func(i *Input) { i.IP = "" }), false, "[IP] (absent: no IP) == 127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.expr, err)
			}
			if c.String() != tc.expr {
				t.Errorf("String() = %q, want %q", c.String(), tc.expr)
			}
			got := c.Eval(tc.in)
			if got.OK != tc.ok || got.Explanation != tc.explain {
				t.Errorf("Eval = {%v %q}, want {%v %q}", got.OK, got.Explanation, tc.ok, tc.explain)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		expr   string
		reason string
	}{
		{"empty", "  ", "empty"},
		{"unknown placeholder", "[STATUS_CODE] == 200", "unknown placeholder [STATUS_CODE] (want one of [STATUS], [BODY], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [IP])"},
		{"lower-case placeholder", "[status] == 200", "unknown placeholder [status] (want one of [STATUS], [BODY], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [IP])"},
		{"missing operator", "[STATUS] 200", "missing operator (want one of ==, !=, <, >, <=, >=)"},
		{"single equals", "[STATUS] = 200", `unknown operator "=" (want one of ==, !=, <, >, <=, >=)`},
		{"triple equals", "[STATUS] === 200", `unknown operator "===" (want one of ==, !=, <, >, <=, >=)`},
		{"arrow", "[STATUS] => 200", `unknown operator "=>" (want one of ==, !=, <, >, <=, >=)`},
		{"two operators", "[STATUS] == 200 == 201", "more than one operator (== and ==)"},
		{"nothing on the left", "== 200", "nothing before =="},
		{"nothing on the right", "[STATUS] >=", "nothing after >="},
		{"unknown function", "[STATUS] == one(200)", "unknown function one() (want len, has, pat or any)"},
		{"len of status", "len([STATUS]) == 3", "len() takes [BODY] or a [BODY] path, got [STATUS]"},
		{"len of a literal", "len(abc) == 3", `len() takes [BODY] or a [BODY] path, got "abc"`},
		{"has of unknown placeholder", "has([NOPE]) == true", "unknown placeholder [NOPE] (want one of [STATUS], [BODY], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [IP])"},
		{"empty any option", "[STATUS] == any(200,,201)", "any() has an empty option"},
		{"pattern with ordering", "[BODY] < pat(*x*)", "pat(*x*) works only with == and !="},
		{"any with ordering", "[STATUS] >= any(1, 2)", "any(1, 2) works only with == and !="},
		{"functions on both sides", "pat(a) == any(b)", "pat() and any() go on one side only"},
		{"two constants", "200 == 200", "compares two constants (want a placeholder such as [STATUS] on one side)"},
		{"ordering against text", "[STATUS] < abc", `"abc" is not a number or duration, < needs numbers`},
		{"ordering against day suffix", "[CERTIFICATE_EXPIRATION] > 14d", `"14d" is not a number or duration, > needs numbers`},
		{"ordering on has", "has([BODY].x) > 1", "has([BODY].x) is true or false, > needs numbers"},
		{"ordering on connected", "[CONNECTED] > 0", "[CONNECTED] is not a number, > needs numbers"},
		{"path after status", "[STATUS].code == 200", `unexpected ".code" after [STATUS] (only [BODY] takes a path)`},
		{"path without dot", "[BODY]status == ok", `unexpected "status" in [BODY] path (want .key or [index])`},
		{"empty key", "[BODY].a..b == ok", `bad key "" in [BODY] path (want [BODY].key.sub[0])`},
		{"trailing dot", "[BODY]. == ok", `bad key "" in [BODY] path (want [BODY].key.sub[0])`},
		{"bad index", "[BODY].items[x] == ok", "bad index [x] in [BODY] path (want [0], [1], ...)"},
		{"negative index", "[BODY].items[-1] == ok", "bad index [-1] in [BODY] path (want [0], [1], ...)"},
		{"wildcard index", "[BODY].items[*].ok == true", "wildcard [*] in [BODY] path is not supported (use len() or an index like [0])"},
		{"unclosed bracket", "[BODY == ok", `unclosed '['`},
		{"unbalanced paren", "[STATUS] == 200)", `unbalanced ')'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.expr)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error %q", tc.expr, c.canonical(), tc.reason)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is %T, want *SyntaxError", err, err)
			}
			if se.Reason != tc.reason || se.Expr != tc.expr {
				t.Errorf("got reason %q for %q, want %q", se.Reason, se.Expr, tc.reason)
			}
			if want := "invalid condition " + strconv.Quote(tc.expr) + ": " + tc.reason; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestWildcard(t *testing.T) {
	tests := []struct {
		name, pattern, s string
		want             bool
	}{
		{"exact", "ok", "ok", true},
		{"exact differs", "ok", "okay", false},
		{"star alone", "*", "", true},
		{"prefix", "ok*", "okay", true},
		{"suffix", "*ay", "okay", true},
		{"inner", "a*c*e", "abcde", true},
		{"inner order", "a*e*c", "abcde", false},
		{"no overlap of prefix and suffix", "ab*ba", "aba", false},
		{"empty pattern", "", "", true},
		{"empty pattern vs text", "", "x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := wildcard(tc.pattern, tc.s); got != tc.want {
				t.Errorf("wildcard(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
			}
		})
	}
}
