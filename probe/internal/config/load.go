package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid marks every configuration error; test with errors.Is.
var ErrInvalid = errors.New("invalid configuration")

// FieldError names the field at fault, e.g. `checks[2].warn: must be 1..100`.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Errors is every problem found in one file, in file order.
type Errors []*FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes each FieldError to errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Env reads environment variables; os.LookupEnv in production, a map in tests.
type Env func(key string) (string, bool)

// Load reads, expands, decodes, overrides, defaults and validates the file at
// path. Every error names the field at fault and wraps ErrInvalid; no secret
// appears in any error.
func Load(path string, env Env) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	cfg, err := Parse(data, env)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for bytes already read.
func Parse(data []byte, env Env) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Msg: "the file is empty"}
		}
		return nil, &FieldError{Msg: "not valid YAML: " + err.Error()}
	}
	var unset []string
	expandNode(&root, env, &unset)

	var errs Errors
	lines := map[int]string{}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	walkKeys(doc, reflect.TypeOf(Config{}), "", lines, &errs)
	cfg := &Config{}
	if err := doc.Decode(cfg); err != nil {
		if len(errs) > 0 {
			// the unknown keys explain what went wrong; the rest may follow from them
			return nil, errs
		}
		return nil, decodeError(err, lines)
	}
	if err := applyEnv(cfg, env); err != nil {
		return nil, append(errs, err.(Errors)...)
	}
	applyDefaults(cfg, env)
	// Report every problem in one pass: unknown keys and invalid values.
	errs = append(errs, Validate(cfg)...)
	if len(errs) > 0 {
		if len(unset) > 0 {
			sort.Strings(unset)
			errs = append(errs, &FieldError{Msg: "note: referenced but unset in the environment: " + strings.Join(dedup(unset), ", ")})
		}
		return nil, errs
	}
	return cfg, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandNode replaces ${VAR} in every scalar value (not in keys) after
// parsing, so a value holding YAML syntax (": ", "#", quotes) stays a value.
func expandNode(n *yaml.Node, env Env, unset *[]string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = varRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := env(name)
			if !ok {
				*unset = append(*unset, name)
			}
			return v
		})
		if n.Tag == "" || n.Tag == "!!null" {
			n.Tag = "!!str"
		}
		return
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			continue // keys are never expanded
		}
		expandNode(c, env, unset)
	}
}

// walkKeys reports keys that the struct type does not have, with their full
// path, and records which path each line holds for decode errors.
func walkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	lines[n.Line] = path
	if t == reflect.TypeOf(Duration(0)) {
		var d Duration
		if n.Kind != yaml.ScalarNode || d.UnmarshalText([]byte(n.Value)) != nil {
			*errs = append(*errs, &FieldError{Field: path, Msg: "not a duration (like 90s, 5m, 1h)"})
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				*errs = append(*errs, &FieldError{Field: path, Msg: "must be a mapping (key: value)"})
			}
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &FieldError{Field: p, Msg: "unknown key" + suggest(k.Value, fields)})
				continue
			}
			lines[k.Line] = p
			walkKeys(v, ft, p, lines, errs)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return
		}
		if n.Kind != yaml.SequenceNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				*errs = append(*errs, &FieldError{Field: path, Msg: "must be a list"})
			}
			return
		}
		for i, c := range n.Content {
			walkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				*errs = append(*errs, &FieldError{Field: path, Msg: "must be a mapping (key: value)"})
			}
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			lines[n.Content[i].Line] = p
			walkKeys(n.Content[i+1], t.Elem(), p, lines, errs)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(key, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var lineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeError turns yaml's "line 7: cannot unmarshal ..." into field errors.
// The offending value is left out of the message: it may be a secret.
func decodeError(err error, lines map[int]string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &FieldError{Msg: "decode: " + err.Error()}
	}
	var errs Errors
	for _, msg := range te.Errors {
		field, text := "", msg
		if m := lineRe.FindStringSubmatch(msg); m != nil {
			ln, _ := strconv.Atoi(m[1])
			field, text = lines[ln], m[2]
		}
		errs = append(errs, &FieldError{Field: field, Msg: describeTypeError(text)})
	}
	return errs
}

var unmarshalRe = regexp.MustCompile("cannot unmarshal !!(\\w+) .* into (\\S+)")

func describeTypeError(text string) string {
	if strings.Contains(text, "not a duration") {
		if i := strings.Index(text, "not a duration"); i >= 0 {
			return "not a duration (like 90s, 5m, 1h)"
		}
	}
	if m := unmarshalRe.FindStringSubmatch(text); m != nil {
		want := m[2]
		switch {
		case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "float"):
			want = "a number"
		case want == "bool", want == "*bool":
			want = "true or false"
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "map"):
			want = "a mapping"
		}
		return fmt.Sprintf("must be %s (got a %s)", want, m[1])
	}
	return text
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// applyEnv applies the environment variables operators already use; they
// override the file. A malformed value names the variable.
func applyEnv(c *Config, env Env) error {
	var errs Errors
	str := func(name string, dst *string) {
		if v, ok := env(name); ok && v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) {
		if v, ok := env(name); ok && v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				errs = append(errs, &FieldError{Field: "$" + name, Msg: "must be a whole number ≥ 0"})
				return
			}
			*dst = n
		}
	}
	secs := func(name string, dst *Duration) {
		if v, ok := env(name); ok && v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 {
				errs = append(errs, &FieldError{Field: "$" + name, Msg: "must be a whole number of seconds > 0"})
				return
			}
			*dst = Duration(time.Duration(n) * time.Second)
		}
	}
	str("BACKUP_DIR", &c.Backup.Dir)
	num("BACKUP_RETENTION", &c.Backup.Retention.Count)
	num("BACKUP_RETENTION_DAYS", &c.Backup.Retention.Days)
	str("DATA_BASE_DIR", &c.Backup.DataDir)
	if v, ok := env("DATABASE_URL"); ok && v != "" {
		c.Backup.Database.DSN = Secret(v)
	}
	if v, ok := env("ROLLBACK_CANARY_ENABLED"); ok && v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, &FieldError{Field: "$ROLLBACK_CANARY_ENABLED", Msg: "must be true or false"})
		} else {
			c.Rollback.Canary = &b
		}
	}
	secs("ROLLBACK_READY_TIMEOUT_SEC", &c.Rollback.Timeout)
	secs("ROLLBACK_READY_INTERVAL_SEC", &c.Rollback.Interval)
	if v, ok := env("MONITOR_ALERT_EMAIL"); ok && v != "" {
		c.Alerts.To = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.Alerts.To = append(c.Alerts.To, a)
			}
		}
	}
	str("MAILER_FROM_ADDRESS", &c.Alerts.From)
	if v, ok := env("SENDGRID_API_KEY"); ok && v != "" {
		c.Alerts.SendGridAPIKey = Secret(v)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
