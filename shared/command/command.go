package command

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"backstop/shared/clip"
	"backstop/shared/manifest"
)

// Parts a command may restore.
const (
	PartDB   = "db"
	PartData = "data"
	PartCode = "code"
)

// Latest is the Snapshot value that means the newest snapshot.
const Latest = "latest"

const (
	// TTL is how long a command stays valid after it is issued (the restore
	// function sets ExpiresAt = IssuedAt + TTL).
	TTL = 15 * time.Minute
	// MaxLifetime bounds ExpiresAt - IssuedAt: a longer-lived command is
	// malformed, whoever signed it.
	MaxLifetime = 24 * time.Hour
	// ClockSkew is how far IssuedAt may lie in the verifier's future.
	ClockSkew = 2 * time.Minute
	// MaxSize bounds an encoded command; Decode rejects anything larger.
	MaxSize = 16 << 10
	// MinKeyLen is the shortest HMAC key Sign and Verify accept.
	MinKeyLen = 16
)

// Sentinel errors of Verify and Decode, for errors.Is. The error text
// around them says exactly what was wrong.
var (
	ErrForged    = errors.New("forged: signature does not match")
	ErrExpired   = errors.New("expired")
	ErrWrongHost = errors.New("wrong host")
	ErrMalformed = errors.New("malformed")
)

// timeLayout is the only time format on the wire and in the canonical form.
const timeLayout = "2006-01-02T15:04:05Z"

// Command is one signed restore request. Its JSON form (MarshalJSON) is the
// object stored at <host>/commands/<id>.json; times are written as
// 2006-01-02T15:04:05Z (UTC, whole seconds).
type Command struct {
	ID          string    // NewID: YYYYMMDDTHHMMSSZ-<8 lowercase hex>
	Host        string    // the probe's host; only that probe runs it
	Snapshot    string    // "latest" or a snapshot id
	Parts       []string  // db, data, code; at least one, no repeats
	Reason      string    // free text, for the record
	RequestedBy string    // who asked (an IAM principal or an e-mail)
	IssuedAt    time.Time // whole seconds, UTC
	ExpiresAt   time.Time // whole seconds, UTC
	DryRun      bool      // plan only: verify the snapshot, change nothing
	Signature   string    // hex HMAC-SHA256 of Canonical, lowercase, 64 digits
}

// wire is the JSON form of a Command, fields in canonical order.
type wire struct {
	ID          string   `json:"id"`
	Host        string   `json:"host"`
	Snapshot    string   `json:"snapshot"`
	Parts       []string `json:"parts"`
	Reason      string   `json:"reason"`
	RequestedBy string   `json:"requested_by"`
	IssuedAt    string   `json:"issued_at"`
	ExpiresAt   string   `json:"expires_at"`
	DryRun      bool     `json:"dry_run"`
	Signature   string   `json:"signature,omitempty"`
}

func (c Command) wire() wire {
	parts := c.Parts
	if parts == nil {
		parts = []string{}
	}
	return wire{ID: c.ID, Host: c.Host, Snapshot: c.Snapshot, Parts: parts, Reason: c.Reason, RequestedBy: c.RequestedBy,
		IssuedAt: formatTime(c.IssuedAt), ExpiresAt: formatTime(c.ExpiresAt), DryRun: c.DryRun, Signature: c.Signature}
}

func formatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(timeLayout) }

