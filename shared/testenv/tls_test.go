package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTLSServerServesLeafTrustedByCA(t *testing.T) {
	ca := NewCA(t)
	leaf := ca.Leaf(t, LeafOpts{DNSNames: []string{"psytech.jp"}})
	addr := TLSServer(t, leaf)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), ServerName: "psytech.jp",
	}}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("got %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "psytech.jp" {
		t.Fatalf("server presented DNS names %v, want [psytech.jp]", got)
	}
}

func TestTLSServerPicksCertificateBySNI(t *testing.T) {
	ca := NewCA(t)
	addr := TLSServer(t,
		ca.Leaf(t, LeafOpts{DNSNames: []string{"other.example"}}),
		ca.Leaf(t, LeafOpts{DNSNames: []string{"psytech.jp"}}))
	for _, name := range []string{"other.example", "psytech.jp"} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: name})
			if err != nil {
				t.Fatalf("handshake with SNI %s: %v", name, err)
			}
			c.Close()
		})
	}
}

func TestLeafValidity(t *testing.T) {
	ca := NewCA(t)
	notAfter := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	expired := ca.Leaf(t, LeafOpts{DNSNames: []string{"a.example"}, NotAfter: notAfter})
	if !expired.Leaf.NotAfter.Equal(notAfter) || !expired.Leaf.NotBefore.Before(notAfter) {
		t.Fatalf("validity %v..%v, want ending %v", expired.Leaf.NotBefore, expired.Leaf.NotAfter, notAfter)
	}
	// Verified at a time inside its window, the expired leaf chains to the CA.
	_, err := expired.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "a.example", CurrentTime: notAfter.Add(-time.Minute)})
	if err != nil {
		t.Fatalf("verify expired leaf inside its window: %v", err)
	}
	if _, err := expired.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err == nil {
		t.Fatal("expired leaf verified now; want an expiry error")
	}

	self := SelfSigned(t, LeafOpts{DNSNames: []string{"a.example"}})
	_, err = self.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()})
	if _, ok := err.(x509.UnknownAuthorityError); !ok {
		t.Fatalf("self-signed verify error = %v, want UnknownAuthorityError", err)
	}

	def := ca.Leaf(t, LeafOpts{})
	if def.Leaf.VerifyHostname("localhost") != nil || def.Leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("default leaf names %v %v, want localhost and 127.0.0.1", def.Leaf.DNSNames, def.Leaf.IPAddresses)
	}
	if !def.Leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("default IP %v", def.Leaf.IPAddresses)
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca := NewCA(t)
	leaf := ca.Leaf(t, LeafOpts{DNSNames: []string{"psytech.jp"}})
	certPath := WriteFile(t, "cert.pem", CertPEM(leaf))
	keyPath := WriteFile(t, "key.pem", KeyPEM(t, leaf))
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Fatalf("load written key pair: %v", err)
	}
	caPEM, err := os.ReadFile(WriteFile(t, "ca.pem", ca.CAPEM()))
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(caPEM)
	if b == nil || b.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("CA PEM: block %v, rest %q", b, rest)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil || !c.IsCA || c.Subject.CommonName != "backstop test CA" {
		t.Fatalf("CA PEM parses to %v (IsCA %v), err %v", c.Subject, c.IsCA, err)
	}
}

func TestIntermediateChain(t *testing.T) {
	root := NewCA(t)
	inter := root.Intermediate(t)
	leaf := inter.Leaf(t, LeafOpts{DNSNames: []string{"psytech.jp"}})
	if len(leaf.Certificate) != 2 {
		t.Fatalf("chain has %d certificates, want leaf + intermediate", len(leaf.Certificate))
	}
	addr := TLSServer(t, leaf)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: root.Pool(), ServerName: "psytech.jp"})
	if err != nil {
		t.Fatalf("handshake trusting only the root: %v", err)
	}
	c.Close()
}
