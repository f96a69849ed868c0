package manifest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

var jst = time.FixedZone("JST", 9*3600)

// full returns a manifest with every field set, in UTC so that a decoded
// copy is reflect.DeepEqual to it.
func full() Manifest {
	at := time.Date(2025, 3, 5, 17, 0, 3, 0, time.UTC)
	return Manifest{
		Schema:    Schema,
		ID:        "20250305T170003Z-a1b2c3",
		Host:      "psyfit-prod",
		CreatedAt: at,
		Trigger:   TriggerSchedule,
		Notes:     "nightly <backup> & check",
		App:       App{Revision: "9f2c1e7", Image: "registry.example/psyfit-web:9f2c1e7"},
		DB: &DB{
			Database:      "psyfit",
			ServerVersion: "15.6",
			Migration:     Migration{Tool: ToolAlembic, Revision: "3b1d2a9c4e5f"},
			File:          DBFile,
			Size:          1048576,
			SHA256:        strings.Repeat("ab", 32),
			Compression:   CompressionZstd,
			Tables:        map[string]int64{"public.users": 120, "public.alembic_version": 1, "audit.log": 0, "public.appointments": 5400},
			DurationMS:    8123,
			PgDumpVersion: "15.6",
		},
		Data: &Data{
			Path:        "/var/data",
			File:        DataFile,
			Size:        2097152,
			SHA256:      strings.Repeat("0f", 32),
			Entries:     42,
			Compression: CompressionZstd,
			Changed:     []string{"uploads/日本語.log"},
			Skipped:     []string{"run/app.sock (socket)"},
			DurationMS:  1500,
		},
		Status:     StatusVerified,
		VerifiedAt: at.Add(2 * time.Minute),
		ReadyCheck: &ReadyCheck{At: at.Add(-time.Second), OK: true},
		Offsite:    &Offsite{Bucket: "psyfit-backstop", Key: "psyfit-prod/snapshots/20250305T170003Z-a1b2c3/manifest.json", At: at.Add(3 * time.Minute), Store: "s3"},
	}
}

// minimal returns a manifest with only the required fields.
func minimal() Manifest {
	return Manifest{
		Schema:    Schema,
		ID:        "20250301T020000Z-000001",
		Host:      "psyfit-prod",
		CreatedAt: time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC),
		Trigger:   TriggerManual,
		Status:    StatusComplete,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encoding differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

func TestManifestGoldenRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m      Manifest
		golden string
	}{
		{"full", full(), "manifest.golden.json"},
		{"minimal", minimal(), "manifest-minimal.golden.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.m.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			golden(t, tc.golden, data)
			again, err := tc.m.Encode()
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("second Encode differs (stable order expected)")
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.m)
			}
		})
	}
}

// The contract's field names (DESIGN.md) must be present under exactly
// these names; a rename breaks the cloud functions and old snapshots.
func TestManifestContractFieldNames(t *testing.T) {
	m := full()
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		`"schema": 1`, `"id":`, `"host":`, `"created_at":`, `"trigger": "schedule"`, `"notes":`,
		`"app":`, `"revision":`, `"image":`,
		`"db":`, `"database":`, `"server_version":`, `"migration":`, `"tool": "alembic"`,
		`"file":`, `"size":`, `"sha256":`, `"compression": "zstd"`, `"tables":`,
		`"data":`, `"path":`, `"entries":`, `"status": "verified"`,
		`"ready_check":`, `"at":`, `"ok": true`, `"offsite":`, `"bucket":`, `"key":`,
	} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("encoded manifest lacks %s", key)
		}
	}
	// A dump with no table list says so with {}, not null.
	m.DB.Tables = nil
	data, _ = m.Encode()
	if !bytes.Contains(data, []byte(`"tables": {}`)) || m.DB.Tables != nil {
		t.Errorf("nil tables encoded as %s (or the caller's manifest was changed)", data)
	}
	// Optional parts are absent, not null, when unset.
	mm := minimal()
	data, _ = mm.Encode()
	for _, key := range []string{`"db"`, `"data"`, `"ready_check"`, `"offsite"`, `"verified_at"`, "null"} {
		if bytes.Contains(data, []byte(key)) {
			t.Errorf("minimal manifest has %s:\n%s", key, data)
		}
	}
}