// Canonical is the byte string the signature covers: a JSON object of
// every field but signature, with exactly these keys in this order and no
// whitespace between tokens:
//
//	{"id":…,"host":…,"snapshot":…,"parts":[…],"reason":…,"requested_by":…,"issued_at":…,"expires_at":…,"dry_run":…}
//
// Strings are JSON strings as Go's encoding/json writes them with HTML
// escaping off: `"` and `\` are escaped with a backslash; control
// characters below U+0020 as \b, \f, \n, \r, \t, or else \u00XX (lowercase
// hex); U+2028 and U+2029 as \u2028 and \u2029, invalid UTF-8 as \ufffd,
// everything else (including < > & and non-ASCII) as raw UTF-8. parts is an
// array of strings in the command's order ([] when empty). issued_at and
// expires_at are strings in RFC 3339 UTC with whole seconds and a "Z"
// ("2025-06-01T02:03:04Z"; sub-second parts are truncated). dry_run is
// true or false. The golden file testdata/command.canonical is an example.
func Canonical(c Command) []byte {
	w := c.wire()
	w.Signature = "" // omitempty: not part of the canonical form
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		panic(fmt.Sprintf("command: encode canonical form: %v", err)) // strings and bools never fail
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// MarshalJSON writes the command as stored: the canonical fields plus
// signature, times as 2006-01-02T15:04:05Z.
func (c Command) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c.wire()); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Encode is the stored form of c (indented JSON, a trailing newline), what
// the restore function writes to <host>/commands/<id>.json.
func Encode(c Command) ([]byte, error) {
	raw, err := c.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// UnmarshalJSON is as strict as Decode, without the size limit: unknown
// fields and times not in 2006-01-02T15:04:05Z form fail with ErrMalformed.
func (c *Command) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w struct {
		wire
		Signature *string `json:"signature"`
	}
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	issued, err := parseTime("issued_at", w.IssuedAt)
	if err != nil {
		return err
	}
	expires, err := parseTime("expires_at", w.ExpiresAt)
	if err != nil {
		return err
	}
	*c = Command{ID: w.ID, Host: w.Host, Snapshot: w.Snapshot, Parts: w.Parts, Reason: w.Reason,
		RequestedBy: w.RequestedBy, IssuedAt: issued, ExpiresAt: expires, DryRun: w.DryRun}
	if w.Signature != nil {
		c.Signature = *w.Signature
	}
	return nil
}

func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s {
		return time.Time{}, fmt.Errorf("%w: %s %q: want UTC with whole seconds, like 2025-06-01T02:03:04Z", ErrMalformed, field, s)
	}
	return t, nil
}

// Decode reads a stored command strictly: at most MaxSize bytes, one JSON
// object, no unknown fields, times in 2006-01-02T15:04:05Z
// form. Every failure matches ErrMalformed. Decode does not verify: call
// Verify before trusting anything in the command.
func Decode(data []byte) (Command, error) {
	if len(data) > MaxSize {
		return Command{}, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrMalformed, len(data), MaxSize)
	}
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return Command{}, err
	}
	return c, nil
}

// mac is the hex HMAC-SHA256 of c's canonical form.
func mac(c Command, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(Canonical(c))
	return h.Sum(nil)
}

// Sign sets c.Signature to the lowercase hex HMAC-SHA256 of Canonical(*c)
// under key. It fails, leaving c as it was, when the key is shorter than
// MinKeyLen.
func Sign(c *Command, key []byte) error {
	if len(key) < MinKeyLen {
		return fmt.Errorf("sign command %s: key is %d bytes, want at least %d", c.ID, len(key), MinKeyLen)
	}
	c.Signature = hex.EncodeToString(mac(*c, key))
	return nil
}

