package sendgridtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServerRejectsWhatSendGridRejects(t *testing.T) {
	const good = `{"personalizations":[{"to":[{"email":"ops@example.jp"}]}],"from":{"email":"a@example.jp"},"subject":"s","content":[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]}`
	cases := []struct {
		name, method, path, auth, ctype, body string
		wantStatus                            int
		wantBody                              string
	}{
		{"valid", "POST", "/v3/mail/send", "Bearer k", "application/json", good, 202, ""},
		{"wrong path", "POST", "/v3/mail", "Bearer k", "application/json", good, 404, "not found"},
		{"wrong method", "PUT", "/v3/mail/send", "Bearer k", "application/json", good, 405, "method not allowed"},
		{"wrong key", "POST", "/v3/mail/send", "Bearer x", "application/json", good, 401, "authorization grant is invalid"},
		{"no bearer", "POST", "/v3/mail/send", "k", "application/json", good, 401, "authorization grant is invalid"},
		{"form content type", "POST", "/v3/mail/send", "Bearer k", "application/x-www-form-urlencoded", good, 415, "Content-Type should be application/json."},
		{"no personalizations", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(good, `[{"to":[{"email":"ops@example.jp"}]}]`, `[]`, 1), 400, `"field":"personalizations"`},
		{"bad to", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(good, "ops@example.jp", "Ops <ops@example.jp>", 1), 400, `"field":"personalizations.0.to.0.email"`},
		{"no from", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(good, `"from":{"email":"a@example.jp"},`, "", 1), 400, `"field":"from.email"`},
		{"no subject", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(good, `"subject":"s",`, "", 1), 400, `"field":"subject"`},
		{"html first", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(strings.Replace(good, "text/plain", "TMP", 1), "text/html", "text/plain", 1), 400, "Content types other than text/plain first"},
		{"empty content", "POST", "/v3/mail/send", "Bearer k", "application/json", strings.Replace(good, `"value":"t"`, `"value":""`, 1), 400, `"field":"content.0"`},
		{"not json", "POST", "/v3/mail/send", "Bearer k", "application/json", "{", 400, "Bad Request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(t, "k")
			req, _ := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(c.body))
			req.Header.Set("Authorization", c.auth)
			req.Header.Set("Content-Type", c.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus || !strings.Contains(string(b), c.wantBody) {
				t.Errorf("answer %d %s, want %d containing %q", resp.StatusCode, b, c.wantStatus, c.wantBody)
			}
			if want := map[bool]int{true: 1, false: 0}[c.wantStatus == 202]; len(s.Accepted()) != want {
				t.Errorf("%d mails accepted, want %d", len(s.Accepted()), want)
			}
		})
	}
}
