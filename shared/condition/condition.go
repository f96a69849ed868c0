package condition

import (
	"fmt"
	"strconv"
	"strings"
)

// Condition is one parsed expression: an operand, an operator, an operand.
// It is immutable and safe for concurrent use.
type Condition struct {
	expr        string
	left, right operand
	op          string
}

// SyntaxError says why an expression is not a condition.
type SyntaxError struct {
	Expr   string
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid condition %q: %s", e.Expr, e.Reason)
}

// placeholder is a value taken from the observation.
type placeholder int

const (
	phStatus placeholder = iota + 1
	phBody
	phResponseTime
	phCertExpiration
	phConnected
	phIP
)

func (p placeholder) String() string {
	switch p {
	case phStatus:
		return "[STATUS]"
	case phBody:
		return "[BODY]"
	case phResponseTime:
		return "[RESPONSE_TIME]"
	case phCertExpiration:
		return "[CERTIFICATE_EXPIRATION]"
	case phConnected:
		return "[CONNECTED]"
	case phIP:
		return "[IP]"
	}
	return "[?]"
}

func lookupPlaceholder(name string) (placeholder, bool) {
	for p := phStatus; p <= phIP; p++ {
		if p.String() == "["+name+"]" {
			return p, true
		}
	}
	return 0, false
}

const knownPlaceholders = "[STATUS], [BODY], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [IP]"

type kind int

const (
	kindLiteral     kind = iota
	kindPlaceholder      // [STATUS], [BODY].a.b[0]
	kindLen              // len([BODY]...)
	kindHas              // has([BODY]...)
	kindPat              // pat(*wildcard*)
	kindAny              // any(a, b)
)

// step is one hop of a [BODY] path: .key or [index].
type step struct {
	key     string
	index   int
	isIndex bool
}

type operand struct {
	src     string // as written, trimmed
	kind    kind
	ph      placeholder // kindPlaceholder, kindLen, kindHas
	path    []step      // when ph is phBody
	lit     string      // kindLiteral value, kindPat pattern
	options []string    // kindAny
}

var operators = []string{"==", "!=", "<=", ">=", "<", ">"}

const knownOperators = "==, !=, <, >, <=, >="

// Parse reads one condition. Any syntax problem (unknown placeholder or
// function, missing or unknown operator, a bad [BODY] path, pat() with an
// ordering operator, a non-number beside < or >) is a *SyntaxError, so a
// config can be rejected before anything runs.
func Parse(expr string) (*Condition, error) {
	fail := func(format string, a ...any) (*Condition, error) {
		return nil, &SyntaxError{Expr: expr, Reason: fmt.Sprintf(format, a...)}
	}
	s := strings.TrimSpace(expr)
	if s == "" {
		return fail("empty")
	}
	if reason := checkBalance(s); reason != "" {
		return fail("%s", reason)
	}
	at, op, reason := findOperator(s)
	if reason != "" {
		return fail("%s", reason)
	}
	ls, rs := strings.TrimSpace(s[:at]), strings.TrimSpace(s[at+len(op):])
	if ls == "" {
		return fail("nothing before %s", op)
	}
	if rs == "" {
		return fail("nothing after %s", op)
	}
	l, reason := parseOperand(ls)
	if reason != "" {
		return fail("%s", reason)
	}
	r, reason := parseOperand(rs)
	if reason != "" {
		return fail("%s", reason)
	}
	if reason := validate(l, op, r); reason != "" {
		return fail("%s", reason)
	}
	return &Condition{expr: expr, left: l, right: r, op: op}, nil
}

// String returns the expression as it was written.
func (c *Condition) String() string { return c.expr }

// checkBalance reports unbalanced [] and ().
func checkBalance(s string) string {
	var stack []byte
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '[', '(':
			stack = append(stack, b)
		case ']', ')':
			open := byte('[')
			if b == ')' {
				open = '('
			}
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return fmt.Sprintf("unbalanced %q", b)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Sprintf("unclosed %q", stack[len(stack)-1])
	}
	return ""
}

// findOperator finds the one operator outside brackets and parentheses.
// A lone "!" is text; any other run of = < > ! must be an operator.
func findOperator(s string) (at int, op, reason string) {
	depth := 0
	at = -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '(':
			depth++
			continue
		case ']', ')':
			depth--
			continue
		}
		if depth > 0 || !strings.ContainsRune("=<>!", rune(s[i])) {
			continue
		}
		j := i
		for j < len(s) && strings.ContainsRune("=<>!", rune(s[j])) {
			j++
		}
		run := s[i:j]
		i = j - 1
		if run == "!" {
			continue
		}
		known := false
		for _, o := range operators {
			if run == o {
				known = true
			}
		}
		if !known {
			return 0, "", fmt.Sprintf("unknown operator %q (want one of %s)", run, knownOperators)
		}
		if at >= 0 {
			return 0, "", fmt.Sprintf("more than one operator (%s and %s)", op, run)
		}
		at, op = j-len(run), run
	}
	if at < 0 {
		return 0, "", fmt.Sprintf("missing operator (want one of %s)", knownOperators)
	}
	return at, op, ""
}

