package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aws, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "offsite: AWS config:", err)
		os.Exit(1)
	}
	src := s3.NewFromConfig(aws, func(o *s3.Options) { o.UsePathStyle = cfg.PathStyle })
	vault := s3.NewFromConfig(aws, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
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
