package check

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

const tlsDay = 24 * time.Hour

func newTLSCheck(t *testing.T, c config.Check) Checker {
	t.Helper()
	c.Name, c.Type = "tls", "tls"
	ch, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return ch
}

// tlsIn returns a NotAfter d from now plus an hour, so whole days left don't
// depend on how long the test takes to reach the check.
func tlsIn(d time.Duration) time.Time { return time.Now().Add(d + time.Hour) }

func TestTLSServer(t *testing.T) {
	ca := testenv.NewCA(t)
	caFile := testenv.WriteFile(t, "ca.pem", ca.CAPEM())
	otherCA := testenv.NewCA(t)
	expired := ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: time.Now().Add(-3*tlsDay - time.Hour)})

	cases := []struct {
		name       string
		certs      []tls.Certificate
		c          config.Check // Address is filled in
		want       Status
		msg, value string
	}{
		{"30 days ok", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, OK, "30 days left", "30 days"},
		{"10 days warn", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(10 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Warn, "10 days left", "10 days"},
		{"2 days critical", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(2 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "2 days left", "2 days"},
		{"1 tlsDay critical", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(1 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "1 day left", "1 day"},
		{"hours left", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(0)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "less than a day left", "0 days"},
		{"expired", []tls.Certificate{expired},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical,
			"certificate expired 3 days ago (NotAfter " + expired.Leaf.NotAfter.UTC().Format("2006-01-02") + ")", "-3 days"},
		{"expired and untrusted is reported as expired", []tls.Certificate{expired},
			config.Check{ServerName: "psytech.jp"}, Critical,
			"certificate expired 3 days ago (NotAfter " + expired.Leaf.NotAfter.UTC().Format("2006-01-02") + ")", "-3 days"},
		{"not yet valid", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"},
			NotBefore: time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "certificate not valid before 2099-01-02T03:04:05Z", ""},
		{"self-signed against ca_file", []tls.Certificate{testenv.SelfSigned(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "not trusted: certificate signed by unknown authority", "30 days"},
		{"self-signed against system roots", []tls.Certificate{testenv.SelfSigned(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp"}, Critical, "not trusted: certificate signed by unknown authority", "30 days"},
		{"test CA is not a system root", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp"}, Critical, "not trusted: certificate signed by unknown authority", "30 days"},
		{"signed by another CA", []tls.Certificate{otherCA.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical,
			`not trusted: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "backstop test CA")`, "30 days"},
		{"wrong hostname", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"other.example"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "not valid for psytech.jp (valid for other.example)", "30 days"},
		{"wrong hostname lists all names", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"a.example", "*.b.example"}, IPs: []net.IP{net.IPv4(10, 0, 0, 1)}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Critical, "not valid for psytech.jp (valid for a.example, *.b.example, 10.0.0.1)", "30 days"},
		{"sni picks the right certificate", []tls.Certificate{
			ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"other.example"}, NotAfter: tlsIn(30 * tlsDay)}),
			ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(20 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, OK, "20 days left", "20 days"},
		{"ip address without server name", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{CAFile: caFile}, OK, "30 days left", "30 days"},
		{"ip address not in certificate", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{CAFile: caFile}, Critical, "not valid for 127.0.0.1 (valid for psytech.jp)", "30 days"},
		{"intermediate sent by server", []tls.Certificate{ca.Intermediate(t).Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, OK, "30 days left", "30 days"},
		{"custom warn_days", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile, WarnDays: 45}, Warn, "30 days left", "30 days"},
		{"custom critical_days", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile, WarnDays: 60, CriticalDays: 30}, Critical, "30 days left", "30 days"},
		{"tlsDay after warn_days is ok", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(15 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, OK, "15 days left", "15 days"},
		{"warn_days boundary warns", []tls.Certificate{ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(14 * tlsDay)})},
			config.Check{ServerName: "psytech.jp", CAFile: caFile}, Warn, "14 days left", "14 days"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Address = testenv.TLSServer(t, tc.certs[0], tc.certs[1:]...)
			r := newTLSCheck(t, tc.c).Check(context.Background())
			if r.Status != tc.want || r.Message != tc.msg {
				t.Fatalf("got %v %q, want %v %q", r.Status, r.Message, tc.want, tc.msg)
			}
			if tc.value != "" && r.Value != tc.value {
				t.Fatalf("value %q, want %q", r.Value, tc.value)
			}
		})
	}
}

func TestTLSObserved(t *testing.T) {
	ca := testenv.NewCA(t)
	leaf := ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp", "www.psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})
	addr := testenv.TLSServer(t, leaf)
	r := newTLSCheck(t, config.Check{Address: addr, ServerName: "www.psytech.jp", CAFile: testenv.WriteFile(t, "ca.pem", ca.CAPEM())}).Check(context.Background())
	want := map[string]any{
		"not_after": leaf.Leaf.NotAfter.UTC(),
		"days_left": 30,
		"subject":   "CN=psytech.jp",
		"issuer":    "CN=backstop test CA,O=backstop tests",
		"dns_names": []string{"psytech.jp", "www.psytech.jp"},
	}
	if r.Status != OK || !reflect.DeepEqual(r.Observed, want) {
		t.Fatalf("got %v observed %#v, want ok %#v", r.Status, r.Observed, want)
	}
}

func TestTLSConnectFailures(t *testing.T) {
	refused := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	// A TCP server that accepts and never speaks: the handshake must end at the timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }() // until the check hangs up
		}
	}()

	// A plain-HTTP server where TLS is expected.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()

	cases := []struct {
		name string
		c    config.Check
		msg  string
	}{
		{"connection refused", config.Check{Address: refused, ServerName: "psytech.jp"},
			fmt.Sprintf("connect %s: dial tcp %s: connect: connection refused", refused, refused)},
		{"handshake timeout", config.Check{Address: silent.Addr().String(), Timeout: config.Duration(300 * time.Millisecond)},
			fmt.Sprintf("tls handshake with %s: context deadline exceeded", silent.Addr())},
		{"not a tls server", config.Check{Address: plain.Addr().String()},
			fmt.Sprintf("tls handshake with %s: tls: first record does not look like a TLS handshake", plain.Addr())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTLSCheck(t, tc.c).Check(context.Background())
			if r.Status != Critical || r.Message != tc.msg || r.Value != "" {
				t.Fatalf("got %v %q value %q, want critical %q", r.Status, r.Message, r.Value, tc.msg)
			}
		})
	}
}

