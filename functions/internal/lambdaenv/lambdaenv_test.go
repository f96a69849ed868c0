package lambdaenv

import (
	"context"
	"strings"
	"testing"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestAWSConfig(t *testing.T) {
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "tok"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range creds {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name, region, err string
		env               map[string]string
	}{
		{"AWS_REGION", "ap-northeast-1", "", with(map[string]string{"AWS_REGION": "ap-northeast-1", "AWS_DEFAULT_REGION": "us-east-1"})},
		{"default region", "us-east-1", "", with(map[string]string{"AWS_DEFAULT_REGION": "us-east-1"})},
		{"no region", "", "AWS_REGION: not set", creds},
		{"no credentials", "", "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: not set", map[string]string{"AWS_REGION": "us-east-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := AWSConfig(env(c.env))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || cfg.Region != c.region {
				t.Fatalf("region %q, %v; want %q", cfg.Region, err, c.region)
			}
			got, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil || got.AccessKeyID != "AKID" || got.SecretAccessKey != "secret" || got.SessionToken != "tok" {
				t.Errorf("credentials = %+v, %v", got, err)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"service wins", map[string]string{"AWS_ENDPOINT_URL_S3": "http://s3", "AWS_ENDPOINT_URL": "http://all"}, "http://s3"},
		{"general", map[string]string{"AWS_ENDPOINT_URL": "http://all"}, "http://all"},
		{"none", map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://sm"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Endpoint(env(c.env), "S3")
			if (got == nil) != (c.want == "") || (got != nil && *got != c.want) {
				t.Errorf("Endpoint = %v, want %q", got, c.want)
			}
		})
	}
}
