package snapshot

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"backstop/shared/atomicfile"
	"backstop/shared/manifest"
	"backstop/shared/store"
)

// FutureSkew is how far ahead of this host's clock a snapshot id may be and
// still be picked by "latest" (the allowance signed commands get): a
// planted id dated next year never wins.
const FutureSkew = 5 * time.Minute

// Signing is on when SigningKeyFile or TrustedKeys is set (FromConfig
// always sets the key file): backups sign every manifest they write, and a
// snapshot taken from the store is refused unless its manifest.sig verifies
// with one of the trusted keys (TrustedKeys plus the signing key's own).
// AllowUnsigned admits a store snapshot without manifest.sig (one taken
// before signing existed); a wrong signature is refused always.
func (e *Engine) signing() bool { return e.SigningKeyFile != "" || len(e.TrustedKeys) > 0 }

// signingKey loads the host's signing key; with create, a missing file is
// generated (0600, beside it <file>.pub with the public key) and logged.
// nil without error when no key file is configured.
func (e *Engine) signingKey(create bool) (ed25519.PrivateKey, error) {
	if e.SigningKeyFile == "" {
		return nil, nil
	}
	k, err := manifest.LoadSigningKey(e.SigningKeyFile)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = manifest.GenerateSigningKey(e.SigningKeyFile); err != nil {
		return nil, err
	}
	pub := manifest.FormatPublicKey(k.Public().(ed25519.PublicKey))
	if err := atomicfile.Write(e.SigningKeyFile+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return nil, err
	}
	e.log().Info("created the snapshot signing key; put its public key in the template's parameters and every host that restores these snapshots",
		"key_file", e.SigningKeyFile, "public_key_file", e.SigningKeyFile+".pub", "public_key", pub)
	return k, nil
}

// trusted is the public keys a store snapshot's signature may verify with.
func (e *Engine) trusted() ([]ed25519.PublicKey, error) {
	keys := append([]ed25519.PublicKey(nil), e.TrustedKeys...)
	k, err := e.signingKey(false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case k != nil:
		keys = append(keys, k.Public().(ed25519.PublicKey))
	}
	return keys, nil
}

// signManifest returns manifest.sig for data; nil when signing is off.
func (e *Engine) signManifest(data []byte) ([]byte, error) {
	k, err := e.signingKey(true)
	if err != nil || k == nil {
		return nil, err
	}
	return manifest.Sign(k, data), nil
}

// writeManifest writes dir/manifest.json and, when signing, its
// manifest.sig over the same bytes.
func (e *Engine) writeManifest(dir string, m manifest.Manifest) error {
	data, err := m.Encode()
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	sig, err := e.signManifest(data)
	if err != nil {
		return err
	}
	path := dir + "/" + manifest.ManifestFile
	prev, prevErr := os.ReadFile(path)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return err
	}
	if sig == nil {
		return nil
	}
	if err := atomicfile.Write(dir+"/"+manifest.SigFile, sig, 0o600); err != nil {
		// Put the manifest the old signature covers back, so a failed
		// write (a full disk) never leaves a pair that fails verify.
		if prevErr == nil {
			if rerr := atomicfile.Write(path, prev, 0o600); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return err
	}
	return nil
}

