package restore

import (
	"os"
	"slices"
	"strings"
)

// hookEnv is the environment a hook (rollback.db_hook, rollback.code.command,
// rollback.code.restart) runs with: the probe's, less every variable that
// looks like a secret (DATABASE_URL, SENDGRID_API_KEY, passwords, tokens,
// keys, DSNs) unless allow (rollback.env) names it, plus extra.
func hookEnv(allow, extra []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if secretName(name) && !slices.Contains(allow, name) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// secretName reports whether an environment variable's name says it holds
// a secret.
func secretName(name string) bool {
	n := strings.ToUpper(name)
	if n == "DATABASE_URL" || n == "REDIS_URL" {
		return true
	}
	for _, w := range []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "DSN", "CREDENTIAL"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
