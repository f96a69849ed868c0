package manifest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"
)

// Schema is the manifest schema this package reads and writes. A reader
// meets a higher number only after a breaking change of the contract and
// refuses it (ErrSchema) rather than guessing; compatible additions are new
// optional fields within schema 1, which older readers ignore.
const Schema = 1

// File names inside a snapshot directory (and under
// <host>/snapshots/<id>/ in the store). The manifest is written last: its
// presence marks the snapshot complete.
const (
	ManifestFile = "manifest.json"
	DBFile       = "db.dump.zst"
	DataFile     = "data.tar.zst"
)

// CompressionZstd is the only compression schema 1 knows.
const CompressionZstd = "zstd"

// Trigger says why a snapshot was taken.
type Trigger string

// Triggers of schema 1.
const (
	TriggerSchedule   Trigger = "schedule"
	TriggerManual     Trigger = "manual"
	TriggerDeploy     Trigger = "deploy"
	TriggerPreRestore Trigger = "pre-restore"
	TriggerCommand    Trigger = "command"
)

// Status is how far a snapshot has been checked.
type Status string

// Statuses of schema 1: complete = every part written, checksummed and the
// manifest renamed into place; verified = checksums and archive structure
// re-read and found intact afterwards (VerifiedAt says when).
const (
	StatusComplete Status = "complete"
	StatusVerified Status = "verified"
)

// Migration tools known to schema 1.
const (
	ToolAlembic = "alembic"
	ToolRails   = "rails"
	ToolNone    = "none"
)

// Manifest describes one snapshot (DESIGN.md "Snapshot manifest"). JSON
// field names are a wire contract shared with the cloud functions; fields
// beyond the contract are marked and omitted when empty.
type Manifest struct {
	Schema    int       `json:"schema"`
	ID        string    `json:"id"` // YYYYMMDDTHHMMSSZ-<6 hex>, see NewID
	Host      string    `json:"host"`
	CreatedAt time.Time `json:"created_at"`
	Trigger   Trigger   `json:"trigger"`
	Notes     string    `json:"notes"`
	App       App       `json:"app"`
	DB        *DB       `json:"db,omitempty"`   // nil: no database in this snapshot
	Data      *Data     `json:"data,omitempty"` // nil: no data directory in this snapshot
	Status    Status    `json:"status"`

	VerifiedAt time.Time   `json:"verified_at,omitzero"` // beyond the contract; set with StatusVerified
	ReadyCheck *ReadyCheck `json:"ready_check,omitempty"`
	Offsite    *Offsite    `json:"offsite,omitempty"`
}

// App is the application's code revision at snapshot time.
type App struct {
	Revision string `json:"revision"` // git commit or image tag/digest
	Image    string `json:"image"`    // the running container's image, if any
}

// DB is the database part: a pg_dump -Fc archive compressed with zstd.
type DB struct {
	Database      string           `json:"database"`
	ServerVersion string           `json:"server_version"`
	Migration     Migration        `json:"migration"`
	File          string           `json:"file"`        // file name in the snapshot, e.g. db.dump.zst
	Size          int64            `json:"size"`        // bytes of File (compressed)
	SHA256        string           `json:"sha256"`      // lowercase hex SHA-256 of File (compressed)
	Compression   string           `json:"compression"` // "zstd"
	Tables        map[string]int64 `json:"tables"`      // schema-qualified table ("public.users") -> exact rows

	DurationMS    int64  `json:"duration_ms,omitempty"`     // beyond the contract
	PgDumpVersion string `json:"pg_dump_version,omitempty"` // beyond the contract
}

// Migration is the schema migration state recorded with a dump, so a
// restore can be checked against the code it goes with.
type Migration struct {
	Tool     string `json:"tool"`     // alembic | rails | none
	Revision string `json:"revision"` // alembic version_num or the newest rails schema_migrations version
}

