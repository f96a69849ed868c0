package condition

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Input is what one probe observed; a condition's placeholders read it.
type Input struct {
	Status       int           // [STATUS]
	Body         []byte        // [BODY]
	ResponseTime time.Duration // [RESPONSE_TIME], compared in ms
	CertExpiry   time.Duration // [CERTIFICATE_EXPIRATION]: remaining validity of the peer certificate; 0 if none
	Connected    bool          // [CONNECTED]
	IP           string        // [IP]
}

// Outcome is the verdict of one condition. Explanation is the expression
// with each placeholder's resolved value beside it, e.g.
// "[STATUS] (502) == 200" or "[BODY].status (absent: body is not JSON) == ok".
type Outcome struct {
	OK          bool
	Explanation string
}

// Eval resolves the placeholders against in and compares. Numbers compare
// numerically when both sides read as numbers (durations like 336h on the
// literal side count as milliseconds), else as text. A value that cannot be
// resolved (a [BODY] path on a body that is not JSON, a missing key, no
// certificate) fails the condition whatever the operator, except through
// has(). Eval never panics.
func (c *Condition) Eval(in Input) Outcome {
	var body bodyCache
	l := resolve(c.left, in, &body)
	r := resolve(c.right, in, &body)
	ok := compare(c.op, c.left, l, c.right, r)
	if c.op != "==" && c.op != "!=" {
		l, r = markNaN(l), markNaN(r)
	}
	return Outcome{OK: ok, Explanation: show(c.left, l) + " " + c.op + " " + show(c.right, r)}
}

// markNaN notes, for < and >, a resolved value that is not a number.
func markNaN(v value) value {
	if v.absent == "" && !v.isNum {
		v.shown = printable(v.text) + ", not a number"
	}
	return v
}

// value is a resolved operand.
type value struct {
	text   string // compared as text
	shown  string // what the explanation prints, when not text
	absent string // why there is no value
	num    number
	isNum  bool
}

func textValue(s string) value {
	n, ok := decimal(strings.TrimSpace(s))
	return value{text: s, num: n, isNum: ok}
}

func literalValue(s string) value {
	n, ok := literalNumber(s)
	return value{text: s, num: n, isNum: ok}
}

func msValue(d time.Duration) value {
	ms := d.Milliseconds()
	return value{text: strconv.FormatInt(ms, 10), num: intNumber(ms), isNum: true}
}

func resolve(o operand, in Input, body *bodyCache) value {
	switch o.kind {
	case kindLiteral:
		return literalValue(o.lit)
	case kindPat, kindAny:
		return value{text: o.src}
	case kindHas:
		if len(o.path) == 0 {
			return value{text: strconv.FormatBool(len(in.Body) > 0)}
		}
		_, absent := body.lookup(in.Body, o.path)
		return value{text: strconv.FormatBool(absent == "")}
	case kindLen:
		if len(o.path) == 0 && !body.isJSON(in.Body) {
			return textValue(strconv.Itoa(len(in.Body)))
		}
		v, absent := body.lookup(in.Body, o.path)
		if absent != "" {
			return value{absent: absent}
		}
		return textValue(strconv.Itoa(jsonLen(v)))
	}
	switch o.ph {
	case phStatus:
		return textValue(strconv.Itoa(in.Status))
	case phResponseTime:
		return msValue(in.ResponseTime)
	case phCertExpiration:
		if in.CertExpiry == 0 {
			return value{absent: "no certificate"}
		}
		v := msValue(in.CertExpiry)
		v.shown = formatDuration(in.CertExpiry)
		return v
	case phConnected:
		return value{text: strconv.FormatBool(in.Connected)}
	case phIP:
		if in.IP == "" {
			return value{absent: "no IP"}
		}
		return value{text: in.IP}
	}
	// phBody
	if len(o.path) == 0 {
		return textValue(string(in.Body))
	}
	v, absent := body.lookup(in.Body, o.path)
	if absent != "" {
		return value{absent: absent}
	}
	return textValue(jsonText(v))
}

