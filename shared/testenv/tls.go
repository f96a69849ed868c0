package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority for tests. Its certificate is
// valid from five years ago to ten years ahead, so leaves with any chosen
// validity window (expired, not yet valid, long-lived) chain to it.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// chain holds the DER of this CA and its parents below the root
	// (empty for a root), appended to every leaf it issues.
	chain [][]byte
}

// LeafOpts chooses what a test certificate says. Zero values get defaults:
// no DNSNames and no IPs mean "localhost" and 127.0.0.1; a zero NotAfter is
// 30 days from now; a zero NotBefore is an hour ago, or a day before
// NotAfter when that is earlier (so an expired certificate stays well-formed).
type LeafOpts struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
}

func (o LeafOpts) withDefaults() LeafOpts {
	now := time.Now()
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		o.DNSNames = []string{"localhost"}
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(30 * 24 * time.Hour)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
		if d := o.NotAfter.Add(-24 * time.Hour); d.Before(o.NotBefore) {
			o.NotBefore = d
		}
	}
	if o.CommonName == "" {
		if len(o.DNSNames) > 0 {
			o.CommonName = o.DNSNames[0]
		} else {
			o.CommonName = o.IPs[0].String()
		}
	}
	return o
}

// NewCA makes a new ECDSA P-256 root CA named "backstop test CA".
func NewCA(t testing.TB) *CA {
	t.Helper()
	return newCA(t, "backstop test CA", nil)
}

// Intermediate makes a CA signed by ca. Leaves it issues carry the
// intermediate (and any above it, short of the root) in their chain, as a
// server sends them.
func (ca *CA) Intermediate(t testing.TB) *CA {
	t.Helper()
	return newCA(t, "backstop test intermediate CA", ca)
}

func newCA(t testing.TB, name string, parent *CA) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"backstop tests"}},
		NotBefore:             now.AddDate(-5, 0, 0),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatalf("create CA certificate %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate %s: %v", name, err)
	}
	ca := &CA{Cert: cert, Key: key}
	if parent != nil {
		ca.chain = append([][]byte{der}, parent.chain...)
	}
	return ca
}

// Leaf issues a server certificate signed by the CA. The returned
// certificate's chain holds the leaf and any intermediates, not the root
// (as a real server sends it); Leaf is set.
func (ca *CA) Leaf(t testing.TB, o LeafOpts) tls.Certificate {
	t.Helper()
	c := issue(t, o.withDefaults(), ca.Cert, ca.Key)
	c.Certificate = append(c.Certificate, ca.chain...)
	return c
}

// CAPEM returns the CA certificate in PEM, for a CAFile.
func (ca *CA) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// SelfSigned makes a certificate that signs itself (not a CA), as a
// misconfigured server would present.
func SelfSigned(t testing.TB, o LeafOpts) tls.Certificate {
	t.Helper()
	return issue(t, o.withDefaults(), nil, nil)
}

// issue signs a leaf with parent/parentKey, or with itself when parent is nil.
func issue(t testing.TB, o LeafOpts, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: o.CommonName},
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", o.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate %s: %v", o.CommonName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// CertPEM returns the certificate chain of c (leaf first) in PEM.
func CertPEM(c tls.Certificate) []byte {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// KeyPEM returns c's private key in PEM (PKCS #8).
func KeyPEM(t testing.TB, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatalf("marshal private key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFile writes data to name inside a fresh test temp dir and returns
// the path; handy for CAFile and CertFile settings.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// TLSServer starts an HTTPS server on 127.0.0.1 that presents cert (or,
// with more, the one matching the client's SNI, as crypto/tls chooses) and
// answers every request with 200 "ok". It returns host:port and is stopped
// when the test ends. Handshake errors from clients that reject the
// certificate are expected and not logged.
func TLSServer(t testing.TB, cert tls.Certificate, more ...tls.Certificate) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for TLS server: %v", err)
	}
	cfg := &tls.Config{Certificates: append([]tls.Certificate{cert}, more...), MinVersion: tls.VersionTLS12}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok\n")
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("TLS server on %s: %v", l.Addr(), err)
		}
	})
	return l.Addr().String()
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate ECDSA key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("serial number: %v", err)
	}
	return n
}
