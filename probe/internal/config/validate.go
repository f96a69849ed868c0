package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Defaults, documented in the README's configuration section.
const (
	DefaultStateDir   = "/var/lib/backstop"
	DefaultListen     = "127.0.0.1:9187"
	DefaultInterval   = 5 * time.Minute
	DefaultTimeout    = 10 * time.Second
	DefaultReminder   = time.Hour
	DefaultThreshold  = 2
	DefaultDiskWarn   = 80
	DefaultDiskCrit   = 90
	DefaultTLSWarn    = 14
	DefaultTLSCrit    = 3
	DefaultSchedule   = "0 2 * * *"
	DefaultBackupDir  = "/var/backups/backstop"
	DefaultRetention  = 14
	DefaultRetainDays = 30
)

// CheckTypes are the check kinds and the keys each one takes beside the
// common name, type, interval and timeout.
var CheckTypes = map[string][]string{
	"http":      {"url", "method", "headers", "body", "conditions", "follow_redirects", "insecure"},
	"container": {"containers", "socket"},
	"disk":      {"paths", "warn", "critical"},
	"tls":       {"address", "server_name", "cert_file", "ca_file", "warn_days", "critical_days"},
	"postgres":  {"dsn", "min_rows", "migration_revision"},
	"redis":     {"address", "password"},
}

var commonCheckKeys = []string{"name", "type", "interval", "timeout"}

