package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// request is the payload's controls; the payload itself is echoed whole.
type request struct {
	Fail  string `json:"fail"`
	Sleep string `json:"sleep"`
	Exit  *int   `json:"exit"`
	Bytes int    `json:"bytes"`
}

// Response is what the function answers.
type Response struct {
	Echo         json.RawMessage `json:"echo"`
	RequestID    string          `json:"request_id"`
	FunctionARN  string          `json:"function_arn"`
	DeadlineMS   int64           `json:"deadline_ms"` // ctx's deadline, Unix ms
	FunctionName string          `json:"function_name"`
	Region       string          `json:"region"`
	Handler      string          `json:"handler"`
	PID          int             `json:"pid"`
	Invocation   int             `json:"invocation"` // 1 on a cold process, 2.. when warm
	Padding      string          `json:"padding,omitempty"`
}

type echoError struct{ msg string }

func (e *echoError) Error() string { return e.msg }

type handler struct{ invocations int }

func (h *handler) Handle(ctx context.Context, payload json.RawMessage) (*Response, error) {
	h.invocations++
	var req request
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	if req.Sleep != "" {
		d, err := time.ParseDuration(req.Sleep)
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
	}
	if req.Exit != nil {
		log.Printf("echofn: exiting with %d", *req.Exit)
		os.Exit(*req.Exit)
	}
	if req.Fail != "" {
		return nil, &echoError{"echofn failed: " + req.Fail}
	}
	r := &Response{
		Echo:         payload,
		FunctionName: lambdacontext.FunctionName,
		Region:       os.Getenv("AWS_REGION"),
		Handler:      os.Getenv("_HANDLER"),
		PID:          os.Getpid(),
		Invocation:   h.invocations,
		Padding:      strings.Repeat("x", req.Bytes),
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		r.RequestID, r.FunctionARN = lc.AwsRequestID, lc.InvokedFunctionArn
	}
	if d, ok := ctx.Deadline(); ok {
		r.DeadlineMS = d.UnixMilli()
	}
	return r, nil
}

func main() {
	if msg := os.Getenv("ECHOFN_INIT_FAIL"); msg != "" {
		log.Fatalf("echofn: init: %s", msg)
	}
	lambda.Start((&handler{}).Handle)
}
