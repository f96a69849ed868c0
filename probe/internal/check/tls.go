package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"backstop/probe/internal/config"
)

func init() { register("tls", newTLS) }

const (
	defaultTLSWarnDays     = 14
	defaultTLSCriticalDays = 3
	defaultTLSTimeout      = 10 * time.Second
)

// TLSCheck watches a certificate: the one a server presents at Address, or
// the one in CertFile (PEM: the leaf first, then its chain). It reports, in
// this order of precedence: expired or not yet valid, not trusted (chain to
// the system roots, or to CAFile's roots only when set), not valid for the
// host name, then days left against CriticalDays/WarnDays.
type TLSCheck struct {
	name         string
	address      string // host:port, or "" with certFile
	serverName   string // SNI and the name verified; "" with certFile means no name check
	certFile     string
	roots        *x509.CertPool // nil: system roots
	warnDays     int
	criticalDays int
	timeout      time.Duration
}

var _ Checker = (*TLSCheck)(nil)

func newTLS(c config.Check) (Checker, error) {
	t := &TLSCheck{
		name: c.Name, address: c.Address, serverName: c.ServerName, certFile: c.CertFile,
		warnDays: c.WarnDays, criticalDays: c.CriticalDays, timeout: c.Timeout.D(),
	}
	switch {
	case c.Address == "" && c.CertFile == "":
		return nil, errors.New("address: one of address or cert_file is required")
	case c.Address != "" && c.CertFile != "":
		return nil, errors.New("cert_file: set either address or cert_file, not both")
	case c.Address != "":
		host, port, err := net.SplitHostPort(c.Address)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("address: want host:port, got %q", c.Address)
		}
		if t.serverName == "" {
			t.serverName = host
		}
	}
	if t.warnDays == 0 {
		t.warnDays = defaultTLSWarnDays
	}
	if t.criticalDays == 0 {
		t.criticalDays = defaultTLSCriticalDays
	}
	if t.warnDays < 0 {
		return nil, fmt.Errorf("warn_days: must be positive, got %d", c.WarnDays)
	}
	if t.criticalDays < 0 {
		return nil, fmt.Errorf("critical_days: must be positive, got %d", c.CriticalDays)
	}
	if t.criticalDays > t.warnDays {
		return nil, fmt.Errorf("critical_days: %d is above warn_days %d", t.criticalDays, t.warnDays)
	}
	if t.timeout <= 0 {
		t.timeout = defaultTLSTimeout
	}
	if c.CAFile != "" {
		certs, err := tlsReadCerts(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		t.roots = x509.NewCertPool()
		for _, ca := range certs {
			t.roots.AddCert(ca)
		}
	}
	return t, nil
}

// Check fetches the certificate (dialling with ctx, bounded by the check's
// timeout) and grades it. A connect or handshake failure is Critical with
// the cause; an unreadable CertFile is Unknown.
func (t *TLSCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: t.name, Type: "tls", At: start}
	var chain []*x509.Certificate
	if t.certFile != "" {
		certs, err := tlsReadCerts(t.certFile)
		if err != nil {
			res.Status, res.Message = Unknown, err.Error()
			res.Latency = time.Since(start)
			return res
		}
		chain = certs
	} else {
		certs, err := t.fetch(ctx)
		res.Latency = time.Since(start)
		if err != nil {
			res.Status, res.Message = Critical, err.Error()
			return res
		}
		chain = certs
	}
	t.grade(time.Now(), chain, &res)
	if res.Latency == 0 {
		res.Latency = time.Since(start)
	}
	return res
}

// fetch connects to the address and returns the certificates the server
// presents for the SNI name. Verification is done by grade, not here, so an
// untrusted or expired certificate is still seen and named.
func (t *TLSCheck) fetch(ctx context.Context) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.address)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", t.address, err)
	}
	defer raw.Close()
	sni := t.serverName
	if net.ParseIP(sni) != nil {
		sni = "" // an IP address is never sent as SNI
	}
	conn := tls.Client(raw, &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified in grade, to tell expiry, trust and name apart
		MinVersion:         tls.VersionTLS12,
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake with %s: %w", t.address, err)
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("tls handshake with %s: no certificate presented", t.address)
	}
	return certs, nil
}

// grade fills res from the leaf (chain[0]) and its intermediates as seen at now.
func (t *TLSCheck) grade(now time.Time, chain []*x509.Certificate, res *Result) {
	leaf := chain[0]
	// Whole days, truncated toward zero: 2d23h left is "2 days", 3d1h ago is "-3 days".
	days := int(leaf.NotAfter.Sub(now).Hours() / 24)
	res.Value = tlsDays(days)
	dnsNames := leaf.DNSNames
	if dnsNames == nil {
		dnsNames = []string{}
	}
	res.Observed = map[string]any{
		"not_after": leaf.NotAfter.UTC(),
		"days_left": days,
		"subject":   leaf.Subject.String(),
		"issuer":    leaf.Issuer.String(),
		"dns_names": dnsNames,
	}
	res.Status = Critical
	notAfter := leaf.NotAfter.UTC().Format(time.DateOnly)

	// Expiry first: an expired certificate also fails verification, and
	// "expired" is the cause an operator needs to read.
	if now.After(leaf.NotAfter) {
		ago := tlsDays(-days) + " ago"
		if ago == "0 days ago" {
			ago = "less than a day ago"
		}
		res.Message = fmt.Sprintf("certificate expired %s (NotAfter %s)", ago, notAfter)
		return
	}
	if now.Before(leaf.NotBefore) {
		res.Message = fmt.Sprintf("certificate not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
		return
	}

	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// The chain is verified at now, which lies inside the leaf's validity, so
	// a failure here is about trust (or an expired intermediate), not the leaf's dates.
	opts := x509.VerifyOptions{Roots: t.roots, Intermediates: inter, CurrentTime: now}
	if _, err := leaf.Verify(opts); err != nil {
		res.Message = "not trusted: " + strings.TrimPrefix(err.Error(), "x509: ")
		return
	}
	if t.serverName != "" {
		if err := leaf.VerifyHostname(t.serverName); err != nil {
			res.Message = fmt.Sprintf("not valid for %s (%s)", t.serverName, tlsValidFor(leaf))
			return
		}
	}

	res.Message = tlsDays(days) + " left"
	if days == 0 {
		res.Message = "less than a day left"
	}
	switch {
	case days <= t.criticalDays:
		res.Status = Critical
	case days <= t.warnDays:
		res.Status = Warn
	default:
		res.Status = OK
	}
}

// tlsValidFor lists the names a certificate is valid for.
func tlsValidFor(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no subject alternative names; CN " + c.Subject.CommonName
	}
	return "valid for " + strings.Join(names, ", ")
}

func tlsDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// tlsReadCerts parses every CERTIFICATE block of a PEM file, in order.
func tlsReadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d in %s: %w", len(certs)+1, path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("read %s: no PEM certificate found", path)
	}
	return certs, nil
}