func TestNewID(t *testing.T) {
	at := time.Date(2025, 3, 6, 2, 0, 3, 999, jst) // 2025-03-05 17:00:03 UTC
	tests := []struct {
		name string
		rnd  func() *bytes.Reader
		want string
	}{
		{"from reader", func() *bytes.Reader { return bytes.NewReader([]byte{0xab, 0xcd, 0xef, 0x01}) }, "20250305T170003Z-abcdef"},
		{"zero bytes", func() *bytes.Reader { return bytes.NewReader([]byte{0, 0, 0}) }, "20250305T170003Z-000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := NewID(at, tc.rnd())
			if id != tc.want {
				t.Fatalf("NewID = %q, want %q", id, tc.want)
			}
			got, err := ParseID(id)
			if err != nil || !got.Equal(at.Truncate(time.Second)) || got.Location() != time.UTC {
				t.Fatalf("ParseID(%q) = %v, %v; want %v UTC", id, got, err, at.Truncate(time.Second).UTC())
			}
		})
	}
	t.Run("failing reader still gives a valid id", func(t *testing.T) {
		id := NewID(at, iotest.ErrReader(errors.New("no entropy")))
		if _, err := ParseID(id); err != nil || !strings.HasPrefix(id, "20250305T170003Z-") {
			t.Fatalf("NewID with failing reader = %q (%v)", id, err)
		}
	})
	t.Run("crypto rand by default, distinct", func(t *testing.T) {
		a, b := NewID(at, nil), NewID(at, nil)
		if _, err := ParseID(a); err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Fatalf("two ids in one second are equal: %s", a) // 1 in 16M
		}
	})
}

