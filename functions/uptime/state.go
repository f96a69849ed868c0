package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"time"

	"backstop/shared/alert"
)

// State limits.
const (
	historyDays  = 90            // daily up/down minutes kept per target
	latencyKeep  = 60            // recent latencies kept per target
	runsKeep     = 1000          // applied run ids remembered ...
	runsMaxAge   = 7 * time.Hour // ... for at least Lambda's longest retry window
	outboxLimit  = 1000          // unconfirmed events kept at most
	stateSchema  = 1
	eventTimeFmt = "20060102T150405Z"
)

// State is uptime/state.json: everything the function remembers between
// runs. The tracker's JSON holds each target's counters and open incidents
// (checks.<name>.outage / .warning); Targets holds the history; Runs the
// runs already applied (so a retried invocation never counts twice); Outbox
// the events saved with the state but not yet confirmed written to
// uptime/events/ (written right after the save, and by any later run if
// that failed).
type State struct {
	Schema    int                 `json:"schema"`
	UpdatedAt time.Time           `json:"updated_at"`
	Tracker   *alert.Tracker      `json:"tracker"`
	Targets   map[string]*History `json:"targets"`
	Runs      []AppliedRun        `json:"runs"`
	Outbox    []EventObject       `json:"outbox,omitempty"`
}

// History is one target's record.
type History struct {
	Days        []Day       `json:"days"`       // oldest first, the last 90 days with observations
	LatencyMS   []int64     `json:"latency_ms"` // the most recent, oldest first
	LastAt      time.Time   `json:"last_at"`
	LastLevel   alert.Level `json:"last_level"`
	LastSummary string      `json:"last_summary"`
	LastAlert   *AlertRef   `json:"last_alert,omitempty"`
}

// Day is one UTC day's observed minutes (each observation counts for the
// schedule interval).
type Day struct {
	Date        string  `json:"date"` // 2006-01-02, UTC
	UpMinutes   float64 `json:"up_min"`
	DownMinutes float64 `json:"down_min"`
}

// AlertRef is the last event raised for a target.
type AlertRef struct {
	State    alert.State `json:"state"`
	Kind     string      `json:"kind,omitempty"`
	At       time.Time   `json:"at"`
	DedupKey string      `json:"dedup_key"`
	Key      string      `json:"key"` // the event object's S3 key
}

// AppliedRun records a run whose observations are in the state.
type AppliedRun struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// EventObject is what uptime/events/<time>-<hash>.json holds: the alert
// event (its To carries the target's recipients; empty: the alert
// function's default). Key is the object's key: kept in the outbox,
// left out of the object itself.
type EventObject struct {
	alert.Event
	Key string `json:"key,omitempty"`
}

// run is one invocation's observations, re-applied on every save attempt.
type run struct {
	ID       string
	At       time.Time
	Obs      []Observed // sorted by target name
	Targets  map[string]*Target
	Reminder time.Duration
	Host     string // events' host; "" = the target URL's host name
	Interval time.Duration
	Prefix   string // events prefix, e.g. uptime/events/
}

func newState() *State {
	return &State{Schema: stateSchema, Tracker: alert.NewTracker("uptime", "uptime", "en"), Targets: map[string]*History{}}
}

// normalise fills what an older or hand-edited state lacks.
func (s *State) normalise() error {
	if s.Schema == 0 {
		s.Schema = stateSchema
	}
	if s.Schema != stateSchema {
		return fmt.Errorf("unknown state schema %d", s.Schema)
	}
	if s.Tracker == nil {
		s.Tracker = alert.NewTracker("uptime", "uptime", "en")
	}
	if s.Tracker.Checks == nil {
		s.Tracker.Checks = map[string]*alert.CheckState{}
	}
	s.Tracker.Schema, s.Tracker.Source, s.Tracker.Host = 1, "uptime", "uptime"
	if s.Targets == nil {
		s.Targets = map[string]*History{}
	}
	return nil
}

func (s *State) applied(id string) bool {
	return slices.ContainsFunc(s.Runs, func(r AppliedRun) bool { return r.ID == id })
}

