package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"backstop/shared/clip"
)

// ErrPermanent marks a delivery that will not succeed by retrying the same
// request (a 4xx other than 429, a bad address, a missing key). Test with
// errors.Is(err, ErrPermanent).
var ErrPermanent = errors.New("permanent delivery failure")

// StatusError is a reply from SendGrid that was not 2xx. Message is
// SendGrid's own error text; the API key never appears in it.
type StatusError struct {
	StatusCode int
	Message    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("sendgrid: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Is makes errors.Is(err, ErrPermanent) true for replies that retrying
// will not change: every 4xx except 429 Too Many Requests.
func (e *StatusError) Is(target error) bool {
	return target == ErrPermanent && e.StatusCode >= 400 && e.StatusCode < 500 && e.StatusCode != http.StatusTooManyRequests
}

// SendGrid sends messages through SendGrid's v3 mail/send API. The zero
// values of the optional fields take defaults. It is safe for concurrent use.
type SendGrid struct {
	APIKey     string
	From       string   // "noreply@example.jp" or "backstop <noreply@example.jp>"
	To         []string // one or more recipients
	Endpoint   string   // default https://api.sendgrid.com
	HTTPClient *http.Client
	// MaxAttempts bounds the tries of one Send (default 4); 1 means no retry.
	MaxAttempts int
	// Backoff is the wait before the second try, doubled for each further
	// try up to 30s (default 1s). A Retry-After reply header wins.
	Backoff time.Duration
}

// maxWait is the longest Send waits between two tries; a longer
// Retry-After ends Send with a transient error, for the caller (the
// outbox) to retry later.
const maxWait = time.Minute

// Send delivers m to every recipient in one request. 2xx is success;
// 429, 5xx and transport errors are retried with backoff (honouring
// Retry-After, in seconds or as an HTTP date) while attempts remain and the
// next try starts before ctx's deadline; other 4xx replies end at once with
// a *StatusError matching ErrPermanent. A nil error means SendGrid accepted
// the mail; a non-nil error not matching ErrPermanent means it may succeed
// later. When a reply is lost after SendGrid accepted the mail, a retry
// sends it twice: SendGrid has no idempotency key.
func (s *SendGrid) Send(ctx context.Context, m Message) error {
	req, err := s.request(m)
	if err != nil {
		return err
	}
	hc := s.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	client := &rest.Client{HTTPClient: hc}
	attempts := s.MaxAttempts
	if attempts <= 0 {
		attempts = 4
	}
	backoff := s.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	for try := 1; ; try++ {
		var wait time.Duration
		resp, err := client.SendWithContext(ctx, req)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("sendgrid: send %q: %w", m.Subject, ctx.Err())
			}
			err = fmt.Errorf("sendgrid: send %q: %w", m.Subject, err)
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return nil
		default:
			se := &StatusError{StatusCode: resp.StatusCode, Message: s.scrub(errorMessage(resp.Body))}
			if errors.Is(se, ErrPermanent) || resp.StatusCode < 400 {
				return se
			}
			err = se
			wait = retryAfter(resp.Headers, time.Now())
		}
		if try >= attempts {
			return fmt.Errorf("after %d attempts: %w", try, err)
		}
		if wait == 0 {
			wait = min(backoff<<(try-1), 30*time.Second)
		}
		if wait > maxWait {
			return fmt.Errorf("retry after %s is too far off: %w", wait, err)
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return fmt.Errorf("next attempt in %s would pass the deadline: %w", wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// request builds the v3 mail/send request with sendgrid-go's helpers.
func (s *SendGrid) request(m Message) (rest.Request, error) {
	if s.APIKey == "" {
		return rest.Request{}, fmt.Errorf("sendgrid: no API key: %w", ErrPermanent)
	}
	from, err := netmail.ParseAddress(s.From)
	if err != nil {
		return rest.Request{}, fmt.Errorf("sendgrid: from address %q: %v: %w", s.From, err, ErrPermanent)
	}
	if len(s.To) == 0 {
		return rest.Request{}, fmt.Errorf("sendgrid: no recipient: %w", ErrPermanent)
	}
	p := sgmail.NewPersonalization()
	for _, to := range s.To {
		a, err := netmail.ParseAddress(to)
		if err != nil {
			return rest.Request{}, fmt.Errorf("sendgrid: to address %q: %v: %w", to, err, ErrPermanent)
		}
		p.AddTos(sgmail.NewEmail(a.Name, a.Address))
	}
	v3 := sgmail.NewV3Mail()
	v3.SetFrom(sgmail.NewEmail(from.Name, from.Address))
	v3.Subject = m.Subject
	v3.AddPersonalizations(p)
	// SendGrid requires text/plain first, then text/html.
	v3.AddContent(sgmail.NewContent("text/plain", m.Text))
	if m.HTML != "" {
		v3.AddContent(sgmail.NewContent("text/html", m.HTML))
	}
	endpoint := strings.TrimRight(s.Endpoint, "/")
	if endpoint == "" {
		endpoint = "https://api.sendgrid.com"
	}
	req := sendgrid.GetRequest(s.APIKey, "/v3/mail/send", endpoint)
	req.Method = rest.Post
	req.Body = sgmail.GetRequestBody(v3)
	return req, nil
}

// scrub removes the API key should a reply ever echo it.
func (s *SendGrid) scrub(msg string) string {
	if s.APIKey == "" {
		return msg
	}
	return strings.ReplaceAll(msg, s.APIKey, "[redacted]")
}

// errorMessage extracts SendGrid's error text from a reply body
// ({"errors":[{"message":..., "field":...}]}), or a short raw excerpt.
func errorMessage(body string) string {
	var r struct {
		Errors []struct {
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &r) == nil && len(r.Errors) > 0 {
		msgs := make([]string, 0, len(r.Errors))
		for _, e := range r.Errors {
			if e.Field != nil && *e.Field != "" {
				msgs = append(msgs, e.Message+" ("+*e.Field+")")
			} else {
				msgs = append(msgs, e.Message)
			}
		}
		return strings.Join(msgs, "; ")
	}
	body = strings.TrimSpace(body)
	body = clip.End(body, 200)
	if body == "" {
		return "(empty reply)"
	}
	return body
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. Zero
// when absent or unreadable.
func retryAfter(h map[string][]string, now time.Time) time.Duration {
	v := http.Header(h).Get("Retry-After")
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
