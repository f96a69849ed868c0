package containers

import (
	"testing"

	"github.com/moby/moby/api/types/container"
)

func TestPick(t *testing.T) {
	sum := func(id, name string, state container.ContainerState, created int64) container.Summary {
		return container.Summary{ID: id, Names: []string{"/" + name}, State: state, Created: created}
	}
	items := []container.Summary{
		sum("old", "psyfit-web-v1", container.StateExited, 100),
		sum("new", "psyfit-web-v2", container.StateRunning, 200),
		sum("newer", "psyfit-web-v3", container.StateRunning, 300),
		sum("stopped", "psyfit-db", container.StateExited, 50),
		sum("other", "psyfit-webhook", container.StateRunning, 400),
		sum("nested", "psyfit-redis-x/y", container.StateRunning, 10),
	}
	cases := []struct {
		name, want string
		found      bool
	}{
		{"psyfit-web", "newer", true},  // newest running of the version family
		{"psyfit-web-v1", "old", true}, // exact name wins, whatever its state
		{"psyfit-db", "stopped", true}, // exact, exited: the caller judges the state
		{"psyfit", "other", true},      // prefix needs the dash: psyfit-webhook is psyfit-*
		{"psyfit-webhoo", "", false},   // no partial word matches
		{"psyfit-redis", "", false},    // a name with a slash is not a Kamal version
		{"psyfit-api", "", false},      // nothing at all
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, found, err := Pick(items, c.name)
			if err != nil || found != c.found || got.ID != c.want {
				t.Errorf("Pick(%q) = %q, %v, %v; want %q, %v", c.name, got.ID, found, err, c.want, c.found)
			}
		})
	}
	// Only exited containers of the family: none is picked (nothing runs).
	if _, found, _ := Pick(items[:1], "psyfit-web"); found {
		t.Errorf("an exited psyfit-web-v1 was picked for psyfit-web")
	}
}