// apply adds a run's observations to the state and returns the events
// they raise (also appended to the outbox). A run already applied changes
// nothing, so re-applying after a conflict or a retried invocation never
// doubles an observation or an event. Targets no longer configured are
// forgotten.
func (s *State) apply(r *run) []EventObject {
	if s.applied(r.ID) {
		return nil
	}
	var raised []EventObject
	for _, o := range r.Obs {
		t := r.Targets[o.Target]
		if t == nil || o.Level == alert.LevelNone {
			continue
		}
		evs := s.Tracker.Observe(t.policy(r.Reminder), alert.Observation{
			Check: o.Target, Level: o.Level, Summary: o.Summary, Detail: o.Detail, Value: o.Value, At: o.At,
		})
		h := s.Targets[o.Target]
		if h == nil {
			h = &History{}
			s.Targets[o.Target] = h
		}
		h.record(o, r.Interval)
		for _, ev := range evs {
			ev.Locale = t.Locale
			ev.Host = r.Host
			if ev.Host == "" {
				ev.Host = t.host
			}
			ev.To = t.To
			eo := EventObject{Event: ev, Key: eventKey(r.Prefix, ev)}
			h.LastAlert = &AlertRef{State: ev.State, Kind: ev.Kind, At: ev.At, DedupKey: ev.DedupKey, Key: eo.Key}
			raised = append(raised, eo)
		}
	}
	for name := range s.Targets {
		if r.Targets[name] == nil {
			delete(s.Targets, name)
		}
	}
	for name := range s.Tracker.Checks {
		if r.Targets[name] == nil {
			s.Tracker.Forget(name)
		}
	}
	s.Outbox = append(s.Outbox, raised...)
	if n := len(s.Outbox) - outboxLimit; n > 0 {
		s.Outbox = s.Outbox[n:]
	}
	s.Runs = append(s.Runs, AppliedRun{ID: r.ID, At: r.At})
	sort.SliceStable(s.Runs, func(i, j int) bool { return s.Runs[i].At.Before(s.Runs[j].At) })
	cut := 0
	for cut < len(s.Runs) && (len(s.Runs)-cut > runsKeep || r.At.Sub(s.Runs[cut].At) > runsMaxAge) {
		cut++
	}
	s.Runs = s.Runs[cut:]
	s.UpdatedAt = r.At
	return raised
}

// dropConfirmed removes outbox events known to be written.
func (s *State) dropConfirmed(confirmed map[string]bool) {
	s.Outbox = slices.DeleteFunc(s.Outbox, func(e EventObject) bool { return confirmed[e.Key] })
}

// record adds one observation to the history.
func (h *History) record(o Observed, interval time.Duration) {
	date := o.At.UTC().Format(time.DateOnly)
	i := len(h.Days) - 1
	for i >= 0 && h.Days[i].Date > date {
		i--
	}
	if i < 0 || h.Days[i].Date != date {
		h.Days = slices.Insert(h.Days, i+1, Day{Date: date})
		i++
	}
	if o.Level == alert.LevelDown {
		h.Days[i].DownMinutes += interval.Minutes()
	} else {
		h.Days[i].UpMinutes += interval.Minutes()
	}
	oldest := o.At.UTC().AddDate(0, 0, -(historyDays - 1)).Format(time.DateOnly)
	if newest := h.Days[len(h.Days)-1].Date; newest > date {
		t, _ := time.Parse(time.DateOnly, newest)
		oldest = t.AddDate(0, 0, -(historyDays - 1)).Format(time.DateOnly)
	}
	h.Days = slices.DeleteFunc(h.Days, func(d Day) bool { return d.Date < oldest })

	h.LatencyMS = append(h.LatencyMS, o.Latency.Milliseconds())
	if n := len(h.LatencyMS) - latencyKeep; n > 0 {
		h.LatencyMS = append(h.LatencyMS[:0:0], h.LatencyMS[n:]...)
	}
	if !o.At.Before(h.LastAt) {
		h.LastAt, h.LastLevel, h.LastSummary = o.At, o.Level, o.Summary
	}
}

// eventKey is <prefix><event time>-<hash of the dedup key>.json: the same
// event always has the same key, so writing it with If-None-Match: * is
// idempotent.
func eventKey(prefix string, ev alert.Event) string {
	h := sha256.Sum256([]byte(ev.DedupKey))
	return prefix + ev.At.UTC().Format(eventTimeFmt) + "-" + hex.EncodeToString(h[:8]) + ".json"
}