// Data is the data-directory part: a PAX tar compressed with zstd.
type Data struct {
	Path    string `json:"path"`    // the directory archived (absolute)
	File    string `json:"file"`    // file name in the snapshot, e.g. data.tar.zst
	Size    int64  `json:"size"`    // bytes of File (compressed)
	SHA256  string `json:"sha256"`  // lowercase hex SHA-256 of File (compressed)
	Entries int    `json:"entries"` // tar entries (files, directories, symlinks)

	// Beyond the contract.
	Compression string   `json:"compression,omitempty"` // "zstd" when set
	Changed     []string `json:"changed,omitempty"`     // files that changed while read (stored as read)
	Skipped     []string `json:"skipped,omitempty"`     // entries not archived, with the reason (sockets, devices, FIFOs)
	DurationMS  int64    `json:"duration_ms,omitempty"`
}

// ReadyCheck records the app's readiness probe around the snapshot.
type ReadyCheck struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
}

// Offsite records where the snapshot was copied off the host.
type Offsite struct {
	Bucket string    `json:"bucket"` // S3 bucket, or the directory of a dir store
	Key    string    `json:"key"`    // key (prefix) of the snapshot's manifest in the store
	At     time.Time `json:"at"`
	Store  string    `json:"store,omitempty"` // beyond the contract: "s3" | "dir" | "vault"
}

// ErrInvalid is matched (errors.Is) by every validation error.
var ErrInvalid = errors.New("invalid manifest")

// ErrSchema is matched by the error for a missing or unknown schema number.
var ErrSchema = errors.New("unsupported manifest schema")

// FieldError names the field at fault, as in "db.sha256: not a SHA-256 hex
// digest". It matches ErrInvalid.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string        { return e.Field + ": " + e.Msg }
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// NewID returns a snapshot id for t: "YYYYMMDDTHHMMSSZ-<6 hex>" in UTC, the
// hex from three bytes of rnd (crypto/rand when rnd is nil). Ids sort by
// time; the suffix keeps two snapshots of one second apart. Should rnd fail,
// the suffix comes from t's nanoseconds instead, so NewID never fails.
func NewID(t time.Time, rnd io.Reader) string {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [3]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		n := t.UnixNano()
		b = [3]byte{byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return t.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b[:])
}

const idTimeLayout = "20060102T150405Z"

var idRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$`)

// ParseID checks id's format and returns the UTC time it encodes.
func ParseID(id string) (time.Time, error) {
	if !idRE.MatchString(id) {
		return time.Time{}, fmt.Errorf("snapshot id %q: want YYYYMMDDTHHMMSSZ-<6 lowercase hex>", id)
	}
	t, err := time.Parse(idTimeLayout, id[:len(idTimeLayout)])
	if err != nil {
		return time.Time{}, fmt.Errorf("snapshot id %q: %w", id, err)
	}
	return t, nil
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the manifest against schema 1 and returns every problem
// found, joined, each a *FieldError naming the field. A nil error means the
// manifest can be encoded and trusted by a reader.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if m.Schema != Schema {
		bad("schema", "is %d, want %d", m.Schema, Schema)
	}
	if _, err := ParseID(m.ID); err != nil {
		bad("id", "%q is not YYYYMMDDTHHMMSSZ-<6 lowercase hex>", m.ID)
	}
	if strings.TrimSpace(m.Host) == "" {
		bad("host", "required")
	}
	if m.CreatedAt.IsZero() {
		bad("created_at", "required")
	}
	switch m.Trigger {
	case TriggerSchedule, TriggerManual, TriggerDeploy, TriggerPreRestore, TriggerCommand:
	default:
		bad("trigger", "%q is not one of schedule, manual, deploy, pre-restore, command", m.Trigger)
	}
	switch m.Status {
	case StatusComplete:
	case StatusVerified:
		if m.VerifiedAt.IsZero() {
			bad("verified_at", "required when status is verified")
		}
	default:
		bad("status", "%q is not one of complete, verified", m.Status)
	}
	if d := m.DB; d != nil {
		if d.Database == "" {
			bad("db.database", "required")
		}
		switch d.Migration.Tool {
		case ToolAlembic, ToolRails:
			if d.Migration.Revision == "" {
				bad("db.migration.revision", "required when the tool is %s", d.Migration.Tool)
			}
		case ToolNone:
		default:
			bad("db.migration.tool", "%q is not one of alembic, rails, none", d.Migration.Tool)
		}
		checkPart(bad, "db", d.File, d.Size, d.SHA256)
		if d.Compression != CompressionZstd {
			bad("db.compression", "%q is not zstd", d.Compression)
		}
		for name, rows := range d.Tables {
			if rows < 0 {
				bad("db.tables."+name, "negative row count %d", rows)
			}
		}
	}
	if d := m.Data; d != nil {
		if !path.IsAbs(d.Path) {
			bad("data.path", "%q is not an absolute path", d.Path)
		}
		checkPart(bad, "data", d.File, d.Size, d.SHA256)
		if d.Entries < 0 {
			bad("data.entries", "negative (%d)", d.Entries)
		}
		if d.Compression != "" && d.Compression != CompressionZstd {
			bad("data.compression", "%q is not zstd", d.Compression)
		}
	}
	if r := m.ReadyCheck; r != nil && r.At.IsZero() {
		bad("ready_check.at", "required")
	}
	if o := m.Offsite; o != nil {
		if o.Bucket == "" {
			bad("offsite.bucket", "required")
		}
		if o.Key == "" {
			bad("offsite.key", "required")
		}
		if o.At.IsZero() {
			bad("offsite.at", "required")
		}
	}
	return errors.Join(errs...)
}

// checkPart validates the file fields shared by db and data. File must be a
// plain file name: a manifest read from the store must not be able to point
// a restore at a path outside the snapshot directory.
func checkPart(bad func(string, string, ...any), part, file string, size int64, sum string) {
	if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
		bad(part+".file", "%q is not a plain file name", file)
	}
	if size < 0 {
		bad(part+".size", "negative (%d)", size)
	}
	if !sha256RE.MatchString(sum) {
		bad(part+".sha256", "not a SHA-256 hex digest")
	}
}

// Encode validates m and returns it as indented JSON with a trailing
// newline. Field order follows the struct and map keys are sorted, so equal
// manifests encode to equal bytes.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	return encodeJSON(m.normalized())
}

// normalized returns m with a nil db.tables as an empty map, so readers
// in other languages see {} rather than null.
func (m *Manifest) normalized() *Manifest {
	if m.DB == nil || m.DB.Tables != nil {
		return m
	}
	c, db := *m, *m.DB
	db.Tables = map[string]int64{}
	c.DB = &db
	return &c
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode reads one manifest and validates it. A missing or unknown schema
// number fails with ErrSchema before any other field is looked at. Unknown
// fields are ignored: within schema 1, writers may add optional fields and
// older readers must still read the manifest (re-encoding drops them).
func Decode(data []byte) (Manifest, error) {
	if err := checkSchema(data, "manifest"); err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest %s: %w", m.ID, err)
	}
	return m, nil
}

// checkSchema reads only the "schema" member of a JSON object.
func checkSchema(data []byte, what string) error {
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	switch {
	case head.Schema == nil:
		return fmt.Errorf("decode %s: no \"schema\" field: %w", what, ErrSchema)
	case *head.Schema > Schema:
		return fmt.Errorf("decode %s: schema %d is newer than this program understands (%d); upgrade it: %w", what, *head.Schema, Schema, ErrSchema)
	case *head.Schema != Schema:
		return fmt.Errorf("decode %s: schema %d is not %d: %w", what, *head.Schema, Schema, ErrSchema)
	}
	return nil
}
