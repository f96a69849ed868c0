package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ golden files")

var (
	testKey = []byte("0123456789abcdef0123456789abcdef")
	issued  = time.Date(2025, 6, 1, 2, 3, 4, 0, time.UTC)
)

// sample is the command of the golden files.
func sample() Command {
	return Command{
		ID: "20250601T020304Z-0a1b2c3d", Host: "psyfit-prod", Snapshot: "20250531T020000Z-a1b2c3",
		Parts: []string{PartDB, PartData}, Reason: `bad deploy <v42> & "migration" 0042 — 戻す`,
		RequestedBy: "arn:aws:iam::123456789012:user/ops", IssuedAt: issued, ExpiresAt: issued.Add(TTL),
	}
}

func signed(t *testing.T, c Command) Command {
	t.Helper()
	if err := Sign(&c, testKey); err != nil {
		t.Fatal(err)
	}
	return c
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestGoldenSignedCommand(t *testing.T) {
	c := signed(t, sample())
	golden(t, "command.canonical", Canonical(c))
	enc, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "command.golden.json", enc)

	// The stored golden file decodes and verifies: the wire format and the
	// signature are stable across versions.
	data, err := os.ReadFile(filepath.Join("testdata", "command.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(back, testKey, "psyfit-prod", issued.Add(time.Minute)); err != nil {
		t.Fatalf("golden command does not verify: %v", err)
	}
	if back.Reason != c.Reason || back.Signature != c.Signature || !back.IssuedAt.Equal(c.IssuedAt) {
		t.Errorf("round trip changed the command: %+v", back)
	}
}

// TestCanonicalForm pins the documented rules: key order, no whitespace,
// no HTML escaping, whole-second UTC times, empty parts as [].
func TestCanonicalForm(t *testing.T) {
	c := Command{ID: "20250601T020304Z-0a1b2c3d", Host: "h", Snapshot: "latest", Reason: "a<b>&\"c\"\n\u2028",
		IssuedAt:  time.Date(2025, 6, 1, 11, 3, 4, 987654321, time.FixedZone("JST", 9*3600)),
		ExpiresAt: time.Date(2025, 6, 1, 2, 18, 4, 0, time.UTC), DryRun: true, Signature: "ignored"}
	want := `{"id":"20250601T020304Z-0a1b2c3d","host":"h","snapshot":"latest","parts":[],"reason":"a<b>&\"c\"\n\u2028",` +
		`"requested_by":"","issued_at":"2025-06-01T02:03:04Z","expires_at":"2025-06-01T02:18:04Z","dry_run":true}`
	if got := string(Canonical(c)); got != want {
		t.Errorf("canonical:\ngot  %s\nwant %s", got, want)
	}
}

func TestGoldenResult(t *testing.T) {
	r := Result{
		ID: "20250601T020304Z-0a1b2c3d", Host: "psyfit-prod", State: StateSucceeded,
		Message:  "restore 20250601T020310Z-4e5f60 of snapshot 20250531T020000Z-a1b2c3 done",
		Snapshot: "20250531T020000Z-a1b2c3", Parts: []string{PartDB, PartData}, Reason: "bad deploy",
		RequestedBy: "ops", Txn: "20250601T020310Z-4e5f60", PreSnapshot: "20250601T020311Z-778899",
		Plan:          []string{"db: restore app from the snapshot", "data: replace /var/data"},
		Steps:         []Step{{Step: "db", Status: "ok", DurationMS: 5123, Detail: "swapped in"}, {Step: "data", Status: "ok", DurationMS: 812}},
		UnavailableMS: 41, StartedAt: issued.Add(5 * time.Second), FinishedAt: issued.Add(12 * time.Second), DurationMS: 7000,
	}
	got, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "result.golden.json", append(got, '\n'))
	st := Status{ID: r.ID, Host: r.Host, State: StateRejected, Step: "verify", Reason: ReasonExpired,
		Message: "expired: at 2025-06-01T02:18:04Z, 1m0s ago", At: issued.Add(16 * time.Minute)}
	got, err = json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "status-rejected.golden.json", append(got, '\n'))
}

