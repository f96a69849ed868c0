package alert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

const step = 5 * time.Minute

// obs builds the i-th observation of a sequence: o ok, w warn, d down,
// u "unknown" (an unrecognised level), - none.
func obs(check string, i int, c byte) Observation {
	lv := map[byte]Level{'o': LevelOK, 'w': LevelWarn, 'd': LevelDown, 'u': "unknown", '-': LevelNone}[c]
	return Observation{Check: check, Level: lv, Summary: fmt.Sprintf("%s#%d", lv, i), Value: fmt.Sprint(i), At: t0.Add(time.Duration(i) * step)}
}

// run feeds seq to tr starting at index from and describes each event as
// "<index>:<state>[/<kind>]".
func run(tr *Tracker, p Policy, from int, seq string) (got []string, evs []Event) {
	for i := 0; i < len(seq); i++ {
		for _, ev := range tr.Observe(p, obs("web", from+i, seq[i])) {
			d := fmt.Sprintf("%d:%s", from+i, ev.State)
			if ev.Kind != "" {
				d += "/" + ev.Kind
			}
			got = append(got, d)
			evs = append(evs, ev)
		}
	}
	return got, evs
}

func TestObserveSequences(t *testing.T) {
	noRem := Policy{Reminder: -1}
	cases := []struct {
		name string
		p    Policy
		seq  string
		want []string
	}{
		{"threshold 1 alerts at once", Policy{FailureThreshold: 1, SuccessThreshold: 1, Reminder: -1}, "odo", []string{"1:down", "2:up"}},
		{"threshold 2 default", noRem, "oddoo", []string{"2:down", "4:up"}},
		{"threshold 3", Policy{FailureThreshold: 3, SuccessThreshold: 3, Reminder: -1}, "dddoodooo", []string{"2:down", "8:up"}},
		{"threshold 3 not reached", Policy{FailureThreshold: 3, Reminder: -1}, "ddoddoddo", nil},
		{"alternating never alerts", noRem, "dodododododo", nil},
		{"alternating warn never alerts", noRem, "wowowowo", nil},
		{"alternating while down never resolves", noRem, "dddodododd", []string{"1:down"}},
		{"warn is a separate track", noRem, "owwwoo", []string{"2:warn", "5:up/warn-cleared"}},
		{"warn then down opens an outage", noRem, "wwdddoo", []string{"1:warn", "3:down", "6:up"}},
		{"down then warn resolves and warns", noRem, "ddwwwoo", []string{"1:down", "3:up", "3:warn", "6:up/warn-cleared"}},
		{"warn down warn", noRem, "wwddwwoo", []string{"1:warn", "3:down", "5:up", "5:warn", "7:up/warn-cleared"}},
		{"mixed warn and down counts as warn", noRem, "owdoo", []string{"2:warn", "4:up/warn-cleared"}},
		{"mixed ok and warn after down resolves to warn", noRem, "ddowoo", []string{"1:down", "3:up", "3:warn", "5:up/warn-cleared"}},
		{"unknown level counts as down", noRem, "uuoo", []string{"1:down", "3:up"}},
		{"none is ignored, streak kept", noRem, "d-d--o-o", []string{"2:down", "7:up"}},
		{"only none says nothing", noRem, "-----", nil},
		{"steady ok says nothing", noRem, "oooooo", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _ := run(NewTracker("probe", "h1", "en"), c.p, 0, c.seq)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("events %v, want %v", got, c.want)
			}
		})
	}
}