func compare(op string, lo operand, l value, ro operand, r value) bool {
	if l.absent != "" || r.absent != "" {
		return false
	}
	var eq bool
	switch {
	case lo.kind == kindPat:
		eq = wildcard(lo.lit, r.text)
	case ro.kind == kindPat:
		eq = wildcard(ro.lit, l.text)
	case lo.kind == kindAny:
		eq = anyOf(lo.options, r)
	case ro.kind == kindAny:
		eq = anyOf(ro.options, l)
	default:
		if op == "==" || op == "!=" {
			eq = equal(l, r)
			break
		}
		if !l.isNum || !r.isNum {
			return false
		}
		c := l.num.cmp(r.num)
		switch op {
		case "<":
			return c < 0
		case ">":
			return c > 0
		case "<=":
			return c <= 0
		case ">=":
			return c >= 0
		}
		return false
	}
	if op == "!=" {
		return !eq
	}
	return eq
}

func equal(a, b value) bool {
	if a.isNum && b.isNum {
		return a.num.cmp(b.num) == 0
	}
	return a.text == b.text
}

func anyOf(options []string, v value) bool {
	for _, opt := range options {
		if equal(v, literalValue(opt)) {
			return true
		}
	}
	return false
}

// wildcard matches s against a pattern where * stands for any run of
// characters (none included); everything else matches itself.
func wildcard(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// show renders one side of the explanation.
func show(o operand, v value) string {
	switch o.kind {
	case kindLiteral, kindPat, kindAny:
		return o.src
	}
	switch {
	case v.absent != "":
		return o.src + " (absent: " + v.absent + ")"
	case v.shown != "":
		return o.src + " (" + v.shown + ")"
	}
	return o.src + " (" + printable(v.text) + ")"
}

const maxShown = 64

// printable keeps an explanation on one line and short.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > maxShown {
		s = string([]rune(s)[:maxShown]) + "...(truncated)"
	}
	return s
}

// formatDuration prints whole seconds and drops zero tails: 336h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.Truncate(time.Second).String()
	if s == "0s" {
		return s
	}
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	return s
}

// bodyCache decodes the body as JSON at most once per evaluation.
type bodyCache struct {
	done   bool
	root   any
	absent string
}

func (b *bodyCache) decode(body []byte) {
	if b.done {
		return
	}
	b.done = true
	if len(bytes.TrimSpace(body)) == 0 {
		b.absent = "body is empty"
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&b.root); err != nil {
		b.absent = "body is not JSON"
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		b.root, b.absent = nil, "body is not JSON"
	}
}

func (b *bodyCache) isJSON(body []byte) bool {
	b.decode(body)
	return b.absent == ""
}

// lookup walks path from the JSON root; absent says why it found nothing.
func (b *bodyCache) lookup(body []byte, path []step) (v any, absent string) {
	b.decode(body)
	if b.absent != "" {
		return nil, b.absent
	}
	cur, where := b.root, "[BODY]"
	for _, st := range path {
		if st.isIndex {
			arr, ok := cur.([]any)
			if !ok {
				return nil, where + " is not an array"
			}
			if st.index >= len(arr) {
				return nil, fmt.Sprintf("%s has %d elements, no [%d]", where, len(arr), st.index)
			}
			cur = arr[st.index]
			where += "[" + strconv.Itoa(st.index) + "]"
			continue
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, where + " is not an object"
		}
		next, ok := obj[st.key]
		if !ok {
			if where == "[BODY]" {
				return nil, fmt.Sprintf("no key %q", st.key)
			}
			return nil, fmt.Sprintf("no key %q in %s", st.key, where)
		}
		cur = next
		where += "." + st.key
	}
	return cur, ""
}

// jsonText is a JSON value as compared: strings bare, numbers as written,
// objects and arrays as compact JSON.
func jsonText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonLen counts elements, keys or characters.
func jsonLen(v any) int {
	switch t := v.(type) {
	case []any:
		return len(t)
	case map[string]any:
		return len(t)
	case string:
		return utf8.RuneCountInString(t)
	}
	return len(jsonText(v))
}
