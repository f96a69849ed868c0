package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/lambdaenv"
)

func main() {
	cfg, env, err := configFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uptime: config:", err)
		os.Exit(1)
	}
	aws, err := lambdaenv.AWSConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uptime: AWS config:", err)
		os.Exit(1)
	}
	cfg.S3 = s3.NewFromConfig(aws, func(o *s3.Options) {
		o.UsePathStyle, o.BaseEndpoint = env.PathStyle, lambdaenv.Endpoint(os.Getenv, "S3")
	})
	cfg.Metrics, cfg.Log = os.Stdout, os.Stderr
	h, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uptime:", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
