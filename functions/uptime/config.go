package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"backstop/shared/alert"
	"backstop/shared/condition"
)

// ErrInvalidTargets is wrapped by every error ParseTargets returns for a
// document that was read but is not a valid targets configuration.
var ErrInvalidTargets = errors.New("invalid targets")

// FieldError names the field at fault, e.g. "targets[2].url: must be an
// http:// or https:// URL".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidTargets) hold for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidTargets }

// Target kinds.
const (
	KindHTTP        = "http"        // request the URL, hold the response to the conditions; failing is down
	KindCertificate = "certificate" // TLS handshake with the URL's host; failing conditions are a warning, never down
)

// Defaults applied by ParseTargets.
const (
	DefaultTimeout       = 10 * time.Second
	MaxTimeout           = 5 * time.Minute
	DefaultHTTPCondition = "[STATUS] == 200"
	// DefaultCertCondition warns 14 days before the certificate expires.
	DefaultCertCondition = "[CERTIFICATE_EXPIRATION] > 336h"
	maxThreshold         = 100
	maxNameLen           = 128
)

// Targets is the uptime configuration document: defaults for every
// target and the targets themselves. It is JSON, either an object
// {"locale": ..., "to": [...], "targets": [...]} or a bare array of targets.
type Targets struct {
	Host     string   `json:"host,omitempty"`     // events' host; "" = each target URL's host name
	Locale   string   `json:"locale,omitempty"`   // ja | en (default en) for targets without their own
	To       []string `json:"to,omitempty"`       // recipients for targets without their own
	Reminder string   `json:"reminder,omitempty"` // "still down" interval, e.g. "1h" (default); "0" or "never": none
	Targets  []Target `json:"targets"`

	reminder time.Duration
}

// Target is one external check. Field names are the JSON keys.
type Target struct {
	Name             string            `json:"name"`
	Kind             string            `json:"kind,omitempty"` // http (default) | certificate
	URL              string            `json:"url"`
	Method           string            `json:"method,omitempty"`  // default GET
	Headers          map[string]string `json:"headers,omitempty"` // sent as is, never logged
	Timeout          string            `json:"timeout,omitempty"` // Go duration, default 10s
	Conditions       []string          `json:"conditions,omitempty"`
	FailureThreshold int               `json:"failure_threshold,omitempty"` // default 2
	SuccessThreshold int               `json:"success_threshold,omitempty"` // default 2
	To               []string          `json:"to,omitempty"`                // recipients; default the document's
	Locale           string            `json:"locale,omitempty"`            // ja | en; default the document's

	timeout time.Duration
	conds   []*condition.Condition
	shown   string // URL with any password redacted
	host    string // URL host name
	addr    string // host:port for certificate targets
}

// policy is the target's alert policy.
func (t *Target) policy(reminder time.Duration) alert.Policy {
	return alert.Policy{FailureThreshold: t.FailureThreshold, SuccessThreshold: t.SuccessThreshold, Reminder: reminder}
}

