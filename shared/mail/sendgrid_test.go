package mail

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"backstop/shared/mail/sendgridtest"
)

const key = "SG.test-key-0123456789"

func sender(url string) *SendGrid {
	return &SendGrid{
		APIKey: key, From: "backstop <noreply@psytech.jp>", To: []string{"ops@example.jp", "oncall@example.jp"},
		Endpoint: url, HTTPClient: &http.Client{Timeout: 10 * time.Second}, Backoff: 20 * time.Millisecond,
	}
}

func statuses(rs []sendgridtest.Request) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.Status)
	}
	return out
}

func TestSendGridSend(t *testing.T) {
	msg := Render(events()["down"])
	cases := []struct {
		name       string
		script     []sendgridtest.Reply
		key        string
		attempts   int
		wantStatus []int
		wantErr    string // substring; "" = success
		permanent  bool
	}{
		{"accepted", nil, key, 0, []int{202}, "", false},
		{"500 twice then accepted", []sendgridtest.Reply{{Status: 500}, {Status: 500}}, key, 0, []int{500, 500, 202}, "", false},
		{"429 then accepted", []sendgridtest.Reply{{Status: 429}}, key, 0, []int{429, 202}, "", false},
		{"wrong key is permanent, not retried", nil, "SG.wrong-key", 0,
			[]int{401}, "sendgrid: 401 Unauthorized: The provided authorization grant is invalid, expired, or revoked", true},
		{"400 is permanent", []sendgridtest.Reply{{Status: 400, Body: `{"errors":[{"message":"Invalid from","field":"from.email","help":null}]}`}}, key, 0,
			[]int{400}, "sendgrid: 400 Bad Request: Invalid from (from.email)", true},
		{"attempts exhausted", []sendgridtest.Reply{{Status: 503}, {Status: 503}}, key, 2,
			[]int{503, 503}, "after 2 attempts: sendgrid: 503 Service Unavailable: Service Unavailable", false},
		{"non-JSON error body", []sendgridtest.Reply{{Status: 502, Body: "<html>bad gateway</html>"}}, key, 1,
			[]int{502}, "sendgrid: 502 Bad Gateway: <html>bad gateway</html>", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sendgridtest.New(t, key, c.script...)
			s := sender(srv.URL)
			s.APIKey, s.MaxAttempts = c.key, c.attempts
			err := s.Send(context.Background(), msg)
			if got := statuses(srv.Requests()); !reflect.DeepEqual(got, c.wantStatus) {
				t.Errorf("stand-in answered %v, want %v", got, c.wantStatus)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				acc := srv.Accepted()
				want := sendgridtest.Mail{From: "noreply@psytech.jp", To: []string{"ops@example.jp", "oncall@example.jp"}, Subject: msg.Subject, Text: msg.Text, HTML: msg.HTML}
				if len(acc) != 1 || !reflect.DeepEqual(acc[0], want) {
					t.Errorf("accepted %+v, want exactly %+v", acc, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, c.wantErr)
			}
			if errors.Is(err, ErrPermanent) != c.permanent {
				t.Errorf("errors.Is(%v, ErrPermanent) = %v, want %v", err, !c.permanent, c.permanent)
			}
			if strings.Contains(err.Error(), c.key) {
				t.Errorf("error reveals the API key: %v", err)
			}
			if n := len(srv.Accepted()); n != 0 {
				t.Errorf("%d mails accepted, want none", n)
			}
		})
	}
}

func TestSendGridHonoursRetryAfter(t *testing.T) {
	cases := []struct {
		name  string
		after func() string
	}{
		{"seconds", func() string { return "1" }},
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sendgridtest.New(t, key)
			srv.Script(sendgridtest.Reply{Status: 429, RetryAfter: c.after()})
			if err := sender(srv.URL).Send(context.Background(), Render(events()["up"])); err != nil {
				t.Fatalf("Send: %v", err)
			}
			rs := srv.Requests()
			if got := statuses(rs); !reflect.DeepEqual(got, []int{429, 202}) {
				t.Fatalf("stand-in answered %v, want [429 202]", got)
			}
			// A lower bound only: the backoff alone (20ms) would retry far sooner.
			if gap := rs[1].At.Sub(rs[0].At); gap < 900*time.Millisecond {
				t.Errorf("retried %v after a 429 with Retry-After, want at least ~1s", gap)
			}
		})
	}
}

func TestSendGridStopsAtDeadline(t *testing.T) {
	cases := []struct {
		name    string
		reply   sendgridtest.Reply
		backoff time.Duration
		wantErr string
	}{
		{"retry-after past the deadline", sendgridtest.Reply{Status: 503, RetryAfter: "30"}, 0, "next attempt in 30s would pass the deadline: sendgrid: 503"},
		{"backoff past the deadline", sendgridtest.Reply{Status: 500}, 5 * time.Second, "next attempt in 5s would pass the deadline: sendgrid: 500"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sendgridtest.New(t, key)
			srv.Script(c.reply, c.reply, c.reply)
			s := sender(srv.URL)
			s.Backoff, s.MaxAttempts = c.backoff, 10
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := s.Send(ctx, Render(events()["down"]))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || errors.Is(err, ErrPermanent) {
				t.Fatalf("error %v, want a transient one containing %q", err, c.wantErr)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("%d requests, want 1: no retry that cannot finish in time", n)
			}
		})
	}
}

func TestSendGridCancelledWhileWaiting(t *testing.T) {
	srv := sendgridtest.New(t, key, sendgridtest.Reply{Status: 500}, sendgridtest.Reply{Status: 500})
	s := sender(srv.URL)
	s.Backoff = 20 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(srv.Requests()) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	err := s.Send(ctx, Render(events()["down"]))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sendgrid: 500") {
		t.Fatalf("error %v, want the 500 and context.Canceled", err)
	}
}

func TestSendGridConfigErrors(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(*SendGrid)
		wantErr string
	}{
		{"no key", func(s *SendGrid) { s.APIKey = "" }, "sendgrid: no API key"},
		{"no recipient", func(s *SendGrid) { s.To = nil }, "sendgrid: no recipient"},
		{"bad from", func(s *SendGrid) { s.From = "not an address" }, `sendgrid: from address "not an address"`},
		{"bad to", func(s *SendGrid) { s.To = []string{"ops@"} }, `sendgrid: to address "ops@"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sendgridtest.New(t, key)
			s := sender(srv.URL)
			c.edit(s)
			err := s.Send(context.Background(), Render(events()["down"]))
			if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) || !errors.Is(err, ErrPermanent) {
				t.Errorf("error %v, want a permanent one starting %q", err, c.wantErr)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}

func TestSendGridUnreachableIsTransient(t *testing.T) {
	s := sender("http://127.0.0.1:1") // nothing listens on port 1
	s.MaxAttempts = 2
	err := s.Send(context.Background(), Render(events()["down"]))
	if err == nil || errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %v, want a transient connection refused", err)
	}
	if strings.Contains(err.Error(), key) {
		t.Errorf("error reveals the API key: %v", err)
	}
}
