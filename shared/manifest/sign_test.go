package manifest

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerifySig(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateSigningKey(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	pub := k.Public().(ed25519.PublicKey)
	data := []byte(`{"schema": 1}` + "\n")
	cases := []struct {
		name    string
		data    []byte
		sig     []byte
		trusted []ed25519.PublicKey
		want    error
	}{
		{"good", data, Sign(k, data), []ed25519.PublicKey{pub}, nil},
		{"good among several trusted", data, Sign(k, data), []ed25519.PublicKey{other.Public().(ed25519.PublicKey), pub}, nil},
		{"edited after signing", []byte(`{"schema": 1} `), Sign(k, data), []ed25519.PublicKey{pub}, ErrBadSignature},
		{"another key", data, Sign(other, data), []ed25519.PublicKey{pub}, ErrBadSignature},
		{"no trusted key", data, Sign(k, data), nil, ErrBadSignature},
		{"missing", data, nil, []ed25519.PublicKey{pub}, ErrUnsigned},
		{"garbage", data, []byte("ed25519 x y\n"), []ed25519.PublicKey{pub}, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := VerifySig(c.data, c.sig, c.trusted); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("VerifySig = %v, want %v", err, c.want)
			}
		})
	}
	if p, err := ParsePublicKey(FormatPublicKey(pub)); err != nil || !p.Equal(pub) {
		t.Errorf("public key round trip: %v", err)
	}
	if _, err := ParsePublicKey("ssh-ed25519 AAAA"); err == nil {
		t.Error("ParsePublicKey accepted another scheme")
	}
}

func TestSigningKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "signing.key")
	k, err := GenerateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateSigningKey(path); !errors.Is(err, os.ErrExist) {
		t.Errorf("second generate = %v, want it to refuse replacing the key", err)
	}
	got, err := LoadSigningKey(path)
	if err != nil || !got.Equal(k) {
		t.Fatalf("load = %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(path, mode)
		if _, err := LoadSigningKey(path); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %04o: %v, want ErrKeyPermissions", mode, err)
		}
	}
}
