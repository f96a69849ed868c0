package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/lambdaenv"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aws, err := lambdaenv.AWSConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "offsite: AWS config:", err)
		os.Exit(1)
	}
	endpoint := lambdaenv.Endpoint(os.Getenv, "S3")
	src := s3.NewFromConfig(aws, func(o *s3.Options) { o.UsePathStyle, o.BaseEndpoint = cfg.PathStyle, endpoint })
	vault := s3.NewFromConfig(aws, func(o *s3.Options) {
		o.UsePathStyle, o.BaseEndpoint = cfg.PathStyle, endpoint
		if cfg.VaultRegion != "" {
			o.Region = cfg.VaultRegion
		}
	})
	h, err := NewHandler(cfg, src, vault, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