func TestVerifyFailures(t *testing.T) {
	now := issued.Add(time.Minute)
	resign := func(f func(*Command)) func(*Command) {
		return func(c *Command) {
			f(c)
			if err := Sign(c, testKey); err != nil {
				panic(err)
			}
		}
	}
	cases := []struct {
		name   string
		change func(*Command) // applied to a signed sample
		key    []byte
		host   string
		now    time.Time
		want   error
		msg    string // the error text contains it
		reason string
	}{
		{name: "valid", change: func(*Command) {}},
		{name: "valid dry run latest", change: resign(func(c *Command) { c.DryRun, c.Snapshot = true, Latest })},
		{name: "valid at the skew limit", change: func(*Command) {}, now: issued.Add(-ClockSkew)},
		{name: "forged: field changed after signing", change: func(c *Command) { c.Parts = []string{PartDB, PartData, PartCode} },
			want: ErrForged, msg: "forged: signature does not match", reason: ReasonForged},
		{name: "forged: dry run flipped", change: func(c *Command) { c.DryRun = true }, want: ErrForged, reason: ReasonForged},
		{name: "forged: expiry extended", change: func(c *Command) { c.ExpiresAt = c.ExpiresAt.Add(time.Hour) }, want: ErrForged},
		{name: "forged: wrong key", change: func(*Command) {}, key: []byte("another key of 32 bytes........."), want: ErrForged},
		{name: "forged: no signature", change: func(c *Command) { c.Signature = "" }, want: ErrForged, msg: "is not 64 lowercase hex digits"},
		{name: "forged: not hex", change: func(c *Command) { c.Signature = strings.Repeat("zz", 32) }, want: ErrForged, msg: "not 64 lowercase hex"},
		{name: "forged: uppercase hex", change: func(c *Command) { c.Signature = strings.ToUpper(c.Signature) }, want: ErrForged},
		{name: "forged: truncated", change: func(c *Command) { c.Signature = c.Signature[:62] }, want: ErrForged},
		{name: "expired", change: func(*Command) {}, now: issued.Add(TTL), want: ErrExpired,
			msg: "expired: at 2025-06-01T02:18:04Z, 0s ago", reason: ReasonExpired},
		{name: "expired long ago", change: func(*Command) {}, now: issued.Add(TTL + time.Hour), want: ErrExpired, msg: "1h0m0s ago"},
		{name: "issued in the future", change: func(*Command) {}, now: issued.Add(-ClockSkew - time.Second), want: ErrExpired,
			msg: "issued_at 2025-06-01T02:03:04Z is 2m1s in the future"},
		{name: "wrong host", change: func(*Command) {}, host: "other-host", want: ErrWrongHost,
			msg: `wrong host: command is for host "psyfit-prod", this is "other-host"`, reason: ReasonWrongHost},
		{name: "bad id", change: resign(func(c *Command) { c.ID = "20250601T020304Z-0a1b2c" }), want: ErrMalformed,
			msg: `command id "20250601T020304Z-0a1b2c": want YYYYMMDDTHHMMSSZ-<8 lowercase hex>`, reason: ReasonMalformed},
		{name: "id with a path", change: resign(func(c *Command) { c.ID = "../x" }), want: ErrMalformed, msg: "command id"},
		{name: "impossible id date", change: resign(func(c *Command) { c.ID = "20251399T020304Z-0a1b2c3d" }), want: ErrMalformed},
		{name: "bad snapshot", change: resign(func(c *Command) { c.Snapshot = "newest" }), want: ErrMalformed,
			msg: `snapshot "newest" is neither "latest" nor a snapshot id`},
		{name: "no parts", change: resign(func(c *Command) { c.Parts = nil }), want: ErrMalformed, msg: "parts: none given"},
		{name: "unknown part", change: resign(func(c *Command) { c.Parts = []string{"db", "redis"} }), want: ErrMalformed,
			msg: `parts: unknown part "redis"`},
		{name: "repeated part", change: resign(func(c *Command) { c.Parts = []string{"db", "db"} }), want: ErrMalformed,
			msg: `parts: "db" given twice`},
		{name: "expires before issued", change: resign(func(c *Command) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }),
			want: ErrMalformed, msg: "is not within 24h0m0s after issued_at"},
		{name: "lifetime too long", change: resign(func(c *Command) { c.ExpiresAt = c.IssuedAt.Add(MaxLifetime + time.Second) }),
			want: ErrMalformed, msg: "is not within 24h0m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := signed(t, sample())
			tc.change(&c)
			key, host, at := testKey, "psyfit-prod", now
			if tc.key != nil {
				key = tc.key
			}
			if tc.host != "" {
				host = tc.host
			}
			if !tc.now.IsZero() {
				at = tc.now
			}
			err := Verify(c, key, host, at)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if tc.reason != "" && ReasonOf(err) != tc.reason {
				t.Errorf("ReasonOf = %q, want %q", ReasonOf(err), tc.reason)
			}
		})
	}
}

func TestShortKey(t *testing.T) {
	c := sample()
	if err := Sign(&c, []byte("short")); err == nil || c.Signature != "" {
		t.Fatalf("Sign with a 5-byte key: %v, signature %q", err, c.Signature)
	}
	c = signed(t, sample())
	err := Verify(c, []byte("short"), "psyfit-prod", issued)
	if err == nil || errors.Is(err, ErrForged) || !strings.Contains(err.Error(), "key is 5 bytes, want at least 16") {
		t.Fatalf("Verify with a short key = %v, want a key error that is not ErrForged", err)
	}
}

