package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/shared/command"
)

// commandKey returns the HMAC key commands are signed with, read from
// Secrets Manager on first use and cached in the Handler (so across warm
// invocations; a rotated key is picked up by the next cold start). The
// secret string is the key as the probe's key file holds it
// (command.ParseKey: surrounding whitespace trimmed). Errors never quote
// the secret.
func (h *Handler) commandKey(ctx context.Context) ([]byte, error) {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if h.key != nil {
		return h.key, nil
	}
	out, err := h.Secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(h.SecretID)})
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", h.SecretID, err)
	}
	key, err := command.ParseKey([]byte(aws.ToString(out.SecretString)))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", h.SecretID, err)
	}
	h.key = key
	return key, nil
}
