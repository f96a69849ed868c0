package snapshot

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"backstop/shared/manifest"
	"backstop/shared/store"
	"backstop/shared/testenv"
)

// getLog is the real store; it records every key read.
type getLog struct {
	store.Store
	mu   sync.Mutex
	keys []string
}

func (g *getLog) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	g.mu.Lock()
	g.keys = append(g.keys, key)
	g.mu.Unlock()
	return g.Store.Get(ctx, key)
}

func (g *getLog) readParts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, k := range g.keys {
		if b := filepath.Base(k); b != manifest.ManifestFile && b != manifest.SigFile {
			out = append(out, k)
		}
	}
	return out
}

// signedSetup backs up a data dir to the real S3 server with signing on
// (the key made by the first backup) and returns the engine, the snapshot
// and a second engine: a rebuilt host with an empty backup dir that trusts
// the first host's public key.
func signedSetup(t *testing.T) (*Engine, manifest.Manifest, *Engine, *getLog) {
	t.Helper()
	srv := testenv.S3(t)
	st := s3Store(t, srv)
	keyFile := filepath.Join(t.TempDir(), "state", "signing.key")
	e := &Engine{Dir: filepath.Join(t.TempDir(), "backups"), Host: "test-host", DataDir: dataTree(t), Store: st, SigningKeyFile: keyFile}
	res, err := e.Backup(context.Background(), Options{Upload: true})
	if err != nil || !res.Uploaded {
		t.Fatalf("backup: %v (uploaded=%v %s)", err, res.Uploaded, res.UploadErr)
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key %s: %v mode %v, want 0600", keyFile, err, fi)
	}
	k, err := manifest.LoadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if p, perr := manifest.ParsePublicKey(string(pub)); err != nil || perr != nil || !p.Equal(k.Public()) {
		t.Fatalf("%s.pub = %q (%v %v), want the key's public half", keyFile, pub, err, perr)
	}
	gl := &getLog{Store: st}
	rebuilt := &Engine{Dir: filepath.Join(t.TempDir(), "rebuilt"), Host: "test-host", Store: gl,
		TrustedKeys: []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}}
	if err := os.MkdirAll(rebuilt.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return e, res.Manifest, rebuilt, gl
}

func put(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(data), store.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func TestSignedSnapshotFetchesOnARebuiltHost(t *testing.T) {
	e, m, rebuilt, _ := signedSetup(t)
	local, err := os.ReadFile(filepath.Join(e.Dir, m.ID, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := manifest.LoadSigningKey(e.SigningKeyFile)
	localSig, _ := os.ReadFile(filepath.Join(e.Dir, m.ID, manifest.SigFile))
	if err := manifest.VerifySig(local, localSig, []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatalf("local manifest.sig (rewritten with offsite): %v", err)
	}
	ctx := context.Background()
	id, err := rebuilt.Resolve(ctx, "latest", false)
	if err != nil || id != m.ID {
		t.Fatalf("latest = %q, %v; want %s", id, err, m.ID)
	}
	got, err := rebuilt.FetchLocked(ctx, id)
	if err != nil || got.Data.SHA256 != m.Data.SHA256 {
		t.Fatalf("fetch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rebuilt.Dir, id, manifest.SigFile)); err != nil {
		t.Errorf("fetched snapshot keeps no signature: %v", err)
	}
}

// TestForgedRemoteSnapshotRefused replays the attacks of someone who can
// write the bucket: each is refused before any part is downloaded.
func TestForgedRemoteSnapshotRefused(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(nil)
	cases := []struct {
		name   string
		forge  func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest)
		allow  bool
		target error
		msg    string
	}{
		{name: "forged part with a matching forged manifest", target: manifest.ErrBadSignature, msg: "forged or edited",
			forge: func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest) {
				forged := []byte("not the data the host archived")
				obj, err := s.Put(context.Background(), key(m.Data.File), bytes.NewReader(forged), store.PutOptions{Size: int64(len(forged))})
				if err != nil {
					t.Fatal(err)
				}
				m.Data.SHA256, m.Data.Size, m.Offsite = obj.SHA256, obj.Size, nil
				data, _ := m.Encode()
				put(t, s, key(manifest.ManifestFile), data)
			}},
		{name: "manifest edited after signing", target: manifest.ErrBadSignature,
			forge: func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest) {
				data := get(t, s, key(manifest.ManifestFile))
				put(t, s, key(manifest.ManifestFile), bytes.Replace(data, []byte(`"notes": ""`), []byte(`"notes": "x"`), 1))
			}},
		{name: "signed by another host's key", target: manifest.ErrBadSignature, msg: "signed by ed25519",
			forge: func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest) {
				m.Notes = "planted"
				data, _ := m.Encode()
				put(t, s, key(manifest.ManifestFile), data)
				put(t, s, key(manifest.SigFile), manifest.Sign(otherKey, data))
			}},
		{name: "signature removed", target: manifest.ErrUnsigned, msg: "--allow-unsigned",
			forge: func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest) {
				if err := s.Delete(context.Background(), key(manifest.SigFile)); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "unsigned with --allow-unsigned", allow: true,
			forge: func(t *testing.T, s store.Store, key func(string) string, m manifest.Manifest) {
				if err := s.Delete(context.Background(), key(manifest.SigFile)); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, m, rebuilt, gl := signedSetup(t)
			c.forge(t, gl.Store, func(f string) string { return rebuilt.key(m.ID, f) }, m)
			rebuilt.AllowUnsigned = c.allow
			_, err := rebuilt.FetchLocked(context.Background(), m.ID)
			if c.target == nil {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				return
			}
			if !errors.Is(err, c.target) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), m.ID) {
				t.Fatalf("fetch error = %v, want %v naming %s and %q", err, c.target, m.ID, c.msg)
			}
			if parts := gl.readParts(); len(parts) > 0 {
				t.Errorf("parts read before the signature was checked: %v", parts)
			}
			ents, _ := os.ReadDir(rebuilt.Dir)
			if len(ents) != 0 {
				t.Errorf("refused fetch left %v in the backup dir", ents)
			}
		})
	}
}

