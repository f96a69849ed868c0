package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHookEnvLacksSecrets runs a real hook (sh -c) that writes its
// environment: the probe's secrets are gone unless rollback.env lists
// them; the hook's own variables and ordinary ones stay.
func TestHookEnvLacksSecrets(t *testing.T) {
	secrets := map[string]string{
		"DATABASE_URL":         "postgres://app:db-pw-1@127.0.0.1/app",
		"SENDGRID_API_KEY":     "SG.secret-2",
		"REDIS_PASSWORD":       "redis-pw-3",
		"BACKSTOP_ADMIN_TOKEN": "tok-4",
		"HOOK_SECRET":          "hook-5",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("APP_ENV", "production")
	out := filepath.Join(t.TempDir(), "env")
	err := runShell(context.Background(), "code hook", "env > "+out, "", []string{"DATABASE_URL"}, []string{"TXN=20250601T020304Z-abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	for k, v := range secrets {
		if k == "DATABASE_URL" {
			if !strings.Contains(env, k+"="+v) {
				t.Errorf("DATABASE_URL listed in rollback.env but missing from the hook's environment")
			}
			continue
		}
		if strings.Contains(env, v) || strings.Contains(env, k+"=") {
			t.Errorf("the hook's environment has %s", k)
		}
	}
	for _, want := range []string{"APP_ENV=production", "TXN=20250601T020304Z-abcdef", "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("the hook's environment lacks %s", want)
		}
	}
}
