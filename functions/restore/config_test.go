package main

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"BUCKET": "psyfit-backstop", "HOSTS": " psyfit-prod, psyfit-stg ,", "COMMAND_KEY_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:1:secret:backstop/command-key",
	}
	cases := []struct {
		name string
		env  map[string]string // over base; "" deletes
		want func(Config) bool
		err  string // substring, in order for several
	}{
		{name: "defaults", want: func(c Config) bool {
			return c.Bucket == "psyfit-backstop" && slices.Equal(c.Hosts, []string{"psyfit-prod", "psyfit-stg"}) && c.RequireVault && !c.S3PathStyle && c.KeyPrefix == ""
		}},
		{name: "vault not required, path style, prefix", env: map[string]string{"REQUIRE_VAULT": "false", "S3_PATH_STYLE": "true", "KEY_PREFIX": "/ops/"},
			want: func(c Config) bool { return !c.RequireVault && c.S3PathStyle && c.KeyPrefix == "ops" }},
		{name: "all required missing", env: map[string]string{"BUCKET": "", "HOSTS": "", "COMMAND_KEY_SECRET_ARN": ""},
			err: "restore config: BUCKET: required\nCOMMAND_KEY_SECRET_ARN: required\nHOSTS: required (comma-separated host names, as in the probe's config)"},
		{name: "hosts only commas", env: map[string]string{"HOSTS": " , "}, err: "HOSTS: required"},
		{name: "a host with a slash", env: map[string]string{"HOSTS": "psyfit-prod,ops/psyfit"}, err: `HOSTS: "ops/psyfit" is not a host name (letters, digits, . _ -)`},
		{name: "bad booleans", env: map[string]string{"REQUIRE_VAULT": "yes please", "S3_PATH_STYLE": "2"},
			err: "REQUIRE_VAULT: \"yes please\" is not true or false\nS3_PATH_STYLE: \"2\" is not true or false"},
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
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("error %v, want it to contain %q", err, c.err)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case !c.want(cfg):
				t.Errorf("config %+v", cfg)
			}
		})
	}
}
