// Package lambdaenv configures AWS clients from the environment Lambda gives
// a function, without the SDK's config package (its profiles, SSO and STS
// chains add megabytes to every bootstrap and nothing a function uses).
package lambdaenv

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Getenv reads one environment variable (os.Getenv, or a map in tests).
type Getenv func(string) string

// AWSConfig returns the region (AWS_REGION, else AWS_DEFAULT_REGION) and
// the execution role's credentials (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), as Lambda sets them.
func AWSConfig(getenv Getenv) (aws.Config, error) {
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		return aws.Config{}, errors.New("AWS_REGION: not set (Lambda sets it)")
	}
	if getenv("AWS_ACCESS_KEY_ID") == "" || getenv("AWS_SECRET_ACCESS_KEY") == "" {
		return aws.Config{}, errors.New("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: not set (Lambda sets them from the execution role)")
	}
	return aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN")),
	}, nil
}

// Endpoint is the endpoint override for service ("S3", "SECRETS_MANAGER"):
// AWS_ENDPOINT_URL_<service>, else AWS_ENDPOINT_URL, else nil (AWS's own),
// the SDK's documented variables.
func Endpoint(getenv Getenv, service string) *string {
	for _, k := range []string{"AWS_ENDPOINT_URL_" + service, "AWS_ENDPOINT_URL"} {
		if v := getenv(k); v != "" {
			return aws.String(v)
		}
	}
	return nil
}
