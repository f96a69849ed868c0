package check

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

// httpServer starts a loopback HTTP server with h, stopped when the test ends.
func httpServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func runHTTP(t *testing.T, c config.Check) Result {
	t.Helper()
	c.Type = "http"
	if c.Name == "" {
		c.Name = "web"
	}
	ch, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return ch.Check(context.Background())
}

func wantResult(t *testing.T, r Result, status Status, value, message string) {
	t.Helper()
	if r.Status != status || r.Value != value || r.Message != message {
		t.Errorf("got %s %q %q\nwant %s %q %q", r.Status, r.Value, r.Message, status, value, message)
	}
}

func TestHTTPConditions(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"ok","data":{"items":[{"name":"db","ok":true},{"name":"redis","ok":true}]}}`)
		case "/degraded":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"status":"degraded","errors":["db down"]}`)
		case "/html":
			io.WriteString(w, "<html><body>service healthy</body></html>")
		default:
			http.NotFound(w, r)
		}
	})
	tests := []struct {
		name       string
		path       string
		conditions []string
		status     Status
		value      string
		message    string // for OK results only the prefix before " in "
	}{
		{"default condition passes", "/health", nil, OK, "HTTP 200", "HTTP 200"},
		{"default condition fails", "/degraded", nil, Critical, "HTTP 502", "HTTP 502: [STATUS] (502) == 200"},
		{"not found", "/nope", nil, Critical, "HTTP 404", "HTTP 404: [STATUS] (404) == 200"},
		{"json conditions pass", "/health", []string{"[STATUS] == 200", "[BODY].status == ok", "[BODY].data.items[1].name == redis", "len([BODY].data.items) == 2", "has([BODY].errors) == false"}, OK, "HTTP 200", "HTTP 200"},
		{"every failing condition listed", "/degraded", []string{"[STATUS] == 200", "[BODY].status == ok", "has([BODY].errors) == false", "[STATUS] >= 500"}, Critical, "HTTP 502",
			"HTTP 502: [STATUS] (502) == 200; [BODY].status (degraded) == ok; has([BODY].errors) (true) == false"},
		{"status accepted by any", "/degraded", []string{"[STATUS] == any(200, 502)"}, OK, "HTTP 502", "HTTP 502"},
		{"json condition on a non-JSON body", "/html", []string{"[STATUS] == 200", "[BODY].status == ok"}, Critical, "HTTP 200", "HTTP 200: [BODY].status (absent: body is not JSON) == ok"},
		{"pattern on a text body", "/html", []string{"[BODY] == pat(*healthy*)"}, OK, "HTTP 200", "HTTP 200"},
		{"connected and ip", "/health", []string{"[CONNECTED] == true", "[IP] == 127.0.0.1"}, OK, "HTTP 200", "HTTP 200"},
		{"no certificate over plain http", "/health", []string{"[CERTIFICATE_EXPIRATION] > 48h"}, Critical, "HTTP 200", "HTTP 200: [CERTIFICATE_EXPIRATION] (absent: no certificate) > 48h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runHTTP(t, config.Check{URL: srv.URL + tc.path, Conditions: tc.conditions})
			msg := r.Message
			if r.Status == OK {
				msg, _, _ = strings.Cut(msg, " in ")
			}
			if r.Status != tc.status || r.Value != tc.value || msg != tc.message {
				t.Errorf("got %s %q %q\nwant %s %q %q", r.Status, r.Value, r.Message, tc.status, tc.value, tc.message)
			}
			if r.Name != "web" || r.Type != "http" || r.At.IsZero() || r.Latency <= 0 {
				t.Errorf("name/type/at/latency not filled: %+v", r)
			}
			if r.Observed["status"] == nil || r.Observed["response_time_ms"] == nil || r.Observed["body_bytes"] == nil {
				t.Errorf("observed = %v, want status, response_time_ms, body_bytes", r.Observed)
			}
			if _, ok := r.Observed["cert_expiry_hours"]; ok {
				t.Errorf("cert_expiry_hours observed over plain http: %v", r.Observed)
			}
		})
	}
}

// slowServer answers after delay, or gives up when the client goes away or
// the test ends, so Close never waits for it.
func slowServer(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
			io.WriteString(w, `{"status":"ok"}`)
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv
}

func TestHTTPTimeout(t *testing.T) {
	srv := slowServer(t, time.Minute)
	r := runHTTP(t, config.Check{URL: srv.URL + "/slow", Timeout: config.Duration(200 * time.Millisecond)})
	wantResult(t, r, Critical, "no response", "GET "+srv.URL+"/slow: timeout after 200ms")
}

