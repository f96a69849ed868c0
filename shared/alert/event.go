package alert

import "time"

// State is what an event says about a check.
type State string

const (
	Down State = "down" // an outage began (or continues: a reminder)
	Up   State = "up"   // an outage or warning ended
	Warn State = "warn" // a warning (certificate, disk 80 %), not an outage
	Info State = "info" // for the record (backup done, restore finished)
)

// Event is the alert event contract (DESIGN.md) shared by the probe, the
// uptime function and the alert function. Field names are a wire contract.
type Event struct {
	Source     string    `json:"source"` // uptime | probe | offsite | restore
	Host       string    `json:"host"`
	Check      string    `json:"check"`
	State      State     `json:"state"`
	Summary    string    `json:"summary"`
	Detail     string    `json:"detail"`
	At         time.Time `json:"at"`
	IncidentID string    `json:"incident_id"`
	DedupKey   string    `json:"dedup_key"`
	Locale     string    `json:"locale"` // ja | en

	// Optional fields beyond the contract; absent when empty.
	Kind            string    `json:"kind,omitempty"`  // "" (opened, recovered, info), KindReminder, KindWarnCleared
	Value           string    `json:"value,omitempty"` // the observed value, e.g. "502", "91.3%", "9d"
	Cause           string    `json:"cause,omitempty"` // up: what had failed (the incident's last summary)
	Since           time.Time `json:"since,omitzero"`  // when the incident began (first failing observation)
	DowntimeSeconds int64     `json:"downtime_seconds,omitempty"`
	// To names the recipients of this event (an uptime target's own); empty:
	// the alert function's configured recipients.
	To []string `json:"to,omitempty"` // up: seconds from Since to the first good observation
}

// Event kinds (Event.Kind) that refine a State.
const (
	KindReminder    = "reminder"     // State Down: the outage still lasts
	KindWarnCleared = "warn-cleared" // State Up: a warning (not an outage) ended
)
