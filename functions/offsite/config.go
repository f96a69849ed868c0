package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults of the function's settings.
const (
	DefaultLockDays           = 30
	DefaultPartSize           = 512 << 20 // UploadPartCopy part size
	DefaultMultipartThreshold = 5 << 30   // CopyObject's limit: at or above it, UploadPartCopy
	DefaultMaxSnapshotAge     = 26 * time.Hour
	DefaultMaxHeartbeatAge    = 15 * time.Minute

	minPartSize = 5 << 20 // S3's smallest part but the last
	maxPartSize = 5 << 30 // and its largest
	maxParts    = 10000
)

// Config is the function's settings. LoadConfig reads them from the
// environment:
//
//	SOURCE_BUCKET        the bucket the probes write (snapshots, heartbeats, catalogs, offsite/)   required
//	VAULT_BUCKET         the Object Lock vault bucket (another region or account is fine)        required
//	VAULT_REGION         the vault bucket's region                                                the function's region
//	LOCK_DAYS            COMPLIANCE retention of each vault copy, in days                          30
//	COPY_PART_SIZE       UploadPartCopy part size in bytes (5 MiB .. 5 GiB)                        536870912 (512 MiB)
//	MULTIPART_THRESHOLD  objects of at least this many bytes are copied in parts                    5368709120 (5 GiB)
//	HOSTS                hosts the schedule watches and prunes, comma-separated                     (none: the schedule does nothing)
//	KEY_PREFIX           prefix of the hosts' keys in SOURCE_BUCKET (the probe's store.s3.prefix)  ""
//	MAX_SNAPSHOT_AGE     alert when a host's newest vaulted snapshot is older                       26h
//	MAX_HEARTBEAT_AGE    alert when <host>/heartbeat.json is older                                  15m
//	ALERT_LOCALE         en | ja, the events' locale                                                en
//	SIGNING_PUBLIC_KEYS  the probes' manifest signing keys, "ed25519 <base64>", comma-separated;
//	                     set: a snapshot whose manifest.sig does not verify is not vaulted      (none: unchecked)
//	S3_PATH_STYLE        true: path-style addressing (S3-compatible servers; the endpoint comes
//	                     from the SDK's AWS_ENDPOINT_URL_S3)                                        false
type Config struct {
	SourceBucket       string
	VaultBucket        string
	VaultRegion        string
	Retention          time.Duration // LOCK_DAYS × 24h
	PartSize           int64
	MultipartThreshold int64
	Hosts              []string
	KeyPrefix          string // "" or ending in "/"
	MaxSnapshotAge     time.Duration
	MaxHeartbeatAge    time.Duration
	Locale             string
	PathStyle          bool
	CopyConcurrency    int // UploadPartCopy calls in flight; 4 when 0
	SigningKeys        []ed25519.PublicKey
}

// ErrConfig is matched by every configuration error.
var ErrConfig = errors.New("offsite config")

// LoadConfig reads the settings from getenv and checks them; an error
// names the variable at fault.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		SourceBucket:       strings.TrimSpace(getenv("SOURCE_BUCKET")),
		VaultBucket:        strings.TrimSpace(getenv("VAULT_BUCKET")),
		VaultRegion:        strings.TrimSpace(getenv("VAULT_REGION")),
		Retention:          DefaultLockDays * 24 * time.Hour,
		PartSize:           DefaultPartSize,
		MultipartThreshold: DefaultMultipartThreshold,
		KeyPrefix:          strings.Trim(strings.TrimSpace(getenv("KEY_PREFIX")), "/"),
		MaxSnapshotAge:     DefaultMaxSnapshotAge,
		MaxHeartbeatAge:    DefaultMaxHeartbeatAge,
		Locale:             "en",
	}
	bad := func(name, format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s: %s", ErrConfig, name, fmt.Sprintf(format, args...))
	}
	if c.SourceBucket == "" {
		return bad("SOURCE_BUCKET", "required")
	}
	if c.VaultBucket == "" {
		return bad("VAULT_BUCKET", "required")
	}
	if c.VaultBucket == c.SourceBucket {
		return bad("VAULT_BUCKET", "must not be SOURCE_BUCKET (%s)", c.SourceBucket)
	}
	if c.KeyPrefix != "" {
		c.KeyPrefix += "/"
	}
	if s := strings.TrimSpace(getenv("LOCK_DAYS")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 36500 {
			return bad("LOCK_DAYS", "want a whole number of days 1..36500, not %q", s)
		}
		c.Retention = time.Duration(n) * 24 * time.Hour
	}
	for _, v := range []struct {
		name     string
		to       *int64
		min, max int64
	}{
		{"COPY_PART_SIZE", &c.PartSize, minPartSize, maxPartSize},
		{"MULTIPART_THRESHOLD", &c.MultipartThreshold, 1, maxPartSize},
	} {
		s := strings.TrimSpace(getenv(v.name))
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < v.min || n > v.max {
			return bad(v.name, "want bytes %d..%d, not %q", v.min, v.max, s)
		}
		*v.to = n
	}
	for _, h := range strings.Split(getenv("HOSTS"), ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/ ") {
			return bad("HOSTS", "%q is not a host name", h)
		}
		c.Hosts = append(c.Hosts, h)
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{
		{"MAX_SNAPSHOT_AGE", &c.MaxSnapshotAge},
		{"MAX_HEARTBEAT_AGE", &c.MaxHeartbeatAge},
	} {
		s := strings.TrimSpace(getenv(d.name))
		if s == "" {
			continue
		}
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			return bad(d.name, "want a positive duration like 26h or 15m, not %q", s)
		}
		*d.to = v
	}
	switch s := strings.TrimSpace(getenv("ALERT_LOCALE")); s {
	case "", "en":
	case "ja":
		c.Locale = "ja"
	default:
		return bad("ALERT_LOCALE", "want en or ja, not %q", s)
	}
	keys, err := parseSigningKeys(getenv("SIGNING_PUBLIC_KEYS"))
	if err != nil {
		return bad("SIGNING_PUBLIC_KEYS", "%v", err)
	}
	c.SigningKeys = keys
	if s := strings.TrimSpace(getenv("S3_PATH_STYLE")); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad("S3_PATH_STYLE", "want true or false, not %q", s)
		}
		c.PathStyle = b
	}
	return c, nil
}
