package sendgridtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reply is a scripted answer to a valid request.
type Reply struct {
	Status     int    // e.g. 500, 429
	RetryAfter string // Retry-After header, if any
	Body       string // default: SendGrid-style error JSON for the status
}

// Mail is one accepted message, as SendGrid would deliver it.
type Mail struct {
	From    string
	To      []string
	Subject string
	Text    string
	HTML    string
}

// Request is what the stand-in saw of one call.
type Request struct {
	At     time.Time
	Status int // what it answered
}

// Server is a strict stand-in for POST /v3/mail/send. It checks what
// SendGrid checks (method, path, Bearer key, JSON content type, the body's
// personalizations/from/subject/content, text/plain before text/html) and
// answers 400/401/404/405/415 with SendGrid's error JSON when something is
// wrong. Valid requests get the scripted replies in order, then 202.
type Server struct {
	URL string

	key string
	mu  sync.Mutex
	rep []Reply
	acc []Mail
	req []Request
}

// New starts the stand-in on 127.0.0.1, accepting only the API key key;
// it is closed by t.Cleanup.
func New(t testing.TB, key string, script ...Reply) *Server {
	t.Helper()
	s := &Server{key: key, rep: script}
	hs := httptest.NewServer(http.HandlerFunc(s.serve)) // listens on 127.0.0.1
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// Accepted returns the mails answered 202, in order.
func (s *Server) Accepted() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.acc...)
}

// Requests returns every request seen, in order, with the status answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.req...)
}

// Script appends replies for the next valid requests.
func (s *Server) Script(r ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep = append(s.rep, r...)
}

type sgError struct {
	Message string  `json:"message"`
	Field   *string `json:"field"`
	Help    *string `json:"help"`
}

func (s *Server) answer(w http.ResponseWriter, status int, hdr map[string]string, body string, m *Mail) {
	s.mu.Lock()
	s.req = append(s.req, Request{At: time.Now(), Status: status})
	if m != nil {
		s.acc = append(s.acc, *m)
	}
	s.mu.Unlock()
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	if body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func errJSON(msg, field string) string {
	e := sgError{Message: msg}
	if field != "" {
		e.Field = &field
	}
	b, _ := json.Marshal(map[string][]sgError{"errors": {e}})
	return string(b)
}

type address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

type body struct {
	Personalizations []struct {
		To      []address `json:"to"`
		Subject string    `json:"subject"`
	} `json:"personalizations"`
	From    *address `json:"from"`
	Subject string   `json:"subject"`
	Content []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v3/mail/send" {
		s.answer(w, http.StatusNotFound, nil, errJSON("not found", ""), nil)
		return
	}
	if r.Method != http.MethodPost {
		s.answer(w, http.StatusMethodNotAllowed, nil, errJSON("method not allowed", ""), nil)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.key {
		s.answer(w, http.StatusUnauthorized, nil, errJSON("The provided authorization grant is invalid, expired, or revoked", ""), nil)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.answer(w, http.StatusUnsupportedMediaType, nil, errJSON("Content-Type should be application/json.", ""), nil)
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		s.answer(w, http.StatusBadRequest, nil, errJSON("Bad Request", ""), nil)
		return
	}
	m, field, msg := validate(raw)
	if msg != "" {
		s.answer(w, http.StatusBadRequest, nil, errJSON(msg, field), nil)
		return
	}
	s.mu.Lock()
	var rep *Reply
	if len(s.rep) > 0 {
		rep = &s.rep[0]
		s.rep = s.rep[1:]
	}
	s.mu.Unlock()
	if rep != nil && (rep.Status < 200 || rep.Status > 299) {
		hdr := map[string]string{}
		if rep.RetryAfter != "" {
			hdr["Retry-After"] = rep.RetryAfter
		}
		b := rep.Body
		if b == "" {
			b = errJSON(http.StatusText(rep.Status), "")
		}
		s.answer(w, rep.Status, hdr, b, nil)
		return
	}
	s.answer(w, http.StatusAccepted, nil, "", m)
}

// validate checks the body as SendGrid does and returns the mail, or the
// offending field and SendGrid's message.
func validate(raw []byte) (*Mail, string, string) {
	var b body
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&b); err != nil {
		return nil, "", "Bad Request"
	}
	if len(b.Personalizations) == 0 {
		return nil, "personalizations", "The personalizations field is required and must have at least one personalization."
	}
	m := &Mail{Subject: b.Subject}
	for i, p := range b.Personalizations {
		if len(p.To) == 0 {
			return nil, fmt.Sprintf("personalizations.%d.to", i), "The to array is required for all personalization objects, and must have at least one email object with a valid email address."
		}
		for j, a := range p.To {
			if _, err := mail.ParseAddress(a.Email); err != nil || strings.ContainsAny(a.Email, "<> ") {
				return nil, fmt.Sprintf("personalizations.%d.to.%d.email", i, j), "Does not contain a valid address."
			}
			m.To = append(m.To, a.Email)
		}
		if p.Subject == "" && b.Subject == "" {
			return nil, "subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined."
		}
	}
	if b.From == nil || b.From.Email == "" {
		return nil, "from.email", "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter."
	}
	if _, err := mail.ParseAddress(b.From.Email); err != nil || strings.ContainsAny(b.From.Email, "<> ") {
		return nil, "from.email", "The from email does not contain a valid address."
	}
	m.From = b.From.Email
	if len(b.Content) == 0 {
		return nil, "content", "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block."
	}
	for i, c := range b.Content {
		if c.Type == "" || c.Value == "" {
			return nil, fmt.Sprintf("content.%d", i), "The content value must be a string at least one character in length."
		}
		switch {
		case c.Type == "text/plain" && i == 0:
			m.Text = c.Value
		case c.Type == "text/html" && i > 0 && m.Text != "" && m.HTML == "":
			m.HTML = c.Value
		case c.Type == "text/plain":
			return nil, "content", "If present, text/plain content must be first, followed by text/html."
		default:
			return nil, fmt.Sprintf("content.%d.type", i), "Content types other than text/plain first and then text/html are not accepted here."
		}
	}
	return m, "", ""
}
