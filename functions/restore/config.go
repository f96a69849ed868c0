package main

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/functions/internal/lambdaenv"
)

// Config is the function's settings, from its environment:
//
//	BUCKET                  the backstop bucket: <host>/snapshots/, <host>/commands/, ...   required
//	HOSTS                   the hosts an operator may act on, comma-separated               required
//	COMMAND_KEY_SECRET_ARN  Secrets Manager secret holding the command HMAC key             required
//	REQUIRE_VAULT           true: restore only snapshots with a vault copy                  true
//	KEY_PREFIX              the probe's store.s3.prefix, when it sets one                   ""
//	S3_PATH_STYLE           true: path-style S3 requests (S3-compatible servers)            false
//
// AWS settings are read by NewHandler.
type Config struct {
	Bucket       string
	Hosts        []string
	SecretID     string
	RequireVault bool
	KeyPrefix    string
	S3PathStyle  bool
}

// hostRE is what a host name (an S3 prefix) may look like.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// LoadConfig reads Config through getenv (os.Getenv), naming every
// variable that is missing or invalid.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		Bucket:       strings.TrimSpace(getenv("BUCKET")),
		SecretID:     strings.TrimSpace(getenv("COMMAND_KEY_SECRET_ARN")),
		KeyPrefix:    strings.Trim(strings.TrimSpace(getenv("KEY_PREFIX")), "/"),
		RequireVault: true,
	}
	var errs []error
	for _, req := range []struct{ name, v string }{
		{"BUCKET", c.Bucket}, {"COMMAND_KEY_SECRET_ARN", c.SecretID},
	} {
		if req.v == "" {
			errs = append(errs, fmt.Errorf("%s: required", req.name))
		}
	}
	for _, h := range strings.Split(getenv("HOSTS"), ",") {
		switch h = strings.TrimSpace(h); {
		case h == "":
		case !hostRE.MatchString(h):
			errs = append(errs, fmt.Errorf("HOSTS: %q is not a host name (letters, digits, . _ -)", h))
		default:
			c.Hosts = append(c.Hosts, h)
		}
	}
	if strings.TrimSpace(strings.ReplaceAll(getenv("HOSTS"), ",", "")) == "" {
		errs = append(errs, errors.New("HOSTS: required (comma-separated host names, as in the probe's config)"))
	}
	for _, b := range []struct {
		name string
		to   *bool
	}{{"REQUIRE_VAULT", &c.RequireVault}, {"S3_PATH_STYLE", &c.S3PathStyle}} {
		if v := strings.TrimSpace(getenv(b.name)); v != "" {
			x, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not true or false", b.name, v))
			}
			*b.to = x
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("restore config: %w", err)
	}
	return c, nil
}

// NewHandler builds the handler with AWS clients configured as Lambda
// configures a function: region and the execution role's credentials from
// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN, endpoints from AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL when set (as the
// alert function does, to keep the bootstrap small).
func NewHandler(getenv func(string) string, c Config, log *slog.Logger) (*Handler, error) {
	awsCfg, err := lambdaenv.AWSConfig(getenv)
	if err != nil {
		return nil, err
	}
	endpoint := func(service string) *string { return lambdaenv.Endpoint(getenv, service) }
	return &Handler{
		S3: s3.NewFromConfig(awsCfg, func(o *s3.Options) {
			o.UsePathStyle, o.BaseEndpoint = c.S3PathStyle, endpoint("S3")
		}),
		Secrets: secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
			o.BaseEndpoint = endpoint("SECRETS_MANAGER")
		}),
		Bucket:       c.Bucket,
		KeyPrefix:    c.KeyPrefix,
		Hosts:        c.Hosts,
		SecretID:     c.SecretID,
		RequireVault: c.RequireVault,
		Log:          log,
	}, nil
}