func TestParseIDRejects(t *testing.T) {
	for _, tc := range []struct{ name, id string }{
		{"empty", ""},
		{"no suffix", "20250305T170003Z"},
		{"upper hex", "20250305T170003Z-ABCDEF"},
		{"short hex", "20250305T170003Z-abcde"},
		{"no Z", "20250305T170003-abcdef"},
		{"month 13", "20251305T170003Z-abcdef"},
		{"path traversal", "../20250305T170003Z-abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseID(tc.id); err == nil {
				t.Fatalf("ParseID(%q) accepted", tc.id)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Manifest)
		want   string // the whole error message
	}{
		{"schema", func(m *Manifest) { m.Schema = 2 }, "schema: is 2, want 1"},
		{"id", func(m *Manifest) { m.ID = "latest" }, `id: "latest" is not YYYYMMDDTHHMMSSZ-<6 lowercase hex>`},
		{"host", func(m *Manifest) { m.Host = " " }, "host: required"},
		{"created_at", func(m *Manifest) { m.CreatedAt = time.Time{} }, "created_at: required"},
		{"trigger", func(m *Manifest) { m.Trigger = "cron" }, `trigger: "cron" is not one of schedule, manual, deploy, pre-restore, command`},
		{"status", func(m *Manifest) { m.Status = "partial" }, `status: "partial" is not one of complete, verified`},
		{"verified without time", func(m *Manifest) { m.VerifiedAt = time.Time{} }, "verified_at: required when status is verified"},
		{"db sha256 short", func(m *Manifest) { m.DB.SHA256 = "abc" }, "db.sha256: not a SHA-256 hex digest"},
		{"db sha256 upper", func(m *Manifest) { m.DB.SHA256 = strings.Repeat("AB", 32) }, "db.sha256: not a SHA-256 hex digest"},
		{"db file traversal", func(m *Manifest) { m.DB.File = "../../etc/shadow" }, `db.file: "../../etc/shadow" is not a plain file name`},
		{"db size", func(m *Manifest) { m.DB.Size = -1 }, "db.size: negative (-1)"},
		{"db compression", func(m *Manifest) { m.DB.Compression = "gzip" }, `db.compression: "gzip" is not zstd`},
		{"db database", func(m *Manifest) { m.DB.Database = "" }, "db.database: required"},
		{"migration tool", func(m *Manifest) { m.DB.Migration.Tool = "flyway" }, `db.migration.tool: "flyway" is not one of alembic, rails, none`},
		{"migration revision", func(m *Manifest) { m.DB.Migration.Revision = "" }, "db.migration.revision: required when the tool is alembic"},
		{"table rows", func(m *Manifest) { m.DB.Tables["public.users"] = -5 }, "db.tables.public.users: negative row count -5"},
		{"data path", func(m *Manifest) { m.Data.Path = "var/data" }, `data.path: "var/data" is not an absolute path`},
		{"data sha256", func(m *Manifest) { m.Data.SHA256 = "" }, "data.sha256: not a SHA-256 hex digest"},
		{"data file", func(m *Manifest) { m.Data.File = "" }, `data.file: "" is not a plain file name`},
		{"data entries", func(m *Manifest) { m.Data.Entries = -1 }, "data.entries: negative (-1)"},
		{"ready_check at", func(m *Manifest) { m.ReadyCheck.At = time.Time{} }, "ready_check.at: required"},
		{"offsite key", func(m *Manifest) { m.Offsite.Key = "" }, "offsite.key: required"},
		{"two problems", func(m *Manifest) { m.Host = ""; m.DB.SHA256 = "x" }, "host: required\ndb.sha256: not a SHA-256 hex digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := full()
			tc.mutate(&m)
			err := m.Validate()
			if err == nil {
				t.Fatalf("Validate accepted; want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Validate = %q\nwant %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid")
			}
			if _, err := m.Encode(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Encode = %v; want it to refuse with %q", err, tc.want)
			}
		})
	}
	for _, m := range []Manifest{full(), minimal()} {
		if err := m.Validate(); err != nil {
			t.Errorf("valid manifest %s refused: %v", m.ID, err)
		}
	}
}

func TestDecode(t *testing.T) {
	m := full()
	good, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		data     string
		wantErr  string // substring; "" = success
		isSchema bool
	}{
		{"valid", string(good), "", false},
		{"unknown field ignored", strings.Replace(string(good), `"host":`, `"future_field": {"x": 1}, "host":`, 1), "", false},
		{"future schema", strings.Replace(string(good), `"schema": 1`, `"schema": 2`, 1), "decode manifest: schema 2 is newer than this program understands (1); upgrade it", true},
		{"schema zero", strings.Replace(string(good), `"schema": 1`, `"schema": 0`, 1), "decode manifest: schema 0 is not 1", true},
		{"no schema", `{"id": "20250305T170003Z-a1b2c3"}`, `decode manifest: no "schema" field`, true},
		{"schema is a string", `{"schema": "1"}`, "decode manifest: json: cannot unmarshal string", false},
		{"not json", `schema: 1`, "decode manifest: invalid character", false},
		{"invalid field", strings.Replace(string(good), strings.Repeat("ab", 32), "deadbeef", 1), "decode manifest 20250305T170003Z-a1b2c3: db.sha256: not a SHA-256 hex digest", false},
		{"trailing garbage", string(good) + "}", "decode manifest: invalid character", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.data))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(got, m) {
					t.Fatalf("Decode = %+v, want %+v", got, m)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Decode error = %v, want it to contain %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrSchema) != tc.isSchema {
				t.Errorf("errors.Is(err, ErrSchema) = %v, want %v", !tc.isSchema, tc.isSchema)
			}
		})
	}
}
