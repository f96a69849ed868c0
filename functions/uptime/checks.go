package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"backstop/shared/alert"
	"backstop/shared/condition"
)

// bodyLimit is how much of a response body the conditions see.
const bodyLimit = 1 << 20

// Observed is the outcome of checking one target, after the retry.
type Observed struct {
	Target  string
	Kind    string
	Level   alert.Level // LevelNone: nothing observed (see Skipped)
	Summary string      // short cause or state: "HTTP 200 in 41ms", "connection refused"
	Detail  string
	Value   string // the observed value: "HTTP 502", "no response", "10d"
	Latency time.Duration
	At      time.Time // when the counted attempt started
	Retried bool      // the first attempt failed and a second one was made
	Skipped string    // why nothing was observed: the run's deadline, an unreachable certificate target
	// Deadline is true when the run's deadline stopped the check.
	Deadline bool
}

// prober checks targets with one shared HTTP client.
type prober struct {
	client     *http.Client
	roots      *x509.CertPool // nil: the system roots
	retryPause time.Duration
}

// newHTTPClient returns the one client all checks share: keep-alive
// connections reused across targets on one host and across warm
// invocations, no client-wide timeout (each request has its own context).
func newHTTPClient(roots *x509.CertPool, concurrency int) *http.Client {
	idle := 2 * concurrency
	if idle < 100 {
		idle = 100
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           idle,
		MaxIdleConnsPerHost:    concurrency, // many targets may share one host
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	return &http.Client{Transport: tr}
}

// attempt is one try at a target.
type attempt struct {
	level                  alert.Level
	summary, detail, value string
	latency                time.Duration
	at                     time.Time
	cancelled              bool // the run's context ended first: nothing observed
	unreachable            bool // certificate target: no handshake, nothing observed
}

// Check checks t, and when that fails retries once after the pause (a
// quarter of the time left at most) so a single blip never counts. The
// counted result is the retry's. ctx carries the run's deadline: a check
// it cuts short, or a failure with no time left to retry, observes nothing
// (Level LevelNone), so the deadline never fakes an outage.
func (p *prober) Check(ctx context.Context, t *Target) Observed {
	obs := Observed{Target: t.Name, Kind: t.Kind}
	a := p.attempt(ctx, t)
	if a.level != alert.LevelOK && !a.cancelled {
		wait := p.retryPause
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl) / 4; wait > left {
				wait = left
			}
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			a.cancelled = true
		case <-timer.C:
			first := a
			a = p.attempt(ctx, t)
			obs.Retried = true
			if a.level != alert.LevelOK && !a.cancelled && first.summary != a.summary {
				a.detail += "; first try: " + first.summary
			}
		}
	}
	obs.At, obs.Latency = a.at, a.latency
	switch {
	case a.cancelled:
		obs.Level, obs.Deadline = alert.LevelNone, true
		obs.Skipped = "not checked: the run's deadline came first"
	case a.unreachable:
		obs.Level = alert.LevelNone
		obs.Skipped = "certificate not read: " + a.summary
	default:
		obs.Level, obs.Summary, obs.Detail, obs.Value = a.level, a.summary, a.detail, a.value
	}
	return obs
}

func (p *prober) attempt(ctx context.Context, t *Target) attempt {
	if ctx.Err() != nil {
		return attempt{cancelled: true, at: time.Now()}
	}
	if t.Kind == KindCertificate {
		return p.certificate(ctx, t)
	}
	return p.http(ctx, t)
}