func applyDefaults(c *Config, env Env) {
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Timezone == "" {
		c.Timezone = "Local"
		if tz, ok := env("TZ"); ok && tz != "" {
			c.Timezone = tz
		}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Backup.SigningKeyFile == "" {
		c.Backup.SigningKeyFile = filepath.Join(c.StateDir, "signing.key")
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	for i := range c.Checks {
		ch := &c.Checks[i]
		if ch.Interval == 0 {
			ch.Interval = Duration(DefaultInterval)
		}
		if ch.Timeout == 0 {
			ch.Timeout = Duration(DefaultTimeout)
		}
		switch ch.Type {
		case "http":
			if ch.Method == "" {
				ch.Method = "GET"
			}
			ch.Method = strings.ToUpper(ch.Method)
			if len(ch.Conditions) == 0 {
				ch.Conditions = []string{"[STATUS] == 200"}
			}
		case "disk":
			if ch.Warn == 0 {
				ch.Warn = DefaultDiskWarn
			}
			if ch.Critical == 0 {
				ch.Critical = DefaultDiskCrit
			}
		case "tls":
			if ch.WarnDays == 0 {
				ch.WarnDays = DefaultTLSWarn
			}
			if ch.CriticalDays == 0 {
				ch.CriticalDays = DefaultTLSCrit
			}
		case "postgres":
			if ch.DSN == "" {
				if v, ok := env("DATABASE_URL"); ok {
					ch.DSN = Secret(v)
				}
			}
		}
	}
	a := &c.Alerts
	if a.Locale == "" {
		a.Locale = "en"
	}
	if a.Via == "" {
		a.Via = "dir"
	}
	if a.Dir == "" {
		a.Dir = c.StateDir + "/mail"
	}
	if a.FailureThreshold == 0 {
		a.FailureThreshold = DefaultThreshold
	}
	if a.SuccessThreshold == 0 {
		a.SuccessThreshold = DefaultThreshold
	}
	if a.Reminder == 0 {
		a.Reminder = Duration(DefaultReminder)
	}
	b := &c.Backup
	if b.Dir == "" {
		b.Dir = DefaultBackupDir
	}
	if b.Schedule == "" {
		b.Schedule = DefaultSchedule
	}
	if b.Retention.Count == 0 {
		b.Retention.Count = DefaultRetention
	}
	if b.Retention.Days == 0 {
		b.Retention.Days = DefaultRetainDays
	}
	if b.Database.PgDump == "" {
		b.Database.PgDump = "host"
	}
	r := &c.Rollback
	if r.Timeout == 0 {
		r.Timeout = Duration(90 * time.Second)
	}
	if r.Interval == 0 {
		r.Interval = Duration(10 * time.Second)
	}
	if r.Canary == nil {
		t := true
		r.Canary = &t
	}
	if r.Log == "" {
		r.Log = "/var/log/backstop/rollback.log"
	}
	if r.Code.Strategy == "" {
		r.Code.Strategy = "none"
	}
	if r.Code.Port == 0 {
		r.Code.Port = 3000
	}
	if r.Drill == "" {
		r.Drill = "0 3 1 * *"
	}
	if r.KeepPre == 0 {
		r.KeepPre = 2
	}
	if c.Commands.Poll == 0 {
		c.Commands.Poll = Duration(15 * time.Second)
	}
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks a defaulted Config and returns every problem, each naming
// its field. It never quotes a secret.
func Validate(c *Config) Errors {
	var errs Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !nameRe.MatchString(c.Host) {
		bad("host", "must be 1-63 letters, digits, '.', '_' or '-' (it names the S3 prefix)")
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		bad("timezone", "unknown time zone %q (use an IANA name like Asia/Tokyo)", c.Timezone)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port, like 127.0.0.1:9187")
	}
	if len(c.Checks) == 0 {
		bad("checks", "at least one check is needed")
	}
	seen := map[string]int{}
	for i := range c.Checks {
		validateCheck(&c.Checks[i], fmt.Sprintf("checks[%d]", i), seen, i, bad)
	}
	validateAlerts(c, bad)
	if c.Store.S3 != nil {
		if c.Store.S3.Bucket == "" {
			bad("store.s3.bucket", "required")
		}
		if c.Store.Dir != "" {
			bad("store", "set s3 or dir, not both")
		}
		if e := c.Store.S3.Endpoint; e != "" {
			if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("store.s3.endpoint", "must be an http(s) URL")
			}
		}
	}
	if _, err := cron.ParseStandard(c.Backup.Schedule); err != nil {
		bad("backup.schedule", "not a cron expression (like \"0 2 * * *\"): %v", err)
	}
	validateSigning(c, bad)
	if c.Backup.Retention.Count < 0 {
		bad("backup.retention.count", "must be ≥ 0")
	}
	if c.Backup.Retention.Days < 0 {
		bad("backup.retention.days", "must be ≥ 0")
	}
	if p := c.Backup.Database.PgDump; p != "host" && !(strings.HasPrefix(p, "container:") && len(p) > len("container:")) {
		bad("backup.database.pg_dump", "must be host or container:<name>")
	}
	switch code := c.Rollback.Code; code.Strategy {
	case "docker":
		if c.Backup.App.Container == "" {
			bad("backup.app.container", "required by rollback.code.strategy docker (the app's container name or Kamal prefix)")
		}
		if code.Proxy.Container == "" || code.Proxy.Service == "" {
			bad("rollback.code.proxy", "container and service are required by strategy docker")
		}
	case "git":
		if c.Backup.App.Dir == "" {
			bad("backup.app.dir", "required by rollback.code.strategy git (the app's git work tree)")
		}
		if code.Restart == "" {
			bad("rollback.code.restart", "required by strategy git (the command that restarts the app)")
		}
	case "command":
		if code.Command == "" {
			bad("rollback.code.command", "required by strategy command")
		}
	case "none":
	default:
		bad("rollback.code.strategy", "must be docker, git, command or none")
	}
	if p := c.Rollback.Code.Port; p < 1 || p > 65535 {
		bad("rollback.code.port", "must be 1..65535")
	}
	if d := c.Rollback.Drill; d != "off" {
		if _, err := cron.ParseStandard(d); err != nil {
			bad("rollback.drill", "not a cron expression (or off): %v", err)
		}
	}
	if c.Rollback.KeepPre < 0 {
		bad("rollback.keep_pre", "must be ≥ 0")
	}
	if u := c.Rollback.ReadyURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("rollback.ready_url", "must be an http(s) URL")
		}
	}
	if c.Rollback.Timeout < 0 {
		bad("rollback.timeout", "must be > 0")
	}
	if c.Rollback.Interval < 0 || c.Rollback.Interval > c.Rollback.Timeout {
		bad("rollback.interval", "must be > 0 and ≤ rollback.timeout")
	}
	if c.Commands.Poll < Duration(time.Second) {
		bad("commands.poll", "must be at least 1s")
	}
	return errs
}