// Verify accepts c only if all of these hold, checked in this order:
//
//  1. the signature is the HMAC of Canonical(c) under key, compared in
//     constant time (else ErrForged — nothing else is looked at, so an
//     unsigned command learns nothing more);
//  2. the id has NewID's format (else ErrMalformed);
//  3. c.Host is host (else ErrWrongHost);
//  4. the snapshot is "latest" or a snapshot id, the parts are one or more
//     of db, data, code without repeats, and 0 < expires_at - issued_at ≤
//     MaxLifetime (else ErrMalformed);
//  5. now is before expires_at, and issued_at is no more than ClockSkew
//     after now (else ErrExpired).
//
// A key shorter than MinKeyLen is a configuration error, not ErrForged.
func Verify(c Command, key []byte, host string, now time.Time) error {
	if len(key) < MinKeyLen {
		return fmt.Errorf("verify command %s: key is %d bytes, want at least %d", c.ID, len(key), MinKeyLen)
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != sha256.Size || strings.ToLower(c.Signature) != c.Signature {
		return fmt.Errorf("%w: signature %q is not 64 lowercase hex digits", ErrForged, clip.End(c.Signature, 80))
	}
	if !hmac.Equal(sig, mac(c, key)) {
		return ErrForged
	}
	if err := ParseID(c.ID); err != nil {
		return err
	}
	if c.Host != host {
		return fmt.Errorf("%w: command is for host %q, this is %q", ErrWrongHost, c.Host, host)
	}
	if c.Snapshot != Latest {
		if _, err := manifest.ParseID(c.Snapshot); err != nil {
			return fmt.Errorf("%w: snapshot %q is neither %q nor a snapshot id", ErrMalformed, c.Snapshot, Latest)
		}
	}
	if err := checkParts(c.Parts); err != nil {
		return err
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt); life <= 0 || life > MaxLifetime {
		return fmt.Errorf("%w: expires_at %s is not within %s after issued_at %s", ErrMalformed,
			formatTime(c.ExpiresAt), MaxLifetime, formatTime(c.IssuedAt))
	}
	if !now.Before(c.ExpiresAt) {
		return fmt.Errorf("%w: at %s, %s ago", ErrExpired, formatTime(c.ExpiresAt), now.Sub(c.ExpiresAt).Round(time.Second))
	}
	if c.IssuedAt.Sub(now) > ClockSkew {
		return fmt.Errorf("%w: issued_at %s is %s in the future (clock skew allowed: %s)", ErrExpired,
			formatTime(c.IssuedAt), c.IssuedAt.Sub(now).Round(time.Second), ClockSkew)
	}
	return nil
}

func checkParts(parts []string) error {
	if len(parts) == 0 {
		return fmt.Errorf("%w: parts: none given (want one or more of db, data, code)", ErrMalformed)
	}
	seen := map[string]bool{}
	for _, p := range parts {
		if p != PartDB && p != PartData && p != PartCode {
			return fmt.Errorf("%w: parts: unknown part %q (want db, data, code)", ErrMalformed, clip.End(p, 40))
		}
		if seen[p] {
			return fmt.Errorf("%w: parts: %q given twice", ErrMalformed, p)
		}
		seen[p] = true
	}
	return nil
}

const idTimeLayout = "20060102T150405Z"

var idRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// NewID returns a command id, YYYYMMDDTHHMMSSZ-<8 lowercase hex>: now in
// UTC and 4 bytes from r (crypto/rand when r is nil or fails).
func NewID(now time.Time, r io.Reader) string {
	b := make([]byte, 4)
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b); err != nil {
		rand.Read(b)
	}
	return now.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b)
}

// ParseID reports whether id has NewID's format (the error matches
// ErrMalformed).
func ParseID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: command id %q: want YYYYMMDDTHHMMSSZ-<8 lowercase hex>", ErrMalformed, clip.End(id, 80))
	}
	if _, err := time.Parse(idTimeLayout, id[:len(idTimeLayout)]); err != nil {
		return fmt.Errorf("%w: command id %q: %v", ErrMalformed, id, err)
	}
	return nil
}

// ValidParts reports whether parts is a valid, non-empty parts list; the
// restore function checks a request with it before signing.
func ValidParts(parts []string) error { return checkParts(parts) }

// ParseKey turns the content of a key file (or a Secrets Manager secret
// string) into the HMAC key: the bytes with surrounding whitespace
// trimmed, so `echo "$SECRET" > command.key` works. Both sides must use it.
func ParseKey(b []byte) ([]byte, error) {
	k := bytes.TrimSpace(b)
	if len(k) < MinKeyLen {
		return nil, fmt.Errorf("HMAC key is %d bytes, want at least %d", len(k), MinKeyLen)
	}
	return slices.Clone(k), nil
}

// ErrKeyFileMode is returned by LoadKey for a key file that group or
// others may read or write: anyone who reads it can order a restore.
var ErrKeyFileMode = errors.New("readable or writable by group or others")

// LoadKey reads the probe's key file (commands.hmac_key_file) with ParseKey,
// refusing one whose mode allows group or others any access
// (ErrKeyFileMode, naming the mode). The error names the file but never
// shows its content.
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read command key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read command key: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("command key %s is mode %04o, %w: chmod 600 %s", path, m, ErrKeyFileMode, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("read command key %s: %w", path, err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("command key %s: %w", path, err)
	}
	return k, nil
}
