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
}
