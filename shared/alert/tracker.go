package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"backstop/shared/atomicfile"
)

// Level is what one observation of a check says. The probe maps check
// statuses: OK -> LevelOK, Warn -> LevelWarn, Critical and Unknown -> LevelDown.
type Level string

const (
	LevelNone Level = ""     // no observation this round (check not due, skipped): ignored
	LevelOK   Level = "ok"   // healthy
	LevelWarn Level = "warn" // degraded, not an outage (certificate expiring, disk 80 %)
	LevelDown Level = "down" // failing
)

// severity orders levels; an unrecognised level counts as down (fail safe).
func (l Level) severity() int {
	switch l {
	case LevelOK:
		return 0
	case LevelWarn:
		return 1
	default:
		return 2
	}
}

// normal returns the level as one of ok, warn, down.
func (l Level) normal() Level {
	return [...]Level{LevelOK, LevelWarn, LevelDown}[l.severity()]
}

// Policy says when a check's state changes and how often it is repeated.
// Zero values take the defaults: FailureThreshold 2, SuccessThreshold 2,
// Reminder 1h. A negative Reminder disables reminders.
type Policy struct {
	FailureThreshold int           // consecutive failing observations that open an incident
	SuccessThreshold int           // consecutive better observations that close it
	Reminder         time.Duration // interval of "still down" reminders; < 0: never
}

func (p Policy) withDefaults() Policy {
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = 2
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = 2
	}
	if p.Reminder == 0 {
		p.Reminder = time.Hour
	}
	return p
}

// Observation is the outcome of one check run as the tracker sees it.
type Observation struct {
	Check   string
	Level   Level
	Summary string // short cause, e.g. "HTTP 502", "9 days left"
	Detail  string // longer explanation
	Value   string // the observed value, e.g. "502"
	At      time.Time
}

// Incident is an open outage or warning of one check.
type Incident struct {
	ID           string    `json:"id"`
	Since        time.Time `json:"since"`         // first failing observation
	LastNotified time.Time `json:"last_notified"` // opening event or latest reminder
	Reminders    int       `json:"reminders"`     // reminders sent so far
	Summary      string    `json:"summary"`       // latest failing summary
	Detail       string    `json:"detail,omitempty"`
	Value        string    `json:"value,omitempty"`
}

// CheckState is the tracker's memory of one check. Streaks count
// consecutive observations; *Since fields hold the first observation of
// the streak.
type CheckState struct {
	Level Level `json:"level"` // confirmed level: ok, warn or down

	DownStreak    int       `json:"down_streak"`     // consecutive down
	DownSince     time.Time `json:"down_since"`      // first of them
	WarnStreak    int       `json:"warn_streak"`     // consecutive warn or down
	WarnSince     time.Time `json:"warn_since"`      // first of them
	OKStreak      int       `json:"ok_streak"`       // consecutive ok
	OKSince       time.Time `json:"ok_since"`        // first of them
	NotDownStreak int       `json:"not_down_streak"` // consecutive ok or warn
	NotDownSince  time.Time `json:"not_down_since"`  // first of them

	Outage  *Incident `json:"outage,omitempty"`  // open while Level is down
	Warning *Incident `json:"warning,omitempty"` // open while Level is warn
}

// Tracker turns observations into alert events: it applies the thresholds,
// opens and closes incidents and schedules reminders. It is plain data,
// serialisable with encoding/json, so its state survives restarts (Save and
// LoadTracker, or any JSON store such as S3). It is not safe for
// concurrent use: callers serialise Observe and Save.
type Tracker struct {
	Schema int                    `json:"schema"` // 1
	Source string                 `json:"source"` // uptime | probe | ...
	Host   string                 `json:"host"`
	Locale string                 `json:"locale"` // ja | en
	Checks map[string]*CheckState `json:"checks"`
}

// NewTracker returns an empty tracker whose events carry source, host and locale.
func NewTracker(source, host, locale string) *Tracker {
	return &Tracker{Schema: 1, Source: source, Host: host, Locale: locale, Checks: map[string]*CheckState{}}
}

// LoadTracker reads a tracker saved with Save. A missing file gives a new
// tracker. Source, host and locale are set from the arguments (the current
// configuration wins over the saved one); per-check state is kept.
func LoadTracker(path, source, host, locale string) (*Tracker, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewTracker(source, host, locale), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load alert state %s: %w", path, err)
	}
	t := NewTracker(source, host, locale)
	if err := json.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("load alert state %s: %w", path, err)
	}
	if t.Schema != 1 {
		return nil, fmt.Errorf("load alert state %s: unknown schema %d", path, t.Schema)
	}
	t.Source, t.Host, t.Locale = source, host, locale
	if t.Checks == nil {
		t.Checks = map[string]*CheckState{}
	}
	return t, nil
}

