package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/mail"
)

// apiKey returns the SendGrid API key, read from Secrets Manager on first
// use and cached in the Handler (so across warm invocations). refresh
// forces a new read. The secret is the key itself, or a JSON object with
// an "api_key" field.
func (h *Handler) apiKey(ctx context.Context, refresh bool) (string, error) {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if h.key != "" && !refresh {
		return h.key, nil
	}
	out, err := h.Secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(h.SecretID)})
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", h.SecretID, err)
	}
	key := strings.TrimSpace(aws.ToString(out.SecretString))
	if strings.HasPrefix(key, "{") {
		var v struct {
			APIKey string `json:"api_key"`
		}
		if err := json.Unmarshal([]byte(key), &v); err != nil {
			// The error would quote the secret: say only where it failed.
			return "", fmt.Errorf("secret %s: a JSON object that does not decode: %w", h.SecretID, mail.ErrPermanent)
		}
		key = strings.TrimSpace(v.APIKey)
	}
	if key == "" {
		return "", fmt.Errorf("secret %s: no SendGrid API key in it (the key, or {\"api_key\": ...}): %w", h.SecretID, mail.ErrPermanent)
	}
	h.key = key
	return key, nil
}

// send mails m with the cached key. On 401 it reads the secret again once
// (the key may have been rotated) and, when it holds another key, sends
// with that one. Retries of 429/5xx are the mailer's, within ctx's
// deadline.
// send mails m to the event's own recipients when it names any (to), else
// to the configured ones.
func (h *Handler) send(ctx context.Context, m mail.Message, to []string) error {
	key, err := h.apiKey(ctx, false)
	if err != nil {
		return err
	}
	err = h.sendWith(ctx, key, m, to)
	var se *mail.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		return err
	}
	fresh, kerr := h.apiKey(ctx, true)
	if kerr != nil {
		return fmt.Errorf("%w; re-reading the key: %w", err, kerr)
	}
	if fresh == key {
		return fmt.Errorf("%w (secret %s still holds the key SendGrid rejected)", err, h.SecretID)
	}
	h.logger().Info("SendGrid rejected the cached API key; sending with the key now in the secret", "secret", h.SecretID)
	return h.sendWith(ctx, fresh, m, to)
}

func (h *Handler) sendWith(ctx context.Context, key string, m mail.Message, to []string) error {
	if len(to) == 0 {
		to = h.Mail.To
	}
	s := mail.SendGrid{
		APIKey:      key,
		From:        h.Mail.From,
		To:          to,
		Endpoint:    h.Mail.Endpoint,
		HTTPClient:  h.Mail.HTTPClient,
		MaxAttempts: h.Mail.MaxAttempts,
		Backoff:     h.Mail.Backoff,
	}
	return s.Send(ctx, m)
}
