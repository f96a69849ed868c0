package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"backstop/functions/internal/lambdaenv"
	"backstop/shared/mail"
)

// Config is the function's settings, from its environment:
//
//	STATE_BUCKET         bucket for claims (alerts/sent/) and storm windows (alerts/digest/)   required
//	SENDGRID_SECRET_ARN  Secrets Manager secret holding the SendGrid API key                   required
//	ALERT_TO             recipients, comma-separated                                           required
//	ALERT_FROM           sender, "noreply@example.jp" or "backstop <noreply@example.jp>"       required
//	ALERT_LOCALE         en | ja: CloudWatch alarm mails (events carry their own)              en
//	ALERT_TIMEZONE       IANA zone for alarm mails, e.g. Asia/Tokyo                            UTC
//	DIGEST_THRESHOLD     K: more than K events for one host within the window become a digest; 0 = never   10
//	DIGEST_WINDOW        the sliding window                                                    5m
//	DIGEST_WAIT          how long a digest collects a burst before it is sent                  20s
//	SENDGRID_ENDPOINT    SendGrid API base URL (tests)                                         https://api.sendgrid.com
//	S3_PATH_STYLE        true: path-style S3 requests (S3-compatible servers)                  false
//
// AWS settings are read by NewHandler.
type Config struct {
	Bucket, SecretID string
	To               []string
	From             string
	Locale           string
	Location         *time.Location
	DigestThreshold  int
	DigestWindow     time.Duration
	DigestWait       time.Duration
	SendGridEndpoint string
	S3PathStyle      bool
}

// LoadConfig reads Config through getenv (os.Getenv), naming every
// variable that is missing or invalid.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		Bucket:           getenv("STATE_BUCKET"),
		SecretID:         getenv("SENDGRID_SECRET_ARN"),
		From:             strings.TrimSpace(getenv("ALERT_FROM")),
		Locale:           "en",
		Location:         time.UTC,
		DigestThreshold:  10,
		DigestWindow:     5 * time.Minute,
		DigestWait:       20 * time.Second,
		SendGridEndpoint: getenv("SENDGRID_ENDPOINT"),
	}
	var errs []error
	for _, req := range []struct{ name, v string }{
		{"STATE_BUCKET", c.Bucket}, {"SENDGRID_SECRET_ARN", c.SecretID}, {"ALERT_FROM", c.From},
	} {
		if req.v == "" {
			errs = append(errs, fmt.Errorf("%s: required", req.name))
		}
	}
	for _, to := range strings.Split(getenv("ALERT_TO"), ",") {
		if to = strings.TrimSpace(to); to != "" {
			c.To = append(c.To, to)
		}
	}
	if len(c.To) == 0 {
		errs = append(errs, errors.New("ALERT_TO: required (comma-separated addresses)"))
	}
	switch v := getenv("ALERT_LOCALE"); v {
	case "", "en":
	case "ja":
		c.Locale = "ja"
	default:
		errs = append(errs, fmt.Errorf("ALERT_LOCALE: %q is not en or ja", v))
	}
	if v := getenv("ALERT_TIMEZONE"); v != "" {
		loc, err := time.LoadLocation(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("ALERT_TIMEZONE: %v", err))
		} else {
			c.Location = loc
		}
	}
	if v := getenv("DIGEST_THRESHOLD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("DIGEST_THRESHOLD: %q is not a whole number >= 0", v))
		}
		c.DigestThreshold = n
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"DIGEST_WINDOW", &c.DigestWindow}, {"DIGEST_WAIT", &c.DigestWait}} {
		if v := getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration like 5m", d.name, v))
			}
			*d.to = x
		}
	}
	if v := getenv("S3_PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("S3_PATH_STYLE: %q is not true or false", v))
		}
		c.S3PathStyle = b
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("alert config: %w", err)
	}
	return c, nil
}

// NewHandler builds the handler with AWS clients configured as Lambda
// configures a function: region and the execution role's credentials from
// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN, endpoints from AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL when set. Reading
// them directly, rather than through the SDK's config package with its
// profiles, SSO and STS chains, keeps the bootstrap several MB smaller.
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
		Bucket:   c.Bucket,
		SecretID: c.SecretID,
		Mail: mail.SendGrid{
			From:       c.From,
			To:         c.To,
			Endpoint:   c.SendGridEndpoint,
			HTTPClient: &http.Client{Timeout: 20 * time.Second},
		},
		DigestThreshold: c.DigestThreshold,
		DigestWindow:    c.DigestWindow,
		DigestWait:      c.DigestWait,
		AlarmLocale:     c.Locale,
		Location:        c.Location,
		Log:             log,
	}, nil
}
