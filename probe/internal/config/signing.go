package config

import (
	"crypto/ed25519"
	"fmt"

	"backstop/shared/manifest"
)

// validateSigning checks each backup.signing_public_keys entry parses.
func validateSigning(c *Config, bad func(string, string, ...any)) {
	for i, s := range c.Backup.SigningPublicKeys {
		if _, err := manifest.ParsePublicKey(s); err != nil {
			bad(fmt.Sprintf("backup.signing_public_keys[%d]", i), "%v", err)
		}
	}
}

// TrustedKeys returns backup.signing_public_keys parsed (Validate has
// checked them; an unparsable one is left out).
func (b Backup) TrustedKeys() []ed25519.PublicKey {
	var keys []ed25519.PublicKey
	for _, s := range b.SigningPublicKeys {
		if k, err := manifest.ParsePublicKey(s); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}
