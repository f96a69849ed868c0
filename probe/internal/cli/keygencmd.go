package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"

	"backstop/shared/manifest"
)

// allowUnsignedFlag is --allow-unsigned of restore and drill.
func allowUnsignedFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("allow-unsigned", false, "admit a snapshot from the store without manifest.sig (taken before signing); a wrong signature is refused always")
}

// keygen makes a key. --signing writes an Ed25519 signing key to --out
// (default backup.signing_key_file of the config) with mode 0600, never
// replacing one, and prints its public key for the template's parameters
// and other hosts' backup.signing_public_keys.
func (a *app) keygen(_ context.Context, args []string) int {
	fs := a.newFlags("keygen", "keygen --signing [--out FILE]")
	signing := fs.Bool("signing", false, "make the Ed25519 key that signs snapshot manifests")
	out := fs.String("out", "", "write the key here (default backup.signing_key_file)")
	if code, done := a.parseFlags(fs, args); done {
		return code
	}
	if !*signing || fs.NArg() > 0 {
		fmt.Fprintln(a.io.Stderr, "probe keygen: give --signing (age identities are not made by this build yet)")
		return ExitUsage
	}
	path := *out
	if path == "" {
		cfg, err := a.loadConfig()
		if err != nil {
			a.errorf("keygen", err)
			return ExitError
		}
		path = cfg.Backup.SigningKeyFile
	}
	if path == "" {
		a.errorf("keygen", errors.New("no --out and no backup.signing_key_file"))
		return ExitUsage
	}
	k, err := manifest.GenerateSigningKey(path)
	if err != nil {
		a.errorf("keygen", err)
		return ExitError
	}
	fmt.Fprintf(a.io.Stderr, "wrote the signing key to %s (mode 0600); its public key:\n", path)
	fmt.Fprintln(a.io.Stdout, manifest.FormatPublicKey(k.Public().(ed25519.PublicKey)))
	return ExitOK
}