func TestTLSCertFile(t *testing.T) {
	ca := testenv.NewCA(t)
	caFile := testenv.WriteFile(t, "ca.pem", ca.CAPEM())
	inter := ca.Intermediate(t)
	chained := inter.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: tlsIn(30 * tlsDay)})
	// The leaf alone, without the intermediate that links it to the root.
	leafOnly := chained
	leafOnly.Certificate = chained.Certificate[:1]
	expired := ca.Leaf(t, testenv.LeafOpts{DNSNames: []string{"psytech.jp"}, NotAfter: time.Now().Add(-10*tlsDay - time.Hour)})
	missing := filepath.Join(t.TempDir(), "missing.pem")
	garbage := testenv.WriteFile(t, "garbage.pem", []byte("not a certificate\n"))
	keyOnly := testenv.WriteFile(t, "key.pem", testenv.KeyPEM(t, chained))

	cases := []struct {
		name string
		file string
		c    config.Check
		want Status
		msg  string
	}{
		{"leaf and chain, no name check", testenv.WriteFile(t, "a.pem", testenv.CertPEM(chained)),
			config.Check{CAFile: caFile}, OK, "30 days left"},
		{"leaf and chain, right name", testenv.WriteFile(t, "a.pem", testenv.CertPEM(chained)),
			config.Check{CAFile: caFile, ServerName: "psytech.jp"}, OK, "30 days left"},
		{"leaf and chain, wrong name", testenv.WriteFile(t, "a.pem", testenv.CertPEM(chained)),
			config.Check{CAFile: caFile, ServerName: "other.example"}, Critical, "not valid for other.example (valid for psytech.jp)"},
		{"leaf without its intermediate", testenv.WriteFile(t, "a.pem", testenv.CertPEM(leafOnly)),
			config.Check{CAFile: caFile}, Critical, "not trusted: certificate signed by unknown authority"},
		{"expired", testenv.WriteFile(t, "a.pem", testenv.CertPEM(expired)),
			config.Check{CAFile: caFile}, Critical, "certificate expired 10 days ago (NotAfter " + expired.Leaf.NotAfter.UTC().Format("2006-01-02") + ")"},
		{"missing file", missing, config.Check{}, Unknown, "read " + missing + ": open " + missing + ": no such file or directory"},
		{"no certificate in file", garbage, config.Check{}, Unknown, "read " + garbage + ": no PEM certificate found"},
		{"key but no certificate", keyOnly, config.Check{}, Unknown, "read " + keyOnly + ": no PEM certificate found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.CertFile = tc.file
			r := newTLSCheck(t, tc.c).Check(context.Background())
			if r.Status != tc.want || r.Message != tc.msg {
				t.Fatalf("got %v %q, want %v %q", r.Status, r.Message, tc.want, tc.msg)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ca.pem")
	cases := []struct {
		name string
		c    config.Check
		want string
	}{
		{"neither", config.Check{}, `check "tls": address: one of address or cert_file is required`},
		{"both", config.Check{Address: "psytech.jp:443", CertFile: "/etc/cert.pem"}, `check "tls": cert_file: set either address or cert_file, not both`},
		{"no port", config.Check{Address: "psytech.jp"}, `check "tls": address: want host:port, got "psytech.jp"`},
		{"no host", config.Check{Address: ":443"}, `check "tls": address: want host:port, got ":443"`},
		{"critical above warn", config.Check{Address: "psytech.jp:443", WarnDays: 5, CriticalDays: 7}, `check "tls": critical_days: 7 is above warn_days 5`},
		{"negative warn", config.Check{Address: "psytech.jp:443", WarnDays: -1}, `check "tls": warn_days: must be positive, got -1`},
		{"missing ca_file", config.Check{Address: "psytech.jp:443", CAFile: missing}, `check "tls": ca_file: read ` + missing + `: open ` + missing + `: no such file or directory`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name, tc.c.Type = "tls", "tls"
			_, err := New(tc.c)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