// remoteManifest downloads snapshot id's manifest.json and manifest.sig
// from the store and, when signing, checks the signature over the exact
// bytes before anything else reads them; then the manifest must name id
// and this host. sig is nil for an unsigned manifest let through.
func (e *Engine) remoteManifest(ctx context.Context, id string) (m manifest.Manifest, data, sig []byte, err error) {
	data, err = e.getSmall(ctx, e.key(id, manifest.ManifestFile))
	if err != nil {
		return m, nil, nil, fmt.Errorf("snapshot %s: not local, and its manifest in %s: %w", id, e.Store, err)
	}
	sig, err = e.getSmall(ctx, e.key(id, manifest.SigFile))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return m, nil, nil, fmt.Errorf("snapshot %s: its signature in %s: %w", id, e.Store, err)
	}
	if e.signing() {
		trusted, err := e.trusted()
		if err != nil {
			return m, nil, nil, err
		}
		err = manifest.VerifySig(data, sig, trusted)
		switch {
		case errors.Is(err, manifest.ErrUnsigned) && e.AllowUnsigned:
			e.log().Warn("restoring an unsigned snapshot (--allow-unsigned)", "id", id)
		case errors.Is(err, manifest.ErrUnsigned):
			return m, nil, nil, fmt.Errorf("snapshot %s in %s has no %s: %w (refused: anyone who can write the bucket could have made it; --allow-unsigned admits a snapshot taken before signing)", id, e.Store, manifest.SigFile, err)
		case err != nil:
			return m, nil, nil, fmt.Errorf("snapshot %s in %s: %w (refused: forged or edited, or signed by another host's key)", id, e.Store, err)
		}
	}
	if m, err = manifest.Decode(data); err != nil {
		return m, nil, nil, fmt.Errorf("manifest of %s in the store: %w", id, err)
	}
	if m.ID != id || m.Host != e.Host {
		return m, nil, nil, fmt.Errorf("manifest in the store says id %s host %s, want %s on %s", m.ID, m.Host, id, e.Host)
	}
	return m, data, sig, nil
}

// getSmall reads one object of at most 1 MiB.
func (e *Engine) getSmall(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := e.Store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return data, nil
}

// newestRemote is the newest snapshot in the store "latest" may pick: its
// id not dated beyond now+FutureSkew and, when signing, its signature
// verified (an unsigned one only with AllowUnsigned). Skipped ones are
// logged with the reason.
func (e *Engine) newestRemote(ctx context.Context) (string, error) {
	remote, err := e.ListRemote(ctx)
	if err != nil {
		return "", err
	}
	limit := e.now().Add(FutureSkew)
	var skipped []error
	for _, m := range remote {
		t, err := manifest.ParseID(m.ID)
		if err != nil || t.After(limit) {
			skipped = append(skipped, fmt.Errorf("%s: dated in the future", m.ID))
			continue
		}
		if _, _, _, err := e.remoteManifest(ctx, m.ID); err != nil {
			skipped = append(skipped, err)
			continue
		}
		return m.ID, nil
	}
	if len(skipped) > 0 {
		return "", fmt.Errorf("no snapshot in %s or the store that latest may pick: %w", e.Dir, errors.Join(skipped...))
	}
	return "", fmt.Errorf("no snapshot in %s or the store", e.Dir)
}

// writeSig stores sig (nil = none) beside a fetched manifest.
func writeSig(dir string, sig []byte) error {
	if sig == nil {
		return nil
	}
	if err := atomicfile.Write(dir+"/"+manifest.SigFile, sig, 0o600); err != nil {
		return err
	}
	return nil
}

// checkLocalSig is verify's check of dir/manifest.sig over the manifest's
// bytes on disk. A snapshot without one (taken before signing) passes
// with a note; one whose signature does not verify fails.
func (e *Engine) checkLocalSig(dir string) FileCheck {
	fc := FileCheck{File: manifest.SigFile}
	data, err := os.ReadFile(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		fc.Problem = err.Error()
		return fc
	}
	sig, err := os.ReadFile(filepath.Join(dir, manifest.SigFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fc.Problem = err.Error()
		return fc
	}
	trusted, err := e.trusted()
	if err != nil {
		fc.Problem = err.Error()
		return fc
	}
	switch err := manifest.VerifySig(data, sig, trusted); {
	case errors.Is(err, manifest.ErrUnsigned):
		fc.OK, fc.Note = true, "unsigned (taken before signing)"
	case err != nil:
		fc.Problem = err.Error()
	default:
		fc.OK = true
	}
	return fc
}

// WriteManifest replaces snapshot id's manifest.json with m (atomically)
// and re-signs it, for a caller that records something in it under the lock
// (the canary's ready check).
func (e *Engine) WriteManifest(id string, m manifest.Manifest) error {
	return e.writeManifest(filepath.Join(e.Dir, id), m)
}
