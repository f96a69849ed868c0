package testenv_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"backstop/shared/testenv"
)

func TestMotoSecret(t *testing.T) {
	m := testenv.Moto(t)
	if !strings.HasPrefix(m.Endpoint, "http://127.0.0.1:") || m.Region != "us-east-1" {
		t.Fatalf("endpoint %q region %q: want loopback, us-east-1", m.Endpoint, m.Region)
	}
	arn := m.CreateSecret(t, "backstop/sendgrid", "SG.key-1")
	if !strings.HasPrefix(arn, "arn:aws:secretsmanager:us-east-1:") || !strings.Contains(arn, ":secret:backstop/sendgrid") {
		t.Errorf("arn = %q, want a us-east-1 secret ARN for backstop/sendgrid", arn)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sm := m.SecretsManager()
	for _, tc := range []struct {
		name, id string
	}{
		{"by name", "backstop/sendgrid"},
		{"by ARN", arn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(tc.id)})
			if err != nil {
				t.Fatalf("get secret %s: %v", tc.id, err)
			}
			if got := aws.ToString(out.SecretString); got != "SG.key-1" {
				t.Errorf("secret value = %q, want SG.key-1", got)
			}
		})
	}

	t.Run("rotated value", func(t *testing.T) {
		if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: aws.String(arn), SecretString: aws.String("SG.key-2"),
		}); err != nil {
			t.Fatalf("put secret value: %v", err)
		}
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
		if err != nil {
			t.Fatalf("get secret: %v", err)
		}
		if got := aws.ToString(out.SecretString); got != "SG.key-2" {
			t.Errorf("after rotation secret value = %q, want SG.key-2", got)
		}
	})

	t.Run("missing secret", func(t *testing.T) {
		_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("backstop/nope")})
		var nf *smtypes.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Fatalf("get missing secret: err = %v, want ResourceNotFoundException", err)
		}
	})
}
