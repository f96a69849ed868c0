package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backstop/shared/manifest"
)

func TestKeygenSigning(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "signing.key")
	code, out, errOut := run(t, ctx, nil, "keygen", "--signing", "--out", path)
	if code != ExitOK {
		t.Fatalf("keygen = %d: %s", code, errOut)
	}
	k, err := manifest.LoadSigningKey(path) // refuses anything but 0600-like modes
	if err != nil {
		t.Fatal(err)
	}
	pub, err := manifest.ParsePublicKey(strings.TrimSpace(out))
	if err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("printed %q, not the key's public half (%v)", out, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if code, _, errOut := run(t, ctx, nil, "keygen", "--signing", "--out", path); code == ExitOK || !strings.Contains(errOut, path) {
		t.Errorf("second keygen over the same file = %d %q, want a refusal naming it", code, errOut)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("an existing signing key was replaced")
	}
	if code, _, _ := run(t, ctx, nil, "keygen"); code != ExitUsage {
		t.Errorf("keygen without --signing = %d, want usage", code)
	}
}
