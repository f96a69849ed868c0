package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{"SOURCE_BUCKET": "psyfit-backstop", "VAULT_BUCKET": "psyfit-vault"}
	cases := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults", nil, func(c Config) bool {
			return c.Retention == 30*24*time.Hour && c.PartSize == 512<<20 && c.MultipartThreshold == 5<<30 &&
				c.MaxSnapshotAge == 26*time.Hour && c.MaxHeartbeatAge == 15*time.Minute && c.Locale == "en" && len(c.Hosts) == 0
		}, ""},
		{"everything", map[string]string{"VAULT_REGION": "ap-northeast-3", "LOCK_DAYS": "400", "COPY_PART_SIZE": "5242880",
			"MULTIPART_THRESHOLD": "6291456", "HOSTS": " psyfit-prod, psyfit-stg ,", "KEY_PREFIX": "/ops/", "MAX_SNAPSHOT_AGE": "30h",
			"MAX_HEARTBEAT_AGE": "5m", "ALERT_LOCALE": "ja", "S3_PATH_STYLE": "true"}, func(c Config) bool {
			return c.VaultRegion == "ap-northeast-3" && c.Retention == 400*24*time.Hour && c.PartSize == 5<<20 && c.MultipartThreshold == 6<<20 &&
				strings.Join(c.Hosts, ",") == "psyfit-prod,psyfit-stg" && c.KeyPrefix == "ops/" && c.MaxSnapshotAge == 30*time.Hour &&
				c.MaxHeartbeatAge == 5*time.Minute && c.Locale == "ja" && c.PathStyle
		}, ""},
		{"no source", map[string]string{"SOURCE_BUCKET": ""}, nil, "SOURCE_BUCKET: required"},
		{"no vault", map[string]string{"VAULT_BUCKET": ""}, nil, "VAULT_BUCKET: required"},
		{"vault is the source", map[string]string{"VAULT_BUCKET": "psyfit-backstop"}, nil, "VAULT_BUCKET: must not be SOURCE_BUCKET"},
		{"lock days zero", map[string]string{"LOCK_DAYS": "0"}, nil, "LOCK_DAYS: want a whole number of days 1..36500"},
		{"part too small", map[string]string{"COPY_PART_SIZE": "1048576"}, nil, "COPY_PART_SIZE: want bytes 5242880..5368709120"},
		{"threshold above CopyObject's limit", map[string]string{"MULTIPART_THRESHOLD": "6000000000"}, nil, "MULTIPART_THRESHOLD: want bytes 1..5368709120"},
		{"host with a slash", map[string]string{"HOSTS": "a/b"}, nil, `HOSTS: "a/b" is not a host name`},
		{"bad age", map[string]string{"MAX_SNAPSHOT_AGE": "a day"}, nil, "MAX_SNAPSHOT_AGE: want a positive duration"},
		{"bad locale", map[string]string{"ALERT_LOCALE": "de"}, nil, `ALERT_LOCALE: want en or ja, not "de"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range c.env {
				env[k] = v
			}
			cfg, err := LoadConfig(func(k string) string { return env[k] })
			if c.wantErr != "" {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want ErrConfig with %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !c.check(cfg) {
				t.Fatalf("LoadConfig = %+v, %v", cfg, err)
			}
		})
	}
}

func TestPartSizeFor(t *testing.T) {
	for _, c := range []struct {
		name             string
		size, want, part int64
	}{
		{"6 GB at 512 MiB", 6 << 30, 512 << 20, 512 << 20},
		{"fits 10,000 parts", 10000 * (5 << 20), 5 << 20, 5 << 20},
		{"raised to whole MiB", 10000*(5<<20) + 1, 5 << 20, 6 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := partSizeFor(c.size, c.want)
			if got != c.part || (c.size+got-1)/got > maxParts {
				t.Errorf("partSizeFor(%d, %d) = %d, want %d", c.size, c.want, got, c.part)
			}
		})
	}
}
