package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// snap returns a valid complete manifest created at the given UTC time.
func snap(t time.Time, suffix string) Manifest {
	m := minimal()
	m.CreatedAt = t
	m.ID = t.UTC().Format(idTimeLayout) + "-" + suffix
	return m
}

func threeSnaps() []Manifest {
	base := time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC)
	a := snap(base, "aaaaaa")
	b := snap(base.Add(24*time.Hour), "bbbbbb")
	b.Status, b.VerifiedAt = StatusVerified, base.Add(25*time.Hour)
	c := full()
	return []Manifest{a, c, b} // out of order on purpose
}

func ids(ms []Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestCatalogGoldenSaveLoad(t *testing.T) {
	c := &Catalog{Host: "psyfit-prod", Snapshots: threeSnaps()}
	data, err := c.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	golden(t, "catalog.golden.json", data)
	wantOrder := []string{"20250305T170003Z-a1b2c3", "20250302T020000Z-bbbbbb", "20250301T020000Z-aaaaaa"}
	if got := ids(c.Snapshots); !reflect.DeepEqual(got, wantOrder) {
		t.Fatalf("order %v, want newest first %v", got, wantOrder)
	}

	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := c.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("catalog mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	got, err := LoadCatalog(path)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("loaded catalog differs:\n got %+v\nwant %+v", got, c)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("Save left %d files, want only manifest.json", len(entries))
	}
}

func TestLoadCatalogMissingIsEmpty(t *testing.T) {
	c, err := LoadCatalog(filepath.Join(t.TempDir(), "nope", "manifest.json"))
	if err != nil {
		t.Fatalf("LoadCatalog of a missing file: %v", err)
	}
	if c.Schema != Schema || len(c.Snapshots) != 0 {
		t.Fatalf("missing catalog = %+v, want empty schema 1", c)
	}
	if _, ok := c.Newest(nil); ok {
		t.Fatalf("Newest of an empty catalog found something")
	}
}

func TestLoadCatalogErrors(t *testing.T) {
	c := &Catalog{Host: "psyfit-prod", Snapshots: threeSnaps()}
	good, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		data     string
		want     string
		isSchema bool
	}{
		{"future schema", strings.Replace(string(good), `"schema": 1`, `"schema": 7`, 1), "decode catalog: schema 7 is newer than this program understands (1)", true},
		{"bad entry named by index", strings.Replace(string(good), strings.Repeat("ab", 32), "zz", 1), "snapshots[0].db.sha256: not a SHA-256 hex digest", false},
		{"bad entry schema", strings.Replace(string(good), `"id": "20250302T020000Z-bbbbbb"`, `"id": "x"`, 1), `snapshots[1].id: "x" is not`, false},
		{"duplicate id", strings.Replace(string(good), "20250301T020000Z-aaaaaa", "20250302T020000Z-bbbbbb", 1), "snapshots[2].id: 20250302T020000Z-bbbbbb listed twice", false},
		{"torn file", string(good[:len(good)/2]), "unexpected end of JSON input", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "manifest.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadCatalog(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadCatalog = %v, want an error naming %s and containing %q", err, path, tc.want)
			}
			if errors.Is(err, ErrSchema) != tc.isSchema {
				t.Errorf("errors.Is(err, ErrSchema) = %v, want %v", !tc.isSchema, tc.isSchema)
			}
		})
	}
}

func TestCatalogUpsertRemoveFindNewest(t *testing.T) {
	c := &Catalog{}
	for _, m := range threeSnaps() {
		if err := c.Upsert(m); err != nil {
			t.Fatalf("Upsert %s: %v", m.ID, err)
		}
	}
	if c.Host != "psyfit-prod" || c.Schema != Schema {
		t.Fatalf("catalog host/schema = %q/%d", c.Host, c.Schema)
	}
	newest, ok := c.Newest(nil)
	if !ok || newest.ID != "20250305T170003Z-a1b2c3" {
		t.Fatalf("Newest = %s, %v", newest.ID, ok)
	}
	verified := func(m Manifest) bool { return m.Status == StatusVerified }
	nv, ok := c.Newest(verified)
	if !ok || nv.ID != "20250305T170003Z-a1b2c3" {
		t.Fatalf("Newest(verified) = %s, %v", nv.ID, ok)
	}

	// Replace by id: the newest becomes merely complete.
	m := full()
	m.Status, m.VerifiedAt, m.Notes = StatusComplete, time.Time{}, "replaced"
	if err := c.Upsert(m); err != nil {
		t.Fatalf("Upsert replace: %v", err)
	}
	if len(c.Snapshots) != 3 {
		t.Fatalf("replace added an entry: %v", ids(c.Snapshots))
	}
	if got, _ := c.Find(m.ID); got.Notes != "replaced" {
		t.Fatalf("Find after replace: notes %q", got.Notes)
	}
	if nv, _ := c.Newest(verified); nv.ID != "20250302T020000Z-bbbbbb" {
		t.Fatalf("Newest(verified) after replace = %s", nv.ID)
	}

	// Refusals leave the catalog as it was.
	bad := snap(time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), "cccccc")
	bad.Trigger = "cron"
	if err := c.Upsert(bad); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `trigger: "cron"`) {
		t.Fatalf("Upsert of an invalid manifest = %v", err)
	}
	other := snap(time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), "dddddd")
	other.Host = "other-host"
	if err := c.Upsert(other); err == nil || !strings.Contains(err.Error(), `host "other-host" is not the catalog's host "psyfit-prod"`) {
		t.Fatalf("Upsert of another host's manifest = %v", err)
	}
	if len(c.Snapshots) != 3 {
		t.Fatalf("refused upserts changed the catalog: %v", ids(c.Snapshots))
	}

	if !c.Remove("20250302T020000Z-bbbbbb") || c.Remove("20250302T020000Z-bbbbbb") {
		t.Fatalf("Remove should report true once, then false")
	}
	if _, ok := c.Find("20250302T020000Z-bbbbbb"); ok {
		t.Fatalf("removed snapshot still found")
	}
	if _, ok := c.Newest(verified); ok {
		t.Fatalf("Newest(verified) found one after removing the only verified snapshot")
	}
	if got := ids(c.Snapshots); !reflect.DeepEqual(got, []string{"20250305T170003Z-a1b2c3", "20250301T020000Z-aaaaaa"}) {
		t.Fatalf("after Remove: %v", got)
	}
}

func TestCatalogSaveRefusesInvalidAndKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifest.json")
	c := &Catalog{Host: "psyfit-prod", Snapshots: threeSnaps()}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	c.Snapshots[0].Data.SHA256 = "nope"
	err := c.Save(path)
	if err == nil || !strings.Contains(err.Error(), "snapshots[0].data.sha256: not a SHA-256 hex digest") {
		t.Fatalf("Save of an invalid catalog = %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Fatalf("a refused Save changed the file")
	}
}
