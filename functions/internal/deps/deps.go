// Package deps pins the Lambda functions' modules in go.mod until their code imports them.
package deps

import (
	_ "github.com/aws/aws-lambda-go/events"
	_ "github.com/aws/aws-lambda-go/lambda"
	_ "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)