// Save writes the tracker to path atomically (mode 0600).
func (t *Tracker) Save(path string) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("save alert state %s: %w", path, err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save alert state: %w", err)
	}
	return nil
}

// Level returns the confirmed level of a check (LevelOK when never seen).
func (t *Tracker) Level(check string) Level {
	if cs := t.Checks[check]; cs != nil {
		return cs.Level
	}
	return LevelOK
}

// Forget drops a check's state (a check removed from the configuration).
// An open incident is dropped without an event.
func (t *Tracker) Forget(check string) { delete(t.Checks, check) }

// Observe records one observation and returns the events it causes, in
// order (at most two: an outage resolved and a warning opened).
//
// A check starts at ok. It moves to a worse level only after
// FailureThreshold consecutive observations at least that bad, and to a
// better level only after SuccessThreshold consecutive observations at
// least that good, so flapping at the threshold never alerts.
//
//   - ok/warn -> down: one Down event with a new incident (Since = the first
//     failing observation); a warning open at that moment closes silently,
//     the outage supersedes it.
//   - while down: a Down event with Kind KindReminder every p.Reminder
//     (measured from the last notification, on observation times).
//   - down -> ok: one Up event with DowntimeSeconds from Since to the first
//     good observation; down -> warn: that Up event, then a Warn event.
//   - ok -> warn: one Warn event, no reminders; warn -> ok: one Up event with
//     Kind KindWarnCleared.
//
// LevelNone is ignored. Times come only from o.At.
func (t *Tracker) Observe(p Policy, o Observation) []Event {
	if o.Level == LevelNone {
		return nil
	}
	p = p.withDefaults()
	if t.Checks == nil {
		t.Checks = map[string]*CheckState{}
	}
	cs := t.Checks[o.Check]
	if cs == nil {
		cs = &CheckState{Level: LevelOK}
		t.Checks[o.Check] = cs
	}
	cs.repair(t, o)
	cs.count(o)

	var evs []Event
	switch cur := cs.Level.normal(); {
	case cur != LevelDown && cs.DownStreak >= p.FailureThreshold:
		cs.Warning = nil
		evs = append(evs, t.openOutage(cs, o))
	case cur == LevelOK && cs.WarnStreak >= p.FailureThreshold:
		evs = append(evs, t.openWarning(cs, o, cs.WarnSince))
	case cur == LevelDown && cs.OKStreak >= p.SuccessThreshold:
		evs = append(evs, t.closeOutage(cs, o, cs.OKSince))
	case cur == LevelDown && cs.NotDownStreak >= p.SuccessThreshold:
		evs = append(evs, t.closeOutage(cs, o, cs.NotDownSince))
		// The warning began with the first observation that was no longer down.
		evs = append(evs, t.openWarning(cs, o, cs.NotDownSince))
	case cur == LevelWarn && cs.OKStreak >= p.SuccessThreshold:
		evs = append(evs, t.closeWarning(cs, o))
	case cur == LevelDown:
		if o.Level.normal() == LevelDown {
			cs.Outage.Summary, cs.Outage.Detail, cs.Outage.Value = o.Summary, o.Detail, o.Value
		}
		if ev, ok := t.remind(cs, p, o); ok {
			evs = append(evs, ev)
		}
	case cur == LevelWarn && o.Level.normal() == LevelWarn:
		cs.Warning.Summary, cs.Warning.Detail, cs.Warning.Value = o.Summary, o.Detail, o.Value
	}
	return evs
}

// repair makes a hand-edited or truncated state consistent: a confirmed
// down or warn level always has its incident.
func (cs *CheckState) repair(t *Tracker, o Observation) {
	switch cs.Level.normal() {
	case LevelDown:
		if cs.Outage == nil {
			cs.Outage = &Incident{ID: t.incidentID(o.Check, "down", o.At), Since: o.At, LastNotified: o.At}
		}
	case LevelWarn:
		if cs.Warning == nil {
			cs.Warning = &Incident{ID: t.incidentID(o.Check, "warn", o.At), Since: o.At, LastNotified: o.At}
		}
	}
	cs.Level = cs.Level.normal()
}