// http requests the target and evaluates its conditions: ok when all pass,
// down when one fails or no response came.
func (p *prober) http(ctx context.Context, t *Target) attempt {
	start := time.Now()
	a := attempt{at: start}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	var mu sync.Mutex
	var ip string
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if addr, ok := info.Conn.RemoteAddr().(*net.TCPAddr); ok {
			mu.Lock()
			ip = addr.IP.String()
			mu.Unlock()
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), t.Method, t.URL, nil)
	if err != nil {
		a.level, a.value = alert.LevelDown, "no request"
		a.summary = "cannot build the request"
		a.detail = fmt.Sprintf("%s %s: build request: %v", t.Method, t.shown, redact(err, t.URL, t.shown))
		return a
	}
	for name, v := range t.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(name, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "backstop-uptime")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		a.latency = time.Since(start)
		if ctx.Err() != nil {
			a.cancelled = true
			return a
		}
		cause := httpCause(err, t.timeout)
		a.level, a.value, a.summary = alert.LevelDown, "no response", cause
		a.detail = fmt.Sprintf("%s %s: %s", t.Method, t.shown, cause)
		return a
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	_ = resp.Body.Close()
	a.latency = time.Since(start)
	a.value = fmt.Sprintf("HTTP %d", resp.StatusCode)
	if readErr != nil {
		if ctx.Err() != nil {
			a.cancelled = true
			return a
		}
		cause := httpCause(readErr, t.timeout)
		a.level, a.summary = alert.LevelDown, a.value+", body cut short: "+cause
		a.detail = fmt.Sprintf("%s %s: %s", t.Method, t.shown, a.summary)
		return a
	}
	mu.Lock()
	in := condition.Input{Status: resp.StatusCode, Body: body, ResponseTime: a.latency, Connected: true, IP: ip}
	mu.Unlock()
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		in.CertExpiry = time.Until(resp.TLS.PeerCertificates[0].NotAfter)
	}
	var failed []string
	for _, c := range t.conds {
		if out := c.Eval(in); !out.OK {
			failed = append(failed, out.Explanation)
		}
	}
	took := a.latency.Round(time.Millisecond)
	if len(failed) > 0 {
		a.level = alert.LevelDown
		a.summary = strings.Join(failed, "; ")
		a.detail = fmt.Sprintf("%s %s answered %s in %s: %s", t.Method, t.shown, a.value, took, a.summary)
		return a
	}
	a.level = alert.LevelOK
	a.summary = fmt.Sprintf("%s in %s", a.value, took)
	a.detail = fmt.Sprintf("%s %s answered %s in %s", t.Method, t.shown, a.value, took)
	return a
}

// certificate completes a TLS handshake with the target's host, verifies
// the chain and name itself (so an expired or untrusted certificate is
// still read) and evaluates the conditions with [CERTIFICATE_EXPIRATION]
// set. A failing condition or verification is a warning, never down; no
// handshake at all means nothing was observed (the http targets report
// reachability).
func (p *prober) certificate(ctx context.Context, t *Target) attempt {
	start := time.Now()
	a := attempt{at: start}
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{},
		Config:    &tls.Config{ServerName: t.host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(dctx, "tcp", t.addr)
	a.latency = time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			a.cancelled = true
			return a
		}
		a.unreachable, a.summary = true, fmt.Sprintf("%s: %s", t.addr, httpCause(err, t.timeout))
		return a
	}
	state := conn.(*tls.Conn).ConnectionState()
	ip := ""
	if addr, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		ip = addr.IP.String()
	}
	_ = conn.Close()
	if len(state.PeerCertificates) == 0 {
		a.unreachable, a.summary = true, t.addr+": no certificate presented"
		return a
	}
	leaf := state.PeerCertificates[0]
	inters := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inters.AddCert(c)
	}
	left := time.Until(leaf.NotAfter)
	days := int(math.Round(left.Hours() / 24))
	a.value = fmt.Sprintf("%dd", days)
	about := fmt.Sprintf("certificate of %s (%s, issued by %s) valid until %s",
		t.addr, leaf.Subject.CommonName, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))

	var failed []string
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: t.host, Roots: p.roots, Intermediates: inters}); err != nil {
		failed = append(failed, "not trusted: "+err.Error())
	}
	in := condition.Input{CertExpiry: left, Connected: true, IP: ip}
	for _, c := range t.conds {
		if out := c.Eval(in); !out.OK {
			failed = append(failed, out.Explanation)
		}
	}
	expires := fmt.Sprintf("certificate expires in %d days", days)
	if left <= 0 {
		expires = fmt.Sprintf("certificate expired %d days ago", -days)
	}
	if len(failed) > 0 {
		a.level, a.summary = alert.LevelWarn, expires
		a.detail = about + ": " + strings.Join(failed, "; ")
		return a
	}
	a.level, a.summary, a.detail = alert.LevelOK, expires, about
	return a
}

// httpCause is one clean line for a request that got no (whole) response.
func httpCause(err error, limit time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout after " + limit.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.As(err, &dnsErr):
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	case errors.As(err, &certErr):
		return "TLS: " + certErr.Err.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	return err.Error()
}

// redact replaces the raw URL (which may hold a password) in an error text.
func redact(err error, raw, shown string) string {
	return strings.ReplaceAll(err.Error(), raw, shown)
}
