package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
	"backstop/shared/manifest"
)

// ErrForged marks a snapshot whose manifest.sig is missing or does not
// verify with SIGNING_PUBLIC_KEYS: nothing of it is copied to the vault.
var ErrForged = errors.New("snapshot signature refused")

// checkSignature reads the snapshot's manifest.sig and verifies it over the
// manifest bytes data with the configured keys, before anything is copied.
// It returns the signature (to vault beside the manifest); nil, nil when
// no keys are configured (signing not deployed).
func (h *Handler) checkSignature(ctx context.Context, bucket string, ref snapshotRef, data []byte) ([]byte, error) {
	if len(h.Cfg.SigningKeys) == 0 {
		return nil, nil
	}
	key := ref.Dir() + manifest.SigFile
	var sig []byte
	out, err := h.Src.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case s3err.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	default:
		defer out.Body.Close()
		if sig, err = readAllLimit(out.Body, maxJSON); err != nil {
			return nil, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
		}
	}
	if err := manifest.VerifySig(data, sig, h.Cfg.SigningKeys); err != nil {
		return nil, fmt.Errorf("snapshot %s of %s: %w: %w", ref.ID, ref.Host, err, ErrForged)
	}
	return sig, nil
}

// parseSigningKeys reads SIGNING_PUBLIC_KEYS: "ed25519 <base64>" entries
// separated by commas.
func parseSigningKeys(s string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := manifest.ParsePublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}
