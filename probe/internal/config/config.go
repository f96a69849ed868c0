package config

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Config is the probe's whole configuration file. Key names are a contract
// (DESIGN.md): scripts and external tests use them.
type Config struct {
	Host     string   `yaml:"host"`
	Timezone string   `yaml:"timezone"`
	StateDir string   `yaml:"state_dir"` // alert state, outbox, heartbeat; default /var/lib/backstop
	Listen   string   `yaml:"listen"`    // /metrics and /healthz for `probe run`; default 127.0.0.1:9187
	Checks   []Check  `yaml:"checks"`
	Alerts   Alerts   `yaml:"alerts"`
	Store    Store    `yaml:"store"`
	Backup   Backup   `yaml:"backup"`
	Rollback Rollback `yaml:"rollback"`
	Commands Commands `yaml:"commands"`
}

// Check is one entry of checks:. Which fields apply depends on Type
// (http, container, disk, tls, postgres, redis); Validate rejects the rest.
type Check struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	Interval Duration `yaml:"interval"` // default 5m
	Timeout  Duration `yaml:"timeout"`  // default 10s

	// http
	URL             string            `yaml:"url"`
	Method          string            `yaml:"method"` // default GET
	Headers         map[string]Secret `yaml:"headers"`
	Body            string            `yaml:"body"`
	Conditions      []string          `yaml:"conditions"`       // default ["[STATUS] == 200"]
	FollowRedirects *bool             `yaml:"follow_redirects"` // default true
	Insecure        bool              `yaml:"insecure"`         // skip TLS verification

	// container
	Containers []string `yaml:"containers"` // exact name or name prefix (Kamal: psyfit-web-<version>)
	Socket     string   `yaml:"socket"`     // Docker Engine socket; default unix:///var/run/docker.sock (DOCKER_HOST)

	// disk: used % thresholds (warn 80, critical 90)
	Paths    []string `yaml:"paths"`
	Warn     float64  `yaml:"warn"`
	Critical float64  `yaml:"critical"`

	// tls: host:port (SNI from host, or ServerName) or a PEM file
	Address      string `yaml:"address"` // also redis
	ServerName   string `yaml:"server_name"`
	CertFile     string `yaml:"cert_file"`
	CAFile       string `yaml:"ca_file"`       // extra trusted roots (PEM); default system roots
	WarnDays     int    `yaml:"warn_days"`     // default 14
	CriticalDays int    `yaml:"critical_days"` // default 3

	// postgres
	DSN               Secret           `yaml:"dsn"`
	MinRows           map[string]int64 `yaml:"min_rows"`
	MigrationRevision string           `yaml:"migration_revision"` // expected alembic_version / newest schema_migrations

	// redis (Address above)
	Password Secret `yaml:"password"`
}

// Alerts says who is told, how, and when.
type Alerts struct {
	To               []string `yaml:"to"`
	From             string   `yaml:"from"`
	Locale           string   `yaml:"locale"` // ja | en (default en)
	Via              string   `yaml:"via"`    // sendgrid | store | dir (default dir)
	SendGridAPIKey   Secret   `yaml:"sendgrid_api_key"`
	SendGridEndpoint string   `yaml:"sendgrid_endpoint"` // default https://api.sendgrid.com
	Dir              string   `yaml:"dir"`               // default <state_dir>/outbox-mail
	FailureThreshold int      `yaml:"failure_threshold"` // default 2
	SuccessThreshold int      `yaml:"success_threshold"` // default 2
	Reminder         Duration `yaml:"reminder"`          // default 1h; 0 after defaults = never
}

// Store is where snapshots, events and heartbeats go off the host.
type Store struct {
	S3  *S3Store `yaml:"s3"`
	Dir string   `yaml:"dir"`
}

// S3Store names an S3 (or S3-compatible) bucket.
type S3Store struct {
	Bucket   string `yaml:"bucket"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	Prefix   string `yaml:"prefix"`
}

// Backup configures snapshots (used by later issues; validated now so a
// config written today keeps working).
type Backup struct {
	Dir       string    `yaml:"dir"`
	Schedule  string    `yaml:"schedule"`
	Retention Retention `yaml:"retention"`
	Database  Database  `yaml:"database"`
	DataDir   string    `yaml:"data_dir"`
	App       App       `yaml:"app"`
	// SigningKeyFile is the Ed25519 key that signs manifests (default
	// <state_dir>/signing.key, made by the first backup); SigningPublicKeys
	// are further trusted public keys ("ed25519 <base64>").
	SigningKeyFile    string   `yaml:"signing_key_file"`
	SigningPublicKeys []string `yaml:"signing_public_keys"`
}

type Retention struct {
	Count int `yaml:"count"`
	Days  int `yaml:"days"`
}

type Database struct {
	DSN    Secret `yaml:"dsn"`
	PgDump string `yaml:"pg_dump"` // host | container:<name>
}

type App struct {
	Dir       string `yaml:"dir"`
	Container string `yaml:"container"`
}

type Rollback struct {
	ReadyURL string   `yaml:"ready_url"`
	Timeout  Duration `yaml:"timeout"`
	Interval Duration `yaml:"interval"`
	Canary   *bool    `yaml:"canary"`
	Log      string   `yaml:"log"`
	Code     Code     `yaml:"code"`
	// DBHook runs before the database is restored (e.g. `alembic downgrade
	// $TARGET_REVISION`); "" = none.
	DBHook string `yaml:"db_hook"`
	// Env names the secret-looking variables of the probe's environment
	// (DATABASE_URL, *PASSWORD*, *KEY*, *TOKEN*...) that the hooks (db_hook,
	// code.command, code.restart) still get; the others are removed.
	Env []string `yaml:"env"`
	// Drill is the cron schedule of `probe run`'s restore drill (default
	// monthly, "0 3 1 * *"); "off" disables it.
	Drill string `yaml:"drill"`
	// KeepPre is how many restores' pre-states (<db>_pre_<txn>,
	// <dir>.pre-<txn>) are kept for `probe revert` (default 2).
	KeepPre int `yaml:"keep_pre"`
}

type Code struct {
	Strategy string `yaml:"strategy"` // docker | git | command | none
	Proxy    Proxy  `yaml:"proxy"`
	// Port is the app's port inside its container (docker; default 3000).
	Port int `yaml:"port"`
	// Restart is the command run after `git checkout` (git strategy).
	Restart string `yaml:"restart"`
	// Command is the hook of the command strategy, run with TXN, SNAPSHOT
	// and REVISION in its environment.
	Command string `yaml:"command"`
}

type Proxy struct {
	Container string `yaml:"container"`
	Service   string `yaml:"service"`
	Host      string `yaml:"host"`
}

type Commands struct {
	Poll        Duration `yaml:"poll"`
	HMACKeyFile string   `yaml:"hmac_key_file"`
	TTL         Duration `yaml:"ttl"` // longest command lifetime accepted; 0: 15m
}

// Duration is a time.Duration written as "5m", "90s" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses Go duration syntax ("90s", "5m", "1h30m").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("not a duration (like 90s, 5m, 1h): %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Secret is a string that never prints: fmt, slog and JSON all show
// "[redacted]". Use Reveal() only where the value is handed to a library.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoding/json and yaml from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText stores the value as read.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }
