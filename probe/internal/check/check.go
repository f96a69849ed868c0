package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"backstop/probe/internal/config"
)

// Status is the outcome of one check, ordered by severity. Its value is the
// exit code of `probe check` (the monitoring-plugin convention).
type Status int

const (
	OK       Status = 0
	Warn     Status = 1
	Critical Status = 2
	Unknown  Status = 3
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Critical:
		return "critical"
	default:
		return "unknown"
	}
}

// MarshalText writes the status as its word.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Worst returns the status of a whole round: critical if any check is
// critical, else unknown if any is unknown, else warn if any warns, else ok.
func Worst(results []Result) Status {
	worst := OK
	for _, r := range results {
		if rank(r.Status) > rank(worst) {
			worst = r.Status
		}
	}
	return worst
}

// rank orders statuses for a round: a critical check makes the round
// critical even when another one is unknown.
func rank(s Status) int {
	switch s {
	case OK:
		return 0
	case Warn:
		return 1
	case Unknown:
		return 2
	default: // Critical
		return 3
	}
}

// Result is what one check observed. It carries the cause, not a bool:
// Message says in one line what is wrong (or what was seen when OK), Value
// is the headline figure ("HTTP 200", "87.1%", "9 days"), Observed holds
// the raw numbers for --json and metrics. No secret may appear in any field.
type Result struct {
	Name     string         `json:"name"`
	Type     string         `json:"type"`
	Status   Status         `json:"status"`
	Value    string         `json:"value"`
	Message  string         `json:"message"`
	Latency  time.Duration  `json:"-"`
	Observed map[string]any `json:"observed,omitempty"`
	At       time.Time      `json:"at"`
}

// Checker runs one configured check. Check must honour ctx (its deadline is
// the check's timeout) and must not panic; a failure to observe is a Result
// with Status Unknown and the reason, never an error.
type Checker interface {
	Check(ctx context.Context) Result
}

// Factory builds a Checker from its validated config entry. It may return an
// error naming the field at fault (e.g. `conditions[1]: ...`).
type Factory func(c config.Check) (Checker, error)

var factories = map[string]Factory{}

// register adds a check kind; each kind's file calls it from init.
func register(typ string, f Factory) {
	if _, dup := factories[typ]; dup {
		panic("check: duplicate type " + typ)
	}
	factories[typ] = f
}

// Types lists the registered check types, sorted.
func Types() []string {
	out := make([]string, 0, len(factories))
	for t := range factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New builds the Checker for one config entry.
func New(c config.Check) (Checker, error) {
	f, ok := factories[c.Type]
	if !ok {
		return nil, fmt.Errorf("check %q: unknown type %q (want one of %s)", c.Name, c.Type, strings.Join(Types(), ", "))
	}
	ch, err := f(c)
	if err != nil {
		return nil, fmt.Errorf("check %q: %w", c.Name, err)
	}
	return ch, nil
}