func TestReminders(t *testing.T) {
	cases := []struct {
		name     string
		reminder time.Duration
		downObs  int // observations at down, every 5 min
		want     int // reminders
	}{
		// opened at obs 1 (t=5m); reminders at 65m, 125m, 185m; last obs at 3h15m (index 39)
		{"hourly over 3h15m", time.Hour, 40, 3},
		// 12 down (0..55m) then ok at 60m, 65m: resolved at 65m before a reminder.
		{"hourly, resolved when the first falls due", time.Hour, 12, 0},
		// 13 down (0..60m) then ok at 65m: still down an hour after opening.
		{"hourly exactly at the first", time.Hour, 13, 1},
		{"default is hourly", 0, 40, 3},
		{"every 30m", 30 * time.Minute, 40, 6},
		{"disabled", -1, 40, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, evs := run(NewTracker("probe", "h1", "en"), Policy{Reminder: c.reminder}, 0, strings.Repeat("d", c.downObs)+"oo")
			n := 0
			var prev string
			for i, ev := range evs {
				if ev.Kind != KindReminder {
					continue
				}
				n++
				if ev.State != Down || ev.IncidentID != evs[0].IncidentID {
					t.Errorf("reminder %d: state %s incident %s, want down of %s", n, ev.State, ev.IncidentID, evs[0].IncidentID)
				}
				if ev.DedupKey == prev || ev.DedupKey == evs[0].DedupKey {
					t.Errorf("reminder %d reuses dedup key %s", n, ev.DedupKey)
				}
				if want := evs[0].Since; !ev.Since.Equal(want) {
					t.Errorf("reminder %d since %v, want %v", i, ev.Since, want)
				}
				prev = ev.DedupKey
			}
			if n != c.want {
				t.Errorf("%d reminders, want %d", n, c.want)
			}
			if last := evs[len(evs)-1]; last.State != Up {
				t.Errorf("last event %s, want up", last.State)
			}
		})
	}
}

func TestResolveCarriesDowntime(t *testing.T) {
	tr := NewTracker("probe", "psyfit-prod", "ja")
	// down from obs 2 (t=10m) to obs 5; ok from obs 6 (t=30m): downtime 20m.
	_, evs := run(tr, Policy{}, 0, "oodddd"+"oo")
	if len(evs) != 2 {
		t.Fatalf("events %+v, want down and up", evs)
	}
	down, up := evs[0], evs[1]
	if down.State != Down || down.Summary != "down#3" || down.Value != "3" || !down.Since.Equal(t0.Add(2*step)) || !down.At.Equal(t0.Add(3*step)) {
		t.Errorf("down event %+v", down)
	}
	if up.State != Up || up.DowntimeSeconds != 20*60 || up.Cause != "down#5" || up.Summary != "ok#7" || up.IncidentID != down.IncidentID {
		t.Errorf("up event %+v, want downtime 1200s, cause down#5, summary ok#7, incident %s", up, down.IncidentID)
	}
	if !strings.HasPrefix(down.IncidentID, "20250301T001000Z-") || len(down.IncidentID) != len("20250301T001000Z-")+6 {
		t.Errorf("incident id %q, want 20250301T001000Z-<6 hex>", down.IncidentID)
	}
	for _, ev := range evs {
		if ev.Source != "probe" || ev.Host != "psyfit-prod" || ev.Locale != "ja" || ev.Check != "web" {
			t.Errorf("event identity %+v", ev)
		}
	}
	if down.DedupKey == up.DedupKey {
		t.Errorf("down and up share dedup key %s", down.DedupKey)
	}
	// A second incident gets a new id.
	_, evs2 := run(tr, Policy{}, 8, "ddoo")
	if len(evs2) != 2 || evs2[0].IncidentID == down.IncidentID {
		t.Errorf("second incident %+v reuses id %s", evs2, down.IncidentID)
	}
}

func TestDedupKeysDeterministic(t *testing.T) {
	seq := "oddd" + strings.Repeat("d", 24) + "wwoo"
	_, a := run(NewTracker("probe", "h1", "en"), Policy{}, 0, seq)
	_, b := run(NewTracker("probe", "h1", "en"), Policy{}, 0, seq)
	if len(a) < 4 || !reflect.DeepEqual(a, b) {
		t.Fatalf("replaying the same observations gave different events:\n%+v\n%+v", a, b)
	}
	seen := map[string]bool{}
	for _, ev := range a {
		if seen[ev.DedupKey] {
			t.Errorf("dedup key %s repeated", ev.DedupKey)
		}
		seen[ev.DedupKey] = true
	}
	_, other := run(NewTracker("probe", "h2", "en"), Policy{}, 0, seq)
	if other[0].DedupKey == a[0].DedupKey {
		t.Errorf("another host gave the same dedup key %s", a[0].DedupKey)
	}
}