func TestHTTPContextDeadlineShorterThanTimeout(t *testing.T) {
	srv := slowServer(t, time.Minute)
	ch, err := New(config.Check{Name: "web", Type: "http", URL: srv.URL + "/slow"}) // 10s default
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r := ch.Check(ctx)
	if r.Status != Critical || !strings.HasPrefix(r.Message, "GET "+srv.URL+"/slow: timeout after ") || strings.HasSuffix(r.Message, "after 10s") {
		t.Errorf("got %s %q, want critical timeout after the ctx deadline (~300ms)", r.Status, r.Message)
	}
}

func TestHTTPCancelledIsUnknown(t *testing.T) {
	srv := slowServer(t, time.Minute)
	ch, err := New(config.Check{Name: "web", Type: "http", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	r := ch.Check(ctx)
	wantResult(t, r, Unknown, "no response", "GET "+srv.URL+": cancelled")
}

func TestHTTPSlowResponseTimeCondition(t *testing.T) {
	srv := slowServer(t, 150*time.Millisecond)
	r := runHTTP(t, config.Check{URL: srv.URL, Conditions: []string{"[STATUS] == 200", "[RESPONSE_TIME] < 100"}})
	if r.Status != Critical || !strings.HasPrefix(r.Message, "HTTP 200: [RESPONSE_TIME] (") || !strings.HasSuffix(r.Message, ") < 100") {
		t.Errorf("got %s %q, want critical on [RESPONSE_TIME] < 100", r.Status, r.Message)
	}
	if ms, _ := r.Observed["response_time_ms"].(int64); ms < 150 {
		t.Errorf("response_time_ms = %v, want at least the handler's 150ms delay", r.Observed["response_time_ms"])
	}
	if r.Latency < 150*time.Millisecond {
		t.Errorf("latency = %s, want at least 150ms", r.Latency)
	}
}

func TestHTTPRedirects(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusFound)
			return
		}
		io.WriteString(w, "here")
	})
	no := false
	tests := []struct {
		name       string
		follow     *bool
		conditions []string
		status     Status
		value      string
		message    string
	}{
		{"followed by default", nil, []string{"[STATUS] == 200", "[BODY] == here"}, OK, "HTTP 200", "HTTP 200"},
		{"not followed fails the default condition", &no, nil, Critical, "HTTP 302", "HTTP 302: [STATUS] (302) == 200"},
		{"not followed, redirect expected", &no, []string{"[STATUS] == 302"}, OK, "HTTP 302", "HTTP 302"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runHTTP(t, config.Check{URL: srv.URL + "/old", FollowRedirects: tc.follow, Conditions: tc.conditions})
			msg, _, _ := strings.Cut(r.Message, " in ")
			if r.Status != tc.status || r.Value != tc.value || msg != tc.message {
				t.Errorf("got %s %q %q, want %s %q %q", r.Status, r.Value, r.Message, tc.status, tc.value, tc.message)
			}
		})
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	port := testenv.FreePort(t) // nothing listens there any more
	u := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	r := runHTTP(t, config.Check{URL: u})
	wantResult(t, r, Critical, "no response", "GET "+u+": connection refused")
}

func TestHTTPSendsMethodHeadersAndBody(t *testing.T) {
	var mu sync.Mutex
	var got struct{ method, auth, token, ctype, body, user, pass, host string }
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got.method, got.auth, got.token = r.Method, r.Header.Get("Authorization"), r.Header.Get("X-Token")
		got.ctype, got.body, got.host = r.Header.Get("Content-Type"), string(b), r.Host
		if r.Header.Get("X-Token") != "tok-9f8e" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	r := runHTTP(t, config.Check{
		URL:    srv.URL + "/api",
		Method: "post",
		Headers: map[string]config.Secret{
			"X-Token":      "tok-9f8e",
			"Content-Type": "application/json",
			"Host":         "app.example.jp",
		},
		Body: `{"ping":1}`,
	})
	if r.Status != OK {
		t.Fatalf("got %s %q, want ok (header sent)", r.Status, r.Message)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.method != "POST" || got.token != "tok-9f8e" || got.ctype != "application/json" || got.body != `{"ping":1}` || got.host != "app.example.jp" {
		t.Errorf("server saw %+v", got)
	}
	if s := fmt.Sprintf("%+v", r); strings.Contains(s, "tok-9f8e") {
		t.Errorf("header secret in result: %s", s)
	}
}

func TestHTTPUserinfoSentButNeverShown(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "hunter2" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	su, _ := url.Parse(srv.URL)
	r := runHTTP(t, config.Check{URL: "http://ops:hunter2@" + su.Host + "/x"})
	wantResult(t, r, Critical, "HTTP 503", "HTTP 503: [STATUS] (503) == 200") // 503, not 401: credentials were sent

	port := testenv.FreePort(t)
	r = runHTTP(t, config.Check{URL: fmt.Sprintf("http://ops:hunter2@127.0.0.1:%d/x", port), Timeout: config.Duration(time.Second)})
	wantResult(t, r, Critical, "no response", fmt.Sprintf("GET http://ops:xxxxx@127.0.0.1:%d/x: connection refused", port))
	if s := fmt.Sprintf("%+v", r); strings.Contains(s, "hunter2") {
		t.Errorf("password in result: %s", s)
	}
}

func TestHTTPBodyLimit(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"pad":"`+strings.Repeat("x", 2<<20)+`"}`)
	})
	r := runHTTP(t, config.Check{URL: srv.URL, Conditions: []string{"[BODY].pad != x"}})
	if n := r.Observed["body_bytes"]; n != httpBodyLimit {
		t.Errorf("body_bytes = %v, want %d", n, httpBodyLimit)
	}
	if r.Observed["body_truncated"] != true {
		t.Errorf("body_truncated not set: %v", r.Observed)
	}
	wantResult(t, r, Critical, "HTTP 200", "HTTP 200: [BODY].pad (absent: body is not JSON) != x (body cut at 1048576 bytes)")
}

// tlsServer serves "ok" over HTTPS on 127.0.0.1 with a self-signed
// certificate valid until notAfter.
func tlsServer(t *testing.T, notAfter time.Time) *httptest.Server {
	t.Helper()
	cert := testenv.SelfSigned(t, testenv.LeafOpts{NotAfter: notAfter})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"ok"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-certificate case makes handshake noise
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPSCertificateExpiration(t *testing.T) {
	far := tlsServer(t, time.Now().Add(90*24*time.Hour))
	near := tlsServer(t, time.Now().Add(10*24*time.Hour))
	tests := []struct {
		name      string
		srv       *httptest.Server
		status    Status
		msgPrefix string
		msgSuffix string
	}{
		{"valid long enough", far, OK, "HTTP 200 in ", ""},
		{"expires within 14 days", near, Critical, "HTTP 200: [CERTIFICATE_EXPIRATION] (239h", ") > 336h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runHTTP(t, config.Check{URL: tc.srv.URL + "/health", Insecure: true, Conditions: []string{"[STATUS] == 200", "[CERTIFICATE_EXPIRATION] > 336h"}})
			if r.Status != tc.status || !strings.HasPrefix(r.Message, tc.msgPrefix) || !strings.HasSuffix(r.Message, tc.msgSuffix) {
				t.Errorf("got %s %q, want %s %q...%q", r.Status, r.Message, tc.status, tc.msgPrefix, tc.msgSuffix)
			}
			if h, ok := r.Observed["cert_expiry_hours"].(float64); !ok || h <= 0 {
				t.Errorf("cert_expiry_hours = %v, want the remaining hours", r.Observed["cert_expiry_hours"])
			}
		})
	}
}

func TestHTTPSUntrustedCertificate(t *testing.T) {
	srv := tlsServer(t, time.Now().Add(90*24*time.Hour))
	r := runHTTP(t, config.Check{URL: srv.URL})
	wantResult(t, r, Critical, "no response", "GET "+srv.URL+": tls: failed to verify certificate: x509: certificate signed by unknown authority")
}

func TestHTTPConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		c    config.Check
		want string
	}{
		{"invalid condition names its index", config.Check{URL: "http://127.0.0.1/", Conditions: []string{"[STATUS] == 200", "[STATUS] = 200"}},
			`check "web": conditions[1]: invalid condition "[STATUS] = 200": unknown operator "=" (want one of ==, !=, <, >, <=, >=)`},
		{"unknown placeholder", config.Check{URL: "http://127.0.0.1/", Conditions: []string{"[STATUS_CODE] == 200"}},
			`check "web": conditions[0]: invalid condition "[STATUS_CODE] == 200": unknown placeholder [STATUS_CODE] (want one of [STATUS], [BODY], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [IP])`},
		{"missing url", config.Check{}, `check "web": url: required`},
		{"bad url keeps the password out", config.Check{URL: "ftp://ops:hunter2@host/"}, `check "web": url: must be an http:// or https:// URL`},
		{"bad method", config.Check{URL: "http://127.0.0.1/", Method: "GE T"}, `check "web": method: "GE T" is not an HTTP method`},
		{"bad header name", config.Check{URL: "http://127.0.0.1/", Headers: map[string]config.Secret{"X Token": "v"}}, `check "web": headers: "X Token" is not a header name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name, tc.c.Type = "web", "http"
			_, err := New(tc.c)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestHTTPReusesConnections(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]bool{}
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
	})
	ch, err := New(config.Check{Name: "web", Type: "http", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if r := ch.Check(context.Background()); r.Status != OK {
			t.Fatalf("round %d: %s %q", i, r.Status, r.Message)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 1 {
		t.Errorf("3 rounds used %d connections, want 1", len(remotes))
	}
}
