package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/manifest"
)

// TestSignatureCheckedBeforeCopying: with SIGNING_PUBLIC_KEYS set, a
// snapshot signed by the host is vaulted with its manifest.sig; one whose
// manifest was replaced after signing, signed by another key, or unsigned
// is refused and nothing of it reaches the vault or the catalog.
func TestSignatureCheckedBeforeCopying(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	cases := []struct {
		name string
		sign func(data []byte) []byte // the manifest.sig put beside data; nil = none
		edit bool                     // the manifest is rewritten after signing
		ok   bool
	}{
		{name: "signed by the host", sign: func(d []byte) []byte { return manifest.Sign(key, d) }, ok: true},
		{name: "edited after signing", sign: func(d []byte) []byte { return manifest.Sign(key, d) }, edit: true},
		{name: "another host's key", sign: func(d []byte) []byte { return manifest.Sign(other, d) }},
		{name: "unsigned"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			ctx := context.Background()
			host := "psyfit-prod"
			s := r.putSnapshot(t, host, time.Now().Add(-time.Hour), 10<<10, 20<<10)
			out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(s.ManifestKey)})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if c.sign != nil {
				sigKey := strings.TrimSuffix(s.ManifestKey, manifest.ManifestFile) + manifest.SigFile
				if _, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(sigKey), Body: bytes.NewReader(c.sign(data))}); err != nil {
					t.Fatal(err)
				}
			}
			if c.edit {
				edited := bytes.Replace(data, []byte(`"notes": ""`), []byte(`"notes": "planted"`), 1)
				po, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.srv.Bucket), Key: aws.String(s.ManifestKey), Body: bytes.NewReader(edited)})
				if err != nil {
					t.Fatal(err)
				}
				s.Version = aws.ToString(po.VersionId)
			}
			cfg := r.config()
			cfg.SigningKeys = []ed25519.PublicKey{pub}
			_, err = r.handler(t, cfg).Handle(ctx, r.s3Notification(s))
			vaulted := r.versions(t, host+"/")
			if c.ok {
				if err != nil {
					t.Fatalf("signed snapshot: %v", err)
				}
				if len(vaulted) != 4 || vaulted[host+"/snapshots/"+s.ID+"/"+manifest.SigFile] == nil {
					t.Fatalf("vault holds %v, want the parts, manifest.sig and the manifest", vaulted)
				}
				return
			}
			if !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), s.ID) {
				t.Fatalf("err = %v, want ErrForged naming %s", err, s.ID)
			}
			if len(vaulted) != 0 {
				t.Errorf("vault holds %v for a refused snapshot", vaulted)
			}
		})
	}
}

func TestSigningKeysConfig(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	env := map[string]string{"SOURCE_BUCKET": "src", "VAULT_BUCKET": "vault", "SIGNING_PUBLIC_KEYS": manifest.FormatPublicKey(pub) + ", "}
	c, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil || len(c.SigningKeys) != 1 || !c.SigningKeys[0].Equal(pub) {
		t.Fatalf("LoadConfig = %v, %v", c.SigningKeys, err)
	}
	env["SIGNING_PUBLIC_KEYS"] = "age1notakey"
	if _, err := LoadConfig(func(k string) string { return env[k] }); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "SIGNING_PUBLIC_KEYS") {
		t.Fatalf("bad key: %v", err)
	}
}