// ParseTargets decodes and validates a targets document, fills in the
// defaults and parses every condition. All problems are reported at once,
// joined, each a *FieldError naming its field (targets[2].url) and
// matching ErrInvalidTargets.
func ParseTargets(data []byte) (*Targets, error) {
	var doc struct {
		Targets
		Targets_ []json.RawMessage `json:"targets"`
	}
	trimmed := bytes.TrimSpace(data)
	var raws []json.RawMessage
	switch {
	case len(trimmed) == 0:
		return nil, &FieldError{"targets", "document is empty"}
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, &FieldError{"targets", "not a JSON array of targets: " + jsonCause(err)}
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			return nil, &FieldError{"document", "not a JSON targets object: " + jsonCause(err)}
		}
		raws = doc.Targets_
	}
	cfg := doc.Targets
	cfg.Targets = nil

	var errs []error
	fail := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, a...)})
	}
	cfg.Locale = strings.TrimSpace(cfg.Locale)
	if cfg.Locale != "" && cfg.Locale != "ja" && cfg.Locale != "en" {
		fail("locale", "must be ja or en, not %q", cfg.Locale)
	}
	for i, to := range cfg.To {
		if reason := checkAddress(to); reason != "" {
			fail(fmt.Sprintf("to[%d]", i), "%s", reason)
		}
	}
	switch r := strings.TrimSpace(cfg.Reminder); r {
	case "":
		cfg.reminder = time.Hour
	case "0", "never":
		cfg.reminder = -1
	default:
		d, err := time.ParseDuration(r)
		if err != nil || d < 0 {
			fail("reminder", "not a duration (like 30m, 1h) or never: %q", r)
		}
		cfg.reminder = d
		if d == 0 {
			cfg.reminder = -1
		}
	}
	if len(raws) == 0 {
		fail("targets", "none configured")
	}
	seen := map[string]int{}
	for i, raw := range raws {
		field := fmt.Sprintf("targets[%d]", i)
		var t Target
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			fail(field, "%s", jsonCause(err))
			continue
		}
		errs = append(errs, t.validate(field)...)
		if t.Name != "" {
			if j, dup := seen[t.Name]; dup {
				fail(field+".name", "%q is also the name of targets[%d]", t.Name, j)
			}
			seen[t.Name] = i
		}
		if t.Locale == "" {
			t.Locale = cfg.Locale
		}
		if t.Locale == "" {
			t.Locale = "en"
		}
		if len(t.To) == 0 {
			t.To = cfg.To
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// validate checks one target, fills its defaults and parses its conditions.
func (t *Target) validate(field string) []error {
	var errs []error
	fail := func(sub, format string, a ...any) {
		errs = append(errs, &FieldError{field + "." + sub, fmt.Sprintf(format, a...)})
	}
	t.Name = strings.TrimSpace(t.Name)
	switch {
	case t.Name == "":
		fail("name", "required")
	case len(t.Name) > maxNameLen:
		fail("name", "longer than %d bytes", maxNameLen)
	case strings.ContainsAny(t.Name, "\x00\r\n\t"):
		fail("name", "contains a control character")
	}
	t.Kind = strings.ToLower(strings.TrimSpace(t.Kind))
	if t.Kind == "" {
		t.Kind = KindHTTP
	}
	if t.Kind != KindHTTP && t.Kind != KindCertificate {
		fail("kind", "must be http or certificate, not %q", t.Kind)
	}

	raw := strings.TrimSpace(t.URL)
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		fail("url", "required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		// err would quote the URL, password and all.
		fail("url", "must be an http:// or https:// URL")
	case t.Kind == KindCertificate && u.Scheme != "https":
		fail("url", "a certificate target needs an https:// URL")
	default:
		t.URL, t.shown, t.host = raw, u.Redacted(), u.Hostname()
		port := u.Port()
		if port == "" {
			port = "443"
		}
		t.addr = u.Hostname() + ":" + port
		if strings.Contains(t.host, ":") {
			t.addr = "[" + t.host + "]:" + port
		}
	}

	t.Method = strings.ToUpper(strings.TrimSpace(t.Method))
	if t.Method == "" {
		t.Method = http.MethodGet
	}
	if !httpToken(t.Method) {
		fail("method", "%q is not an HTTP method", t.Method)
	}
	for name := range t.Headers {
		if !httpToken(name) {
			fail("headers", "%q is not a header name", name)
		}
	}
	if t.Kind == KindCertificate && (len(t.Headers) > 0 || t.Method != http.MethodGet) {
		fail("kind", "a certificate target sends no request: drop method and headers")
	}

	t.timeout = DefaultTimeout
	if s := strings.TrimSpace(t.Timeout); s != "" {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			fail("timeout", "not a duration (like 5s, 500ms): %q", s)
		case d <= 0 || d > MaxTimeout:
			fail("timeout", "must be more than 0 and at most %s, not %s", MaxTimeout, d)
		default:
			t.timeout = d
		}
	}

	exprs := t.Conditions
	if len(exprs) == 0 {
		exprs = []string{DefaultHTTPCondition}
		if t.Kind == KindCertificate {
			exprs = []string{DefaultCertCondition}
		}
	}
	t.conds = nil
	for i, expr := range exprs {
		c, err := condition.Parse(expr)
		if err != nil {
			fail(fmt.Sprintf("conditions[%d]", i), "%v", err)
			continue
		}
		t.conds = append(t.conds, c)
	}
	t.Conditions = exprs

	for _, th := range []struct {
		name string
		v    *int
	}{{"failure_threshold", &t.FailureThreshold}, {"success_threshold", &t.SuccessThreshold}} {
		if *th.v == 0 {
			*th.v = 2
		}
		if *th.v < 1 || *th.v > maxThreshold {
			fail(th.name, "must be 1..%d, not %d", maxThreshold, *th.v)
		}
	}
	for i, to := range t.To {
		if reason := checkAddress(to); reason != "" {
			fail(fmt.Sprintf("to[%d]", i), "%s", reason)
		}
	}
	t.Locale = strings.TrimSpace(t.Locale)
	if t.Locale != "" && t.Locale != "ja" && t.Locale != "en" {
		fail("locale", "must be ja or en, not %q", t.Locale)
	}
	return errs
}

// checkAddress returns why s is not a bare e-mail address, or "".
func checkAddress(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != strings.TrimSpace(s) {
		return fmt.Sprintf("%q is not an e-mail address", s)
	}
	return ""
}

// jsonCause shortens encoding/json's messages ("json: unknown field \"x\"").
func jsonCause(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		where := te.Field
		if where == "" {
			where = "value"
		}
		return fmt.Sprintf("%s: want %s, got JSON %s", where, te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// httpToken reports whether s is an RFC 9110 token (method, header name).
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