func parseOperand(s string) (operand, string) {
	if s[0] == '[' {
		return parsePlaceholder(s)
	}
	name, inner, isCall := splitCall(s)
	if !isCall {
		return operand{src: s, kind: kindLiteral, lit: s}, ""
	}
	o := operand{src: s}
	switch name {
	case "len", "has":
		o.kind = kindLen
		if name == "has" {
			o.kind = kindHas
		}
		arg := strings.TrimSpace(inner)
		if arg == "" || arg[0] != '[' {
			return o, fmt.Sprintf("%s() takes [BODY] or a [BODY] path, got %q", name, arg)
		}
		in, reason := parsePlaceholder(arg)
		if reason != "" {
			return o, reason
		}
		if in.ph != phBody {
			return o, fmt.Sprintf("%s() takes [BODY] or a [BODY] path, got %s", name, arg)
		}
		o.ph, o.path = in.ph, in.path
	case "pat":
		o.kind, o.lit = kindPat, inner
	case "any":
		o.kind = kindAny
		for _, opt := range strings.Split(inner, ",") {
			opt = strings.TrimSpace(opt)
			if opt == "" {
				return o, "any() has an empty option"
			}
			o.options = append(o.options, opt)
		}
	default:
		return o, fmt.Sprintf("unknown function %s() (want len, has, pat or any)", name)
	}
	return o, ""
}

// splitCall recognises name(inner) where the parenthesis after name closes
// at the very end of s.
func splitCall(s string) (name, inner string, ok bool) {
	open := strings.IndexByte(s, '(')
	if open <= 0 || s[len(s)-1] != ')' {
		return "", "", false
	}
	name = s[:open]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 && i != len(s)-1 {
				return "", "", false
			}
		}
	}
	return name, s[open+1 : len(s)-1], true
}

func parsePlaceholder(s string) (operand, string) {
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return operand{}, fmt.Sprintf("unclosed placeholder %q", s)
	}
	name := s[1:end]
	ph, ok := lookupPlaceholder(name)
	if !ok {
		return operand{}, fmt.Sprintf("unknown placeholder [%s] (want one of %s)", name, knownPlaceholders)
	}
	o := operand{src: s, kind: kindPlaceholder, ph: ph}
	rest := s[end+1:]
	if rest == "" {
		return o, ""
	}
	if ph != phBody {
		return o, fmt.Sprintf("unexpected %q after %s (only [BODY] takes a path)", rest, ph)
	}
	path, reason := parsePath(rest)
	o.path = path
	return o, reason
}

// parsePath reads .key and [index] hops after [BODY].
func parsePath(rest string) ([]step, string) {
	var path []step
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			n := strings.IndexAny(rest, ".[")
			if n < 0 {
				n = len(rest)
			}
			key := rest[:n]
			if strings.TrimSpace(key) == "" || strings.ContainsAny(key, "]()") {
				return nil, fmt.Sprintf("bad key %q in [BODY] path (want [BODY].key.sub[0])", key)
			}
			path = append(path, step{key: key})
			rest = rest[n:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, "unclosed [ in [BODY] path"
			}
			idx := rest[1:end]
			if idx == "*" {
				return nil, "wildcard [*] in [BODY] path is not supported (use len() or an index like [0])"
			}
			n, err := strconv.Atoi(idx)
			if err != nil || n < 0 || strings.ContainsAny(idx, "+- ") {
				return nil, fmt.Sprintf("bad index [%s] in [BODY] path (want [0], [1], ...)", idx)
			}
			path = append(path, step{index: n, isIndex: true})
			rest = rest[end+1:]
		default:
			return nil, fmt.Sprintf("unexpected %q in [BODY] path (want .key or [index])", rest)
		}
	}
	return path, ""
}

func validate(l operand, op string, r operand) string {
	isFunc := func(o operand) bool { return o.kind == kindPat || o.kind == kindAny }
	refers := func(o operand) bool {
		return o.kind == kindPlaceholder || o.kind == kindLen || o.kind == kindHas
	}
	if isFunc(l) && isFunc(r) {
		return "pat() and any() go on one side only"
	}
	if !refers(l) && !refers(r) {
		return "compares two constants (want a placeholder such as [STATUS] on one side)"
	}
	if op == "==" || op == "!=" {
		return ""
	}
	for _, o := range []operand{l, r} {
		switch {
		case isFunc(o):
			return fmt.Sprintf("%s works only with == and !=", o.src)
		case o.kind == kindHas:
			return fmt.Sprintf("%s is true or false, %s needs numbers", o.src, op)
		case o.kind == kindPlaceholder && (o.ph == phConnected || o.ph == phIP):
			return fmt.Sprintf("%s is not a number, %s needs numbers", o.src, op)
		case o.kind == kindLiteral:
			if _, ok := literalNumber(o.lit); !ok {
				return fmt.Sprintf("%q is not a number or duration, %s needs numbers", o.lit, op)
			}
		}
	}
	return ""
}

// canonical renders the parsed structure; Parse(canonical()) gives the same
// structure back (the fuzz test holds it to that).
func (c *Condition) canonical() string {
	return c.left.canonical() + " " + c.op + " " + c.right.canonical()
}

func (o operand) canonical() string {
	switch o.kind {
	case kindPlaceholder:
		return o.ph.String() + pathString(o.path)
	case kindLen:
		return "len(" + o.ph.String() + pathString(o.path) + ")"
	case kindHas:
		return "has(" + o.ph.String() + pathString(o.path) + ")"
	case kindPat:
		return "pat(" + o.lit + ")"
	case kindAny:
		return "any(" + strings.Join(o.options, ", ") + ")"
	}
	return o.lit
}

func pathString(path []step) string {
	var b strings.Builder
	for _, st := range path {
		if st.isIndex {
			fmt.Fprintf(&b, "[%d]", st.index)
		} else {
			b.WriteString("." + st.key)
		}
	}
	return b.String()
}
