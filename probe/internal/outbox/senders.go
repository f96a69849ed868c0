package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"backstop/shared/alert"
	"backstop/shared/atomicfile"
	"backstop/shared/mail"
)

// Interface guards.
var (
	_ Sender = MailSender{}
	_ Sender = DirSender{}
	_ Sender = StoreSender{}
	_ Mailer = (*mail.SendGrid)(nil)
)

// Mailer sends a rendered message; *mail.SendGrid is one.
type Mailer interface {
	Send(ctx context.Context, m mail.Message) error
}

// MailSender renders each event (mail.Render) and sends it with Mailer.
type MailSender struct {
	Mailer Mailer
}

// Send renders ev and mails it; errors keep mail.ErrPermanent visible.
func (s MailSender) Send(ctx context.Context, ev alert.Event) error {
	if err := s.Mailer.Send(ctx, mail.Render(ev)); err != nil {
		return fmt.Errorf("mail %s: %w", ev.DedupKey, err)
	}
	return nil
}

// DirSender "sends" each event as two files in Dir:
// <time>-<check>-<state>-<hash>.json (the event) and the same name with .eml
// (headers and the text body of the rendered mail, UTF-8, readable with any
// pager or mail client). Kind, when set, is added before the hash
// (…-down-reminder-<hash>); the hash is of the dedup key, so two events of
// one check and state in the same second keep both files, while delivering
// the same event again rewrites the same names. Files are written
// atomically. It is the default way, so a demo shows its mails as files.
type DirSender struct {
	Dir  string
	From string   // From header; default backstop@<host>
	To   []string // To header; omitted when empty
}

// Send writes the event's two files.
func (s DirSender) Send(ctx context.Context, ev alert.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("write mail file: %w", err)
	}
	base := stamp(ev.At) + "-" + safeName(ev.Check) + "-" + safeName(string(ev.State))
	if ev.Kind != "" {
		base += "-" + safeName(ev.Kind)
	}
	base += "-" + shortHash(ev.DedupKey, 6)
	data, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return fmt.Errorf("write mail file %s.json: %w", base, err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, base+".json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write mail file: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, base+".eml"), s.eml(ev), 0o600); err != nil {
		return fmt.Errorf("write mail file: %w", err)
	}
	return nil
}

func (s DirSender) eml(ev alert.Event) []byte {
	m := mail.Render(ev)
	from := s.From
	if from == "" {
		from = "backstop@" + ev.Host
	}
	var b strings.Builder
	b.WriteString("From: " + from + "\r\n")
	if len(s.To) > 0 {
		b.WriteString("To: " + strings.Join(s.To, ", ") + "\r\n")
	}
	b.WriteString("Subject: " + oneLine(m.Subject) + "\r\n")
	b.WriteString("Date: " + ev.At.Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: <" + shortHash(ev.DedupKey, 16) + "@backstop>\r\n")
	b.WriteString("X-Backstop-Dedup-Key: " + oneLine(ev.DedupKey) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.Text, "\n", "\r\n"))
	return []byte(b.String())
}

// ObjectWriter stores one object; the local DirStore is one, the S3 store
// (a later change) another. Put of the same key again replaces it.
type ObjectWriter interface {
	Put(ctx context.Context, key string, data []byte) error
}

// StoreSender writes each event as JSON to
// [<Prefix>/]<host>/events/<time>-<id>.json in Store, where the alert
// function is notified and mails it (de-duplicating by DedupKey). The id
// derives from the DedupKey, so a retried delivery rewrites the same key.
type StoreSender struct {
	Store  ObjectWriter
	Prefix string
}

// Send puts the event.
func (s StoreSender) Send(ctx context.Context, ev alert.Event) error {
	if ev.Host == "" {
		return fmt.Errorf("store event %s: no host: %w", ev.DedupKey, mail.ErrPermanent)
	}
	data, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return fmt.Errorf("store event %s: %w", ev.DedupKey, err)
	}
	key := EventKey(s.Prefix, ev)
	if err := s.Store.Put(ctx, key, append(data, '\n')); err != nil {
		return fmt.Errorf("store event %s: %w", key, err)
	}
	return nil
}

// EventKey is the store key of an event:
// [<prefix>/]<host>/events/<YYYYMMDDTHHMMSSZ>-<12 hex of the DedupKey>.json.
func EventKey(prefix string, ev alert.Event) string {
	return path.Join(prefix, ev.Host, "events", stamp(ev.At)+"-"+shortHash(ev.DedupKey, 12)+".json")
}

// DirStore is an ObjectWriter over a local directory (a NAS mount or the
// demo): key a/b/c.json is the file <Root>/a/b/c.json, written atomically.
type DirStore struct {
	Root string
}

// Put writes data under key, creating directories (0700) as needed. Keys
// that would leave Root (absolute, "..") are refused.
func (d DirStore) Put(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rel := filepath.FromSlash(key)
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("put %q in %s: key leaves the store", key, d.Root)
	}
	p := filepath.Join(d.Root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	if err := atomicfile.Write(p, data, 0o600); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

func shortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// safeName keeps letters, digits, '.', '_' and '-' of a file name part.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		default:
			return '_'
		}
	}, s)
	if s == "" || strings.Trim(s, ".") == "" {
		return "_"
	}
	return s
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
