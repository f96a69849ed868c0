package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"backstop/shared/atomicfile"
)

// SigFile is the detached signature beside manifest.json, in the snapshot
// directory and under <host>/snapshots/<id>/ in the store. It signs the
// exact bytes of the manifest file it sits beside.
const SigFile = "manifest.sig"

// sigScheme opens a signature file and a public key's text form.
const sigScheme = "ed25519"

// ErrUnsigned is matched by the error for a manifest without a signature.
var ErrUnsigned = errors.New("manifest is not signed")

// ErrBadSignature is matched by the error for a signature that does not
// verify with any trusted public key.
var ErrBadSignature = errors.New("manifest signature does not verify")

// Sign returns the contents of manifest.sig for the manifest bytes data:
// one line "ed25519 <public key> <signature>", both standard base64. The
// public key is a hint for the operator; Verify trusts only its own list.
func Sign(key ed25519.PrivateKey, data []byte) []byte {
	pub := key.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(key, data)
	return []byte(sigScheme + " " + base64.StdEncoding.EncodeToString(pub) + " " + base64.StdEncoding.EncodeToString(sig) + "\n")
}

// VerifySig checks sig (manifest.sig's contents; nil or empty = none) over
// the manifest bytes data with the trusted keys. A missing signature
// matches ErrUnsigned, one that no trusted key verifies ErrBadSignature;
// the error names the key that signed and the keys trusted.
func VerifySig(data, sig []byte, trusted []ed25519.PublicKey) error {
	if len(strings.TrimSpace(string(sig))) == 0 {
		return ErrUnsigned
	}
	f := strings.Fields(string(sig))
	if len(f) != 3 || f[0] != sigScheme {
		return fmt.Errorf("%w: want \"ed25519 <public key> <signature>\"", ErrBadSignature)
	}
	raw, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: the signature is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	}
	if len(trusted) == 0 {
		return fmt.Errorf("%w: no public key is trusted (backup.signing_key_file or backup.signing_public_keys)", ErrBadSignature)
	}
	for _, k := range trusted {
		if ed25519.Verify(k, data, raw) {
			return nil
		}
	}
	names := make([]string, len(trusted))
	for i, k := range trusted {
		names[i] = FormatPublicKey(k)
	}
	return fmt.Errorf("%w: signed by %s %s, trusted: %s", ErrBadSignature, sigScheme, f[1], strings.Join(names, ", "))
}

// FormatPublicKey is a public key's text form in config and messages:
// "ed25519 <base64>".
func FormatPublicKey(k ed25519.PublicKey) string {
	return sigScheme + " " + base64.StdEncoding.EncodeToString(k)
}

// ParsePublicKey reads FormatPublicKey's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] != sigScheme {
		return nil, fmt.Errorf("public key %q: want \"ed25519 <base64>\"", s)
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: not %d bytes of base64", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ErrKeyPermissions is matched by the error for a signing key file that
// its group or others can read or write.
var ErrKeyPermissions = errors.New("signing key file is readable by others")

// LoadSigningKey reads a PEM PKCS#8 Ed25519 private key (what
// GenerateSigningKey writes). A file with any group or other permission
// bits is refused: whoever reads it can forge this host's snapshots.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o: %w (chmod 600 it)", path, st.Mode().Perm(), ErrKeyPermissions)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, not Ed25519", path, k)
	}
	return ek, nil
}

// GenerateSigningKey writes a new Ed25519 private key to path (mode 0600,
// atomically; an existing file is never replaced) and returns it.
func GenerateSigningKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("signing key %s: %w", path, fs.ErrExist)
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}
