package functions_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxBootstrap is the largest bootstrap a function may ship. Every one is
// 8-9 MB; a binary above this has pulled in something that defeats the
// linker's dead-code elimination (html/template did: alert was 15 MB) or a
// dependency it does not need.
const maxBootstrap = 10 << 20

// TestBootstrapSize builds each function's bootstrap exactly as the
// Makefile's build-<LogicalId> targets do and fails when one is above
// maxBootstrap.
func TestBootstrapSize(t *testing.T) {
	dir := t.TempDir()
	for _, fn := range []string{"uptime", "alert", "restore", "offsite"} {
		t.Run(fn, func(t *testing.T) {
			out := filepath.Join(dir, fn)
			cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", out, "./"+fn)
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", fn, err, b)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s bootstrap: %d bytes", fn, st.Size())
			if st.Size() > maxBootstrap {
				t.Errorf("%s bootstrap is %d bytes, above the %d-byte limit: see what pulls it in with go tool nm -size -sort size", fn, st.Size(), maxBootstrap)
			}
		})
	}
}