func TestLatestNeverPicksFutureOrUnsigned(t *testing.T) {
	e, m, rebuilt, gl := signedSetup(t)
	k, _ := manifest.LoadSigningKey(e.SigningKeyFile)
	plant := func(id string, sign bool) {
		p := m
		p.ID, p.Offsite = id, nil
		data, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		put(t, gl.Store, rebuilt.key(id, manifest.DataFile), get(t, gl.Store, rebuilt.key(m.ID, manifest.DataFile)))
		if sign {
			put(t, gl.Store, rebuilt.key(id, manifest.SigFile), manifest.Sign(k, data))
		}
		put(t, gl.Store, rebuilt.key(id, manifest.ManifestFile), data)
	}
	future := manifest.NewID(time.Now().Add(365*24*time.Hour), nil)
	plant(future, true) // even correctly signed: a stolen key must not win "latest" for a year
	unsigned := manifest.NewID(time.Now().Add(time.Minute), nil)
	plant(unsigned, false)
	id, err := rebuilt.Resolve(context.Background(), "latest", false)
	if err != nil || id != m.ID {
		t.Fatalf("latest = %q, %v; want %s (not the future-dated %s nor the unsigned %s)", id, err, m.ID, future, unsigned)
	}
	// with only planted snapshots left, latest refuses and says why
	if err := gl.Store.Delete(context.Background(), rebuilt.key(m.ID, manifest.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	_, err = rebuilt.Resolve(context.Background(), "latest", false)
	if err == nil || !strings.Contains(err.Error(), "dated in the future") || !errors.Is(err, manifest.ErrUnsigned) {
		t.Fatalf("latest with only planted snapshots = %v", err)
	}
}

func TestSigningKeyReadableByOthersRefused(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "signing.key")
	if _, err := manifest.GenerateSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	e := &Engine{Dir: filepath.Join(t.TempDir(), "backups"), Host: "test-host", DataDir: dataTree(t), SigningKeyFile: keyFile}
	_, err := e.Backup(context.Background(), Options{})
	if !errors.Is(err, manifest.ErrKeyPermissions) || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("backup with a 0640 key = %v, want ErrKeyPermissions naming the file", err)
	}
	if list, _ := e.List(); len(list) != 0 {
		t.Errorf("a snapshot was made: %v", list)
	}
}

func TestStoreSnapshotObjectsAreWriteOnce(t *testing.T) {
	e, m, _, _ := signedSetup(t)
	ctx := context.Background()
	key := e.key(m.ID, manifest.ManifestFile)
	before := get(t, e.Store, key)
	// a push retried for a snapshot already in the store writes the same bytes: fine
	if pushed, err := e.Push(ctx, m.ID); err != nil || len(pushed) != 1 {
		t.Fatalf("push again = %v, %v", pushed, err)
	}
	// other contents under an existing key are refused by the store (412)
	err := e.putBytesOnce(ctx, key, bytes.Replace(before, []byte(`"notes": ""`), []byte(`"notes": "x"`), 1), "application/json")
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "write-once") {
		t.Fatalf("overwrite = %v, want ErrExists", err)
	}
	if after := get(t, e.Store, key); !bytes.Equal(after, before) {
		t.Error("the stored manifest changed")
	}
}

func TestVerifyChecksTheLocalSignature(t *testing.T) {
	e, m, _, _ := signedSetup(t)
	ctx := context.Background()
	if _, err := e.Verify(ctx, m.ID); err != nil {
		t.Fatalf("verify of a signed snapshot: %v", err)
	}
	// verify rewrote the manifest (status verified) and re-signed it
	if _, err := e.Verify(ctx, m.ID); err != nil {
		t.Fatalf("second verify: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	dir := filepath.Join(e.Dir, m.ID)
	data, _ := os.ReadFile(filepath.Join(dir, manifest.ManifestFile))
	if err := os.WriteFile(filepath.Join(dir, manifest.SigFile), manifest.Sign(other, data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := e.Verify(ctx, m.ID)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), manifest.SigFile) {
		t.Fatalf("verify with a foreign signature = %v, want ErrCorrupt naming %s", err, manifest.SigFile)
	}
	os.Remove(filepath.Join(dir, manifest.SigFile))
	res, err := e.Verify(ctx, m.ID)
	if err != nil {
		t.Fatalf("verify of an unsigned (pre-signing) local snapshot: %v", err)
	}
	for _, f := range res.Files {
		if f.File == manifest.SigFile && !strings.Contains(f.Note, "unsigned") {
			t.Errorf("unsigned snapshot's check = %+v, want a note", f)
		}
	}
}