func TestDecodeFailures(t *testing.T) {
	good, err := Encode(signed(t, sample()))
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(good), old, new, 1)) }
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"not json", []byte("restore please"), "invalid character"},
		{"empty", nil, "unexpected end of JSON input"},
		{"array", []byte(`[1]`), "cannot unmarshal array"},
		{"truncated", good[:len(good)/2], "unexpected end of JSON input"},
		{"unknown field", replace(`"dry_run": false`, `"dry_run": false, "run_as": "root"`), `unknown field "run_as"`},
		{"trailing object", append(append([]byte{}, good...), []byte(`{"id":"x"}`)...), "after top-level value"},
		{"wrong type", replace(`"dry_run": false`, `"dry_run": "no"`), "cannot unmarshal string"},
		{"time with offset", replace(`"2025-06-01T02:03:04Z"`, `"2025-06-01T11:03:04+09:00"`), `issued_at "2025-06-01T11:03:04+09:00": want UTC with whole seconds`},
		{"time with fraction", replace(`"2025-06-01T02:18:04Z"`, `"2025-06-01T02:18:04.5Z"`), `expires_at "2025-06-01T02:18:04.5Z"`},
		{"missing time", replace(`"issued_at": "2025-06-01T02:03:04Z",`, ``), `issued_at ""`},
		{"too big", append(append([]byte{}, good[:len(good)-3]...), []byte(`"`+strings.Repeat(" ", MaxSize)+`}`)...), "more than the 16384 allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if ReasonOf(err) != ReasonMalformed {
				t.Errorf("ReasonOf = %q", ReasonOf(err))
			}
		})
	}
}

func TestNewID(t *testing.T) {
	id := NewID(issued, bytes.NewReader([]byte{0xde, 0xad, 0xbe, 0xef}))
	if id != "20250601T020304Z-deadbeef" {
		t.Errorf("NewID = %q", id)
	}
	if err := ParseID(id); err != nil {
		t.Error(err)
	}
	a, b := NewID(issued, nil), NewID(issued, bytes.NewReader(nil)) // crypto/rand, and a failing reader falls back to it
	if err := ParseID(a); err != nil || ParseID(b) != nil || a == b {
		t.Errorf("random ids %q %q", a, b)
	}
}

func TestKeys(t *testing.T) {
	cases := []struct {
		key, id string
		ok      bool
	}{
		{"h/commands/20250601T020304Z-0a1b2c3d.json", "20250601T020304Z-0a1b2c3d", true},
		{"h/commands/junk.json", "junk", true},
		{"h/commands/20250601T020304Z-0a1b2c3d.claim", "", false},
		{"h/commands/20250601T020304Z-0a1b2c3d.status.json", "", false},
		{"h/commands/20250601T020304Z-0a1b2c3d.result.json", "", false},
		{"h/commands/sub/x.json", "", false},
		{"other/commands/x.json", "", false},
		{"h/commands/.json", "", false},
	}
	for _, tc := range cases {
		id, ok := CommandID("h", tc.key)
		if id != tc.id || ok != tc.ok {
			t.Errorf("CommandID(%q) = %q, %v; want %q, %v", tc.key, id, ok, tc.id, tc.ok)
		}
	}
	if k := StatusKey("h", "X"); k != "h/commands/X.status.json" {
		t.Errorf("StatusKey = %q", k)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "command.key")
	os.WriteFile(p, []byte("  "+string(testKey)+"\n"), 0o600)
	k, err := LoadKey(p)
	if err != nil || !bytes.Equal(k, testKey) {
		t.Fatalf("LoadKey = %q, %v", k, err)
	}
	os.WriteFile(p, []byte("tooshort\n"), 0o600)
	if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), p+": HMAC key is 8 bytes, want at least 16") ||
		strings.Contains(err.Error(), "tooshort") {
		t.Errorf("short key: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		os.WriteFile(p, []byte(testKey), 0o600)
		os.Chmod(p, mode)
		_, err := LoadKey(p)
		if want := fmt.Sprintf("command key %s is mode %04o, readable or writable by group or others: chmod 600 %s", p, mode, p); !errors.Is(err, ErrKeyFileMode) || err.Error() != want {
			t.Errorf("mode %04o: %v\nwant %s", mode, err, want)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing.key")); !errors.Is(err, os.ErrNotExist) ||
		!strings.Contains(err.Error(), "missing.key") {
		t.Errorf("missing key file: %v", err)
	}
}

// A long malformed id is shortened in the error without cutting a
// character: no \x escapes of half a rune in the message.
func TestParseIDLongJapanese(t *testing.T) {
	err := ParseID(strings.Repeat("日", 40))
	if err == nil {
		t.Fatal("ParseID accepted a malformed id")
	}
	msg := err.Error()
	if strings.Contains(msg, `\x`) || !strings.Contains(msg, "日日…") {
		t.Errorf("message %q: want the id cut on a character boundary with …", msg)
	}
}
