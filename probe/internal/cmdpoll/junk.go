package cmdpoll

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"backstop/shared/alert"
)

// DefaultJunkEvery is how often, at most, rejected command objects are
// alerted (Poller.JunkEvery 0).
const DefaultJunkEvery = 15 * time.Minute

// junkKeys is how many command ids a combined alert names.
const junkKeys = 5

// junk gathers the rejections of a poll round (and of the rounds whose
// alert the rate limit held back), so that 50 junk objects make one
// alert, not 50.
type junk struct {
	events  []alert.Event // one per rejected object, in order
	reasons map[string]int
	last    time.Time // when the last rejection alert was raised
}

func (j *junk) add(ev alert.Event, reason string) {
	if j.reasons == nil {
		j.reasons = map[string]int{}
	}
	j.events = append(j.events, ev)
	j.reasons[reason]++
}

// flush returns the alert for what was gathered, or false when there is
// nothing or the last one is less than every ago (the counts then carry
// over to the next round). A single rejection keeps its own event; more
// are combined into one with the counts per reason and the first ids.
func (j *junk) flush(now time.Time, every time.Duration) (alert.Event, bool) {
	if len(j.events) == 0 || (!j.last.IsZero() && every > 0 && now.Sub(j.last) < every) {
		return alert.Event{}, false
	}
	j.last = now
	evs, reasons := j.events, j.reasons
	j.events, j.reasons = nil, nil
	if len(evs) == 1 {
		return evs[0], true
	}
	var counts, ids []string
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		counts = append(counts, fmt.Sprintf("%s %d", r, reasons[r]))
	}
	for _, ev := range evs[:min(len(evs), junkKeys)] {
		ids = append(ids, ev.IncidentID)
	}
	more := ""
	if len(evs) > junkKeys {
		more = fmt.Sprintf(" and %d more", len(evs)-junkKeys)
	}
	first := evs[0]
	return alert.Event{Check: "command", State: alert.Warn, IncidentID: "rejected-" + now.UTC().Format("20060102T150405Z"),
		Summary: fmt.Sprintf("%d restore command objects rejected (%s), none run", len(evs), strings.Join(counts, ", ")),
		Detail: fmt.Sprintf("first: %s%s. Each has a rejected <id>.status.json saying why; the first one: %s",
			strings.Join(ids, ", "), more, first.Detail),
		DedupKey: first.DedupKey + ":combined"}, true
}
