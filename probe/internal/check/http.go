package check

import (
	"context"
	"crypto/tls"
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

	"backstop/probe/internal/config"
	"backstop/shared/condition"
)

func init() { register("http", newHTTP) }

// httpBodyLimit is how much of a response body is read and handed to the
// conditions; the rest is discarded.
const httpBodyLimit = 1 << 20

const httpDefaultCondition = "[STATUS] == 200"

// HTTPCheck requests one URL and holds the response to Gatus-style
// conditions ([STATUS], [BODY].path, [RESPONSE_TIME], ...). It keeps one
// http.Client, so connections are reused from round to round.
type HTTPCheck struct {
	name     string
	method   string
	url      string // as configured, userinfo included (sent, never shown)
	shown    string // url with the password redacted, for messages
	password string // scrubbed from every message, belt and braces
	headers  map[string]config.Secret
	body     string
	conds    []*condition.Condition
	timeout  time.Duration
	client   *http.Client
}

var _ Checker = (*HTTPCheck)(nil)

func newHTTP(c config.Check) (Checker, error) {
	raw := strings.TrimSpace(c.URL)
	if raw == "" {
		return nil, errors.New("url: required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// err would quote the URL, password and all: say it without it.
		return nil, errors.New("url: must be an http:// or https:// URL")
	}
	h := &HTTPCheck{
		name:    c.Name,
		method:  strings.ToUpper(strings.TrimSpace(c.Method)),
		url:     raw,
		shown:   u.Redacted(),
		headers: c.Headers,
		body:    c.Body,
		timeout: c.Timeout.D(),
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		h.password = pw
	}
	if h.method == "" {
		h.method = http.MethodGet
	}
	if !httpToken(h.method) {
		return nil, fmt.Errorf("method: %q is not an HTTP method", c.Method)
	}
	for name := range c.Headers {
		if !httpToken(name) {
			return nil, fmt.Errorf("headers: %q is not a header name", name)
		}
	}
	exprs := c.Conditions
	if len(exprs) == 0 {
		exprs = []string{httpDefaultCondition}
	}
	for i, expr := range exprs {
		cond, err := condition.Parse(expr)
		if err != nil {
			return nil, fmt.Errorf("conditions[%d]: %w", i, err)
		}
		h.conds = append(h.conds, cond)
	}
	if h.timeout <= 0 {
		h.timeout = config.DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: c.Insecure, MinVersion: tls.VersionTLS12}
	h.client = &http.Client{Transport: tr}
	if c.FollowRedirects != nil && !*c.FollowRedirects {
		h.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return h, nil
}

// httpToken reports whether s is an RFC 9110 token (method, header name).
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Check sends the request under the check's timeout (or ctx's deadline,
// whichever comes first) and evaluates every condition on the response.
// OK when all pass; Critical when one fails (Message lists the failing ones
// with their resolved values) or when no response came (refused, timeout,
// TLS failure: Message gives the cause); Unknown only when ctx is cancelled.
// Response time runs from sending to the end of the body (at most 1 MiB).
func (h *HTTPCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: h.name, Type: "http", At: start}
	limit := h.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < limit {
		limit = time.Until(dl)
	}
	rctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()

	var mu sync.Mutex
	var ip string
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if a, ok := info.Conn.RemoteAddr().(*net.TCPAddr); ok {
			mu.Lock()
			ip = a.IP.String()
			mu.Unlock()
		}
	}}
	var reqBody io.Reader
	if h.body != "" {
		reqBody = strings.NewReader(h.body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), h.method, h.url, reqBody)
	if err != nil {
		res.Status, res.Message = Unknown, h.scrub(fmt.Sprintf("%s %s: build request: %v", h.method, h.shown, err))
		return res
	}
	for name, v := range h.headers {
		if strings.EqualFold(name, "Host") {
			req.Host = v.Reveal()
			continue
		}
		req.Header.Set(name, v.Reveal())
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "backstop-probe")
	}

	resp, err := h.client.Do(req)
	if err != nil {
		res.Latency = time.Since(start)
		res.Status, res.Value = Critical, "no response"
		if errors.Is(ctx.Err(), context.Canceled) {
			res.Status = Unknown
		}
		res.Message = h.scrub(fmt.Sprintf("%s %s: %s", h.method, h.shown, httpCause(ctx, err, limit)))
		res.Observed = map[string]any{"response_time_ms": res.Latency.Milliseconds()}
		return res
	}
	body, truncated, readErr := readHTTPBody(resp.Body)
	rt := time.Since(start)
	_ = resp.Body.Close()

	res.Latency = rt
	res.Value = fmt.Sprintf("HTTP %d", resp.StatusCode)
	res.Observed = map[string]any{
		"status":           resp.StatusCode,
		"response_time_ms": rt.Milliseconds(),
		"body_bytes":       len(body),
	}
	if truncated {
		res.Observed["body_truncated"] = true
	}
	if readErr != nil {
		res.Status = Critical
		res.Message = h.scrub(fmt.Sprintf("%s %s: HTTP %d, read body: %s", h.method, h.shown, resp.StatusCode, httpCause(ctx, readErr, limit)))
		if errors.Is(ctx.Err(), context.Canceled) {
			res.Status = Unknown
		}
		return res
	}

	mu.Lock()
	in := condition.Input{Status: resp.StatusCode, Body: body, ResponseTime: rt, Connected: true, IP: ip}
	mu.Unlock()
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		in.CertExpiry = time.Until(resp.TLS.PeerCertificates[0].NotAfter)
		res.Observed["cert_expiry_hours"] = math.Round(in.CertExpiry.Hours()*10) / 10
	}
	var failed []string
	for _, c := range h.conds {
		if out := c.Eval(in); !out.OK {
			failed = append(failed, out.Explanation)
		}
	}
	if len(failed) > 0 {
		res.Status = Critical
		msg := res.Value + ": " + strings.Join(failed, "; ")
		if truncated {
			msg += fmt.Sprintf(" (body cut at %d bytes)", httpBodyLimit)
		}
		res.Message = h.scrub(msg)
		return res
	}
	res.Status = OK
	res.Message = fmt.Sprintf("%s in %s", res.Value, rt.Round(time.Millisecond))
	return res
}

// readHTTPBody reads at most httpBodyLimit bytes; truncated says there was more.
func readHTTPBody(r io.Reader) (body []byte, truncated bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, httpBodyLimit+1))
	if len(body) > httpBodyLimit {
		return body[:httpBodyLimit], true, err
	}
	return body, false, err
}

// scrub removes the URL's password from s, should a library have quoted it.
func (h *HTTPCheck) scrub(s string) string {
	if h.password == "" {
		return s
	}
	return strings.ReplaceAll(s, h.password, "xxxxx")
}

// httpCause is one clean line for a request that got no (whole) response:
// "timeout after 10s", "connection refused", "lookup x: no such host", or
// the TLS verification failure.
func httpCause(ctx context.Context, err error, limit time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout after " + httpLimit(limit)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.As(err, &dnsErr):
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	return err.Error()
}

// httpLimit prints a timeout the way it was configured (10s, 250ms), even
// when it was measured from a deadline a hair later.
func httpLimit(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
