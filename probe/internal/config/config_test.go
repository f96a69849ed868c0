package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	dbPassword = "s3cr3t-db-pw-7731"
	sgKey      = "SG.key-ABCDEF-0099"
	redisPW    = "redis-pw-5512"
)

func envMap(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func seedEnv() map[string]string {
	return map[string]string{
		"DATABASE_URL":     "postgres://app:" + dbPassword + "@127.0.0.1:5432/psyfit",
		"SENDGRID_API_KEY": sgKey,
		"REDIS_PASSWORD":   redisPW,
	}
}

func TestLoadDesignExample(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", envMap(seedEnv()))
	if err != nil {
		t.Fatalf("the DESIGN.md example must load: %v", err)
	}
	if got := cfg.Checks[4].DSN.Reveal(); !strings.Contains(got, dbPassword) {
		t.Errorf("${DATABASE_URL} not expanded: %q", got)
	}
	if cfg.Checks[5].Password.Reveal() != redisPW {
		t.Errorf("${REDIS_PASSWORD} not expanded")
	}
	if cfg.Alerts.SendGridAPIKey.Reveal() != sgKey || cfg.Alerts.Locale != "ja" {
		t.Errorf("alerts = %+v", cfg.Alerts)
	}
	if cfg.Checks[1].Interval.D() != DefaultInterval || cfg.Checks[1].Timeout.D() != DefaultTimeout {
		t.Errorf("defaults not applied: %v %v", cfg.Checks[1].Interval, cfg.Checks[1].Timeout)
	}
	if cfg.Rollback.Timeout.D() != 90*time.Second || !*cfg.Rollback.Canary {
		t.Errorf("rollback = %+v", cfg.Rollback)
	}
	if cfg.Store.S3 == nil || cfg.Store.S3.Bucket != "psyfit-backstop" {
		t.Errorf("store = %+v", cfg.Store)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	env := seedEnv()
	env["BACKUP_DIR"] = "/srv/backups"
	env["BACKUP_RETENTION"] = "7"
	env["BACKUP_RETENTION_DAYS"] = "10"
	env["DATA_BASE_DIR"] = "/srv/data"
	env["ROLLBACK_CANARY_ENABLED"] = "false"
	env["ROLLBACK_READY_TIMEOUT_SEC"] = "45"
	env["ROLLBACK_READY_INTERVAL_SEC"] = "5"
	env["MONITOR_ALERT_EMAIL"] = "a@example.jp, b@example.jp"
	env["MAILER_FROM_ADDRESS"] = "alerts@example.jp"
	cfg, err := Load("testdata/full.yaml", envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"BACKUP_DIR", cfg.Backup.Dir, "/srv/backups"},
		{"BACKUP_RETENTION", cfg.Backup.Retention.Count, 7},
		{"BACKUP_RETENTION_DAYS", cfg.Backup.Retention.Days, 10},
		{"DATA_BASE_DIR", cfg.Backup.DataDir, "/srv/data"},
		{"ROLLBACK_CANARY_ENABLED", *cfg.Rollback.Canary, false},
		{"ROLLBACK_READY_TIMEOUT_SEC", cfg.Rollback.Timeout.D(), 45 * time.Second},
		{"ROLLBACK_READY_INTERVAL_SEC", cfg.Rollback.Interval.D(), 5 * time.Second},
		{"MONITOR_ALERT_EMAIL", strings.Join(cfg.Alerts.To, ";"), "a@example.jp;b@example.jp"},
		{"MAILER_FROM_ADDRESS", cfg.Alerts.From, "alerts@example.jp"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestBadEnvValueNamesVariable(t *testing.T) {
	env := seedEnv()
	env["ROLLBACK_READY_TIMEOUT_SEC"] = "ninety"
	_, err := Load("testdata/full.yaml", envMap(env))
	if err == nil || !strings.Contains(err.Error(), "$ROLLBACK_READY_TIMEOUT_SEC: must be a whole number of seconds") {
		t.Fatalf("err = %v", err)
	}
}

// minimal is a valid config the invalid cases below break one field of.
const minimal = `
host: h1
state_dir: /tmp/x
checks:
  - {name: web, type: http, url: "http://127.0.0.1:3000/up"}
  - {name: disk, type: disk, paths: [/]}
`

func TestInvalidFieldsAreNamed(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown top key", minimal + "hots: x\n", `hots: unknown key (did you mean "host"?)`},
		{"unknown check key", strings.Replace(minimal, `url:`, `ulr: "x", url:`, 1), `checks[0].ulr: unknown key (did you mean "url"?)`},
		{"key of another type", strings.Replace(minimal, "paths: [/]", "paths: [/], warn_days: 3", 1), "checks[1].warn_days: not used by type disk"},
		{"disk warn range", strings.Replace(minimal, "paths: [/]", "paths: [/], warn: 150", 1), "checks[1].warn: must be 1..100"},
		{"disk critical below warn", strings.Replace(minimal, "paths: [/]", "paths: [/], warn: 85, critical: 70", 1), "checks[1].critical: must be ≥ warn (85)"},
		{"relative path", strings.Replace(minimal, "paths: [/]", "paths: [var]", 1), "checks[1].paths[0]: must be an absolute path"},
		{"bad type", strings.Replace(minimal, "type: disk", "type: dsik", 1), `checks[1].type: must be one of container, disk, http, postgres, redis, tls (got "dsik")`},
		{"duplicate name", strings.Replace(minimal, "name: disk", "name: web", 1), `checks[1].name: "web" is already used by checks[0]`},
		{"missing name", strings.Replace(minimal, "name: disk, ", "", 1), "checks[1].name: required"},
		{"bad url", strings.Replace(minimal, "http://127.0.0.1:3000/up", "ftp://x", 1), "checks[0].url: must be an http:// or https:// URL"},
		{"bad duration", strings.Replace(minimal, `type: http,`, `type: http, interval: soon,`, 1), "checks[0].interval: not a duration"},
		{"timeout over interval", strings.Replace(minimal, `type: http,`, `type: http, interval: 5s, timeout: 10s,`, 1), "checks[0].timeout: must not exceed the interval (5s)"},
		{"number expected", strings.Replace(minimal, "paths: [/]", "paths: [/], warn: lots", 1), "checks[1].warn: must be a number"},
		{"list expected", strings.Replace(minimal, "paths: [/]", "paths: /", 1), "checks[1].paths: must be a list"},
		{"no checks", "host: h1\nchecks: []\n", "checks: at least one check is needed"},
		{"bad host", strings.Replace(minimal, "host: h1", "host: 'a b'", 1), "host: must be 1-63"},
		{"bad timezone", minimal + "timezone: Mars/Base\n", `timezone: unknown time zone "Mars/Base"`},
		{"bad locale", minimal + "alerts: {locale: fr}\n", "alerts.locale: must be ja or en"},
		{"bad via", minimal + "alerts: {via: pigeon}\n", "alerts.via: must be sendgrid, store or dir"},
		{"sendgrid without key", minimal + "alerts: {via: sendgrid, to: [a@b.jp], from: c@d.jp}\n", "alerts.sendgrid_api_key: required when via is sendgrid"},
		{"store without store", minimal + "alerts: {via: store}\n", "alerts.via: store needs store.dir or store.s3"},
		{"bad address", minimal + "alerts: {to: [not-an-address]}\n", `alerts.to[0]: not an e-mail address`},
		{"threshold range", minimal + "alerts: {failure_threshold: -1}\n", "alerts.failure_threshold: must be 1..100"},
		{"bad cron", minimal + "backup: {schedule: 'at two'}\n", "backup.schedule: not a cron expression"},
		{"pg_dump", minimal + "backup: {database: {pg_dump: docker}}\n", "backup.database.pg_dump: must be host or container:<name>"},
		{"signing public key", minimal + "backup: {signing_public_keys: ['ssh-ed25519 AAAA']}\n", `backup.signing_public_keys[0]: public key "ssh-ed25519 AAAA": want "ed25519 <base64>"`},
		{"strategy", minimal + "rollback: {code: {strategy: magic}}\n", "rollback.code.strategy: must be docker, git, command or none"},
		{"tls both", strings.Replace(minimal, "checks:\n", "checks:\n  - {name: t, type: tls, address: 'a:443', cert_file: /c.pem}\n", 1), "checks[0].address: set address or cert_file, not both"},
		{"postgres without dsn", strings.Replace(minimal, "checks:\n", "checks:\n  - {name: db, type: postgres}\n", 1), "checks[0].dsn: required (or set DATABASE_URL)"},
		{"redis address", strings.Replace(minimal, "checks:\n", "checks:\n  - {name: r, type: redis, address: nowhere}\n", 1), "checks[0].address: must be host:port"},
		{"container empty", strings.Replace(minimal, "checks:\n", "checks:\n  - {name: c, type: container}\n", 1), "checks[0].containers: name at least one container"},
		{"not yaml", "host: [unclosed\n", "not valid YAML"},
		{"empty", "", "the file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), envMap(nil))
			if err == nil {
				t.Fatalf("accepted; want error containing %q", c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
		})
	}
}

func TestUnsetVariableIsNamed(t *testing.T) {
	y := minimal + "alerts: {via: sendgrid, to: [a@b.jp], from: c@d.jp, sendgrid_api_key: '${SENDGRID_API_KEY}'}\n"
	_, err := Parse([]byte(y), envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "unset in the environment: SENDGRID_API_KEY") {
		t.Fatalf("err = %v", err)
	}
}

func TestExpansionKeepsYAMLSyntaxInValues(t *testing.T) {
	// A password holding ": " and "#" must arrive whole, not break the parse.
	pw := "a: b # c ${NOT_A_VAR"
	y := minimal + "  - {name: r, type: redis, address: '127.0.0.1:6379', password: '${REDIS_PASSWORD}'}\n"
	cfg, err := Parse([]byte(y), envMap(map[string]string{"REDIS_PASSWORD": pw}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Checks[2].Password.Reveal(); got != pw {
		t.Errorf("password = %q, want %q", got, pw)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", envMap(seedEnv()))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("config", "config", cfg, "dsn", cfg.Checks[4].DSN, "key", cfg.Alerts.SendGridAPIKey)
	js, _ := json.Marshal(cfg)
	out := logs.String() + string(js) + fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg.Alerts, cfg.Checks[5].Password)
	for _, secret := range []string{dbPassword, sgKey, redisPW} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q printed", secret)
		}
	}
	if !strings.Contains(string(js), "[redacted]") {
		t.Errorf("JSON shows no redaction marker: %s", js)
	}
}

func TestSecretNotEchoedInTypeErrors(t *testing.T) {
	y := minimal + "  - {name: r, type: redis, address: '127.0.0.1:6379', password: [" + redisPW + "]}\n"
	_, err := Parse([]byte(y), envMap(nil))
	if err == nil {
		t.Fatal("a list as password was accepted")
	}
	if strings.Contains(err.Error(), redisPW) {
		t.Errorf("error echoes the secret: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.yaml", envMap(nil))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}