func TestRestartMidIncident(t *testing.T) {
	cases := []struct {
		name        string
		before      string
		after       string
		wantAfter   []string
		wantOneOpen bool
	}{
		{"down continues, reminder and recovery", "dd", strings.Repeat("d", 12) + "oo", []string{"13:reminder", "15:up"}, true},
		{"streak survives restart", "od", "doo", []string{"2:down", "4:up"}, false},
		{"warning clears after restart", "ww", "oo", []string{"3:up/warn-cleared"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "alert-state.json")
			tr := NewTracker("probe", "h1", "en")
			_, first := run(tr, Policy{}, 0, c.before)
			if err := tr.Save(path); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadTracker(path, "probe", "h1", "ja")
			if err != nil {
				t.Fatal(err)
			}
			if loaded.Locale != "ja" {
				t.Errorf("locale %q after load, want the configured ja", loaded.Locale)
			}
			_, evs := run(loaded, Policy{}, len(c.before), c.after)
			var got []string
			for _, ev := range evs {
				k := string(ev.State)
				if ev.Kind == KindReminder {
					k = ev.Kind
				} else if ev.Kind != "" {
					k += "/" + ev.Kind
				}
				got = append(got, fmt.Sprintf("%d:%s", ev.At.Sub(t0)/step, k))
			}
			if !reflect.DeepEqual(got, c.wantAfter) {
				t.Errorf("events after restart %v, want %v", got, c.wantAfter)
			}
			if c.wantOneOpen {
				for _, ev := range evs {
					if ev.IncidentID != first[0].IncidentID {
						t.Errorf("event %s/%s of incident %s, want the one opened before restart %s", ev.State, ev.Kind, ev.IncidentID, first[0].IncidentID)
					}
				}
				if up := evs[len(evs)-1]; up.DowntimeSeconds != int64(14*step/time.Second) {
					t.Errorf("downtime %ds across restart, want %d", up.DowntimeSeconds, int64(14*step/time.Second))
				}
			}
		})
	}
}

func TestTrackerJSONRoundTrip(t *testing.T) {
	tr := NewTracker("uptime", "h1", "en")
	run(tr, Policy{}, 0, "ddd")
	data, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var back Tracker
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tr.Checks["web"].Outage.ID, back.Checks["web"].Outage.ID) || back.Level("web") != LevelDown {
		t.Errorf("round trip lost state: %s", data)
	}
}

func TestLoadTracker(t *testing.T) {
	dir := t.TempDir()
	tr, err := LoadTracker(filepath.Join(dir, "missing.json"), "probe", "h1", "en")
	if err != nil || tr.Level("x") != LevelOK || len(tr.Checks) != 0 {
		t.Errorf("missing file: %+v, %v; want a new tracker", tr, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := NewTracker("p", "h", "en").Save(bad); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, content, wantErr string
	}{
		{"corrupt", "{not json", "load alert state " + bad + ": invalid character"},
		{"future schema", `{"schema": 9}`, "load alert state " + bad + ": unknown schema 9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := writeFile(bad, c.content); err != nil {
				t.Fatal(err)
			}
			_, err := LoadTracker(bad, "probe", "h1", "en")
			if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
				t.Errorf("error %v, want prefix %q", err, c.wantErr)
			}
		})
	}
}

func TestRepairsStateWithoutIncident(t *testing.T) {
	tr := NewTracker("probe", "h1", "en")
	tr.Checks["web"] = &CheckState{Level: LevelDown}
	_, evs := run(tr, Policy{}, 0, "oo")
	if len(evs) != 1 || evs[0].State != Up {
		t.Errorf("events %+v, want one up", evs)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
