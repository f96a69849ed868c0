package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "SENDGRID_API_KEY" {
			return "SG.from-the-environment", true
		}
		return "", false
	}
	const base = "host: h\nchecks: [{name: d, type: disk, paths: [/]}]\n"
	cases := []struct {
		name, yaml string
		mode       os.FileMode
		want       []string // substrings, one per warning, in order
	}{
		{"loopback, private file", base + "listen: 127.0.0.1:9187\nalerts: {via: sendgrid, to: [a@b.jp], from: c@d.jp, sendgrid_api_key: SG.literal-secret}\n", 0o600, nil},
		{"all interfaces", base + "listen: 0.0.0.0:9187\n", 0o600, []string{"listen: 0.0.0.0:9187 is not a loopback address"}},
		{"public address", base + "listen: \"[::]:9187\"\n", 0o600, []string{"listen: [::]:9187 is not a loopback address"}},
		{"world-readable with a literal secret", "host: h\nchecks: [{name: r, type: redis, address: \"127.0.0.1:6379\", password: SG.literal-secret}]\n", 0o644,
			[]string{"is mode 0644 (world-readable) and holds secrets written in it: chmod 600"}},
		{"world-readable, secrets from the environment", base + "alerts: {via: sendgrid, to: [a@b.jp], from: c@d.jp, sendgrid_api_key: \"${SENDGRID_API_KEY}\"}\n", 0o644, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "backstop.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			cfg, err := Load(p, env)
			if err != nil {
				t.Fatal(err)
			}
			got := Warnings(cfg, p)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want it to contain %q", got[i], w)
				}
				if strings.Contains(got[i], "SG.literal-secret") {
					t.Errorf("warning shows the secret: %q", got[i])
				}
			}
		})
	}
}