func validateCheck(ch *Check, p string, seen map[string]int, i int, bad func(string, string, ...any)) {
	if ch.Name == "" {
		bad(p+".name", "required")
	} else if !nameRe.MatchString(ch.Name) {
		bad(p+".name", "must be 1-63 letters, digits, '.', '_' or '-'")
	} else if j, dup := seen[ch.Name]; dup {
		bad(p+".name", "%q is already used by checks[%d]", ch.Name, j)
	} else {
		seen[ch.Name] = i
	}
	keys, ok := CheckTypes[ch.Type]
	if !ok {
		bad(p+".type", "must be one of container, disk, http, postgres, redis, tls (got %q)", ch.Type)
		return
	}
	for _, k := range setKeys(ch) {
		if !contains(keys, k) && !contains(commonCheckKeys, k) {
			bad(p+"."+k, "not used by type %s (it takes %s)", ch.Type, strings.Join(keys, ", "))
		}
	}
	if ch.Interval < Duration(time.Second) {
		bad(p+".interval", "must be at least 1s")
	}
	if ch.Timeout <= 0 {
		bad(p+".timeout", "must be > 0")
	} else if ch.Timeout > ch.Interval {
		bad(p+".timeout", "must not exceed the interval (%s)", ch.Interval)
	}
	switch ch.Type {
	case "http":
		u, err := url.Parse(ch.URL)
		if ch.URL == "" {
			bad(p+".url", "required")
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(p+".url", "must be an http:// or https:// URL")
		}
		switch ch.Method {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		default:
			bad(p+".method", "must be an HTTP method like GET or POST")
		}
	case "container":
		if len(ch.Containers) == 0 {
			bad(p+".containers", "name at least one container (exact name or name prefix)")
		}
		for j, n := range ch.Containers {
			if strings.TrimSpace(n) == "" {
				bad(fmt.Sprintf("%s.containers[%d]", p, j), "empty name")
			}
		}
	case "disk":
		if len(ch.Paths) == 0 {
			bad(p+".paths", "name at least one path")
		}
		for j, d := range ch.Paths {
			if !strings.HasPrefix(d, "/") {
				bad(fmt.Sprintf("%s.paths[%d]", p, j), "must be an absolute path")
			}
		}
		if ch.Warn < 1 || ch.Warn > 100 {
			bad(p+".warn", "must be 1..100")
		}
		if ch.Critical < 1 || ch.Critical > 100 {
			bad(p+".critical", "must be 1..100")
		} else if ch.Critical < ch.Warn {
			bad(p+".critical", "must be ≥ warn (%g)", ch.Warn)
		}
	case "tls":
		switch {
		case ch.Address == "" && ch.CertFile == "":
			bad(p+".address", "set address (host:port) or cert_file")
		case ch.Address != "" && ch.CertFile != "":
			bad(p+".address", "set address or cert_file, not both")
		case ch.Address != "":
			if _, _, err := net.SplitHostPort(ch.Address); err != nil {
				bad(p+".address", "must be host:port, like psytech.jp:443")
			}
		}
		if ch.WarnDays < 1 || ch.WarnDays > 365 {
			bad(p+".warn_days", "must be 1..365")
		}
		if ch.CriticalDays < 0 || ch.CriticalDays > ch.WarnDays {
			bad(p+".critical_days", "must be 0..warn_days (%d)", ch.WarnDays)
		}
	case "postgres":
		if ch.DSN == "" {
			bad(p+".dsn", "required (or set DATABASE_URL)")
		}
		for t, n := range ch.MinRows {
			if n < 0 {
				bad(p+".min_rows."+t, "must be ≥ 0")
			}
		}
	case "redis":
		if ch.Address == "" {
			bad(p+".address", "required (host:port)")
		} else if _, _, err := net.SplitHostPort(ch.Address); err != nil {
			bad(p+".address", "must be host:port, like 127.0.0.1:6379")
		}
	}
}

func validateAlerts(c *Config, bad func(string, string, ...any)) {
	a := &c.Alerts
	switch a.Locale {
	case "ja", "en":
	default:
		bad("alerts.locale", "must be ja or en")
	}
	for i, to := range a.To {
		if _, err := mail.ParseAddress(to); err != nil {
			bad(fmt.Sprintf("alerts.to[%d]", i), "not an e-mail address: %q", to)
		}
	}
	if a.From != "" {
		if _, err := mail.ParseAddress(a.From); err != nil {
			bad("alerts.from", "not an e-mail address: %q", a.From)
		}
	}
	switch a.Via {
	case "sendgrid":
		if a.SendGridAPIKey == "" {
			bad("alerts.sendgrid_api_key", "required when via is sendgrid (or set SENDGRID_API_KEY)")
		}
		if len(a.To) == 0 {
			bad("alerts.to", "required when via is sendgrid (or set MONITOR_ALERT_EMAIL)")
		}
		if a.From == "" {
			bad("alerts.from", "required when via is sendgrid (or set MAILER_FROM_ADDRESS)")
		}
		if e := a.SendGridEndpoint; e != "" {
			if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("alerts.sendgrid_endpoint", "must be an http(s) URL")
			}
		}
	case "store":
		if c.Store.Dir == "" && c.Store.S3 == nil {
			bad("alerts.via", "store needs store.dir or store.s3")
		}
	case "dir":
	default:
		bad("alerts.via", "must be sendgrid, store or dir")
	}
	if a.FailureThreshold < 1 || a.FailureThreshold > 100 {
		bad("alerts.failure_threshold", "must be 1..100")
	}
	if a.SuccessThreshold < 1 || a.SuccessThreshold > 100 {
		bad("alerts.success_threshold", "must be 1..100")
	}
	if a.Reminder < 0 {
		bad("alerts.reminder", "must be ≥ 0")
	}
}

// setKeys lists the yaml names of the check's fields that hold a value.
func setKeys(ch *Check) []string {
	v := reflect.ValueOf(*ch)
	t := v.Type()
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if !v.Field(i).IsZero() {
			out = append(out, name)
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