// count updates the streaks with one observation.
func (cs *CheckState) count(o Observation) {
	bump := func(n *int, since *time.Time, hit bool) {
		if !hit {
			*n, *since = 0, time.Time{}
			return
		}
		if *n == 0 {
			*since = o.At
		}
		*n++
	}
	l := o.Level.normal()
	bump(&cs.DownStreak, &cs.DownSince, l == LevelDown)
	bump(&cs.WarnStreak, &cs.WarnSince, l != LevelOK)
	bump(&cs.OKStreak, &cs.OKSince, l == LevelOK)
	bump(&cs.NotDownStreak, &cs.NotDownSince, l != LevelDown)
}

func (t *Tracker) openOutage(cs *CheckState, o Observation) Event {
	since := cs.DownSince
	cs.Level = LevelDown
	cs.Outage = &Incident{
		ID: t.incidentID(o.Check, "down", since), Since: since, LastNotified: o.At,
		Summary: o.Summary, Detail: o.Detail, Value: o.Value,
	}
	ev := t.event(o, Down, cs.Outage, "", 0)
	ev.Summary, ev.Detail, ev.Value = o.Summary, o.Detail, o.Value
	return ev
}

func (t *Tracker) remind(cs *CheckState, p Policy, o Observation) (Event, bool) {
	inc := cs.Outage
	if p.Reminder < 0 || o.At.Sub(inc.LastNotified) < p.Reminder {
		return Event{}, false
	}
	inc.Reminders++
	inc.LastNotified = o.At
	ev := t.event(o, Down, inc, KindReminder, inc.Reminders)
	ev.Summary, ev.Detail, ev.Value = inc.Summary, inc.Detail, inc.Value
	return ev, true
}

func (t *Tracker) closeOutage(cs *CheckState, o Observation, goodSince time.Time) Event {
	inc := cs.Outage
	cs.Level, cs.Outage = LevelOK, nil
	ev := t.event(o, Up, inc, "", 0)
	ev.Summary, ev.Detail, ev.Value = o.Summary, o.Detail, o.Value
	ev.Cause = inc.Summary
	if d := goodSince.Sub(inc.Since); d > 0 {
		ev.DowntimeSeconds = int64(d / time.Second)
	}
	return ev
}

func (t *Tracker) openWarning(cs *CheckState, o Observation, since time.Time) Event {
	cs.Level = LevelWarn
	cs.Warning = &Incident{
		ID: t.incidentID(o.Check, "warn", since), Since: since, LastNotified: o.At,
		Summary: o.Summary, Detail: o.Detail, Value: o.Value,
	}
	ev := t.event(o, Warn, cs.Warning, "", 0)
	ev.Summary, ev.Detail, ev.Value = o.Summary, o.Detail, o.Value
	return ev
}

func (t *Tracker) closeWarning(cs *CheckState, o Observation) Event {
	inc := cs.Warning
	cs.Level, cs.Warning = LevelOK, nil
	ev := t.event(o, Up, inc, KindWarnCleared, 0)
	ev.Summary, ev.Detail, ev.Value = o.Summary, o.Detail, o.Value
	ev.Cause = inc.Summary
	return ev
}

func (t *Tracker) event(o Observation, st State, inc *Incident, kind string, seq int) Event {
	return Event{
		Source: t.Source, Host: t.Host, Check: o.Check, State: st, At: o.At,
		IncidentID: inc.ID, Locale: t.Locale, Kind: kind, Since: inc.Since,
		DedupKey: DedupKey(t.Source, t.Host, o.Check, inc.ID, dedupKind(st, kind), seq),
	}
}

func dedupKind(st State, kind string) string {
	if kind != "" {
		return kind
	}
	return string(st)
}

// incidentID is YYYYMMDDTHHMMSSZ-<6 hex>, derived from the check and the
// incident's start so that replaying the same observations after a crash
// yields the same id (and so the same dedup keys).
func (t *Tracker) incidentID(check, track string, since time.Time) string {
	h := sha256.Sum256([]byte(t.Source + "\x00" + t.Host + "\x00" + check + "\x00" + track + "\x00" + since.UTC().Format(time.RFC3339Nano)))
	return since.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(h[:3])
}

// DedupKey is the event's identity: the same (source, host, check,
// incident, kind, sequence) always gives the same key, so a retried
// delivery is recognisably the same event. kind is the state or the Kind
// ("down", "reminder", "up", "warn", "warn-cleared", "info", ...); seq
// numbers reminders (0 otherwise).
func DedupKey(source, host, check, incident, kind string, seq int) string {
	return source + ":" + host + ":" + check + ":" + incident + ":" + kind + ":" + strconv.Itoa(seq)
}
