package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// request is the payload's controls; the payload itself is echoed whole.
type request struct {
	Fail   string `json:"fail"`
	Sleep  string `json:"sleep"`
	Exit   *int   `json:"exit"`
	Bytes  int    `json:"bytes"`
	Post   string `json:"post"`
	Secret string `json:"secret"`
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
	PostStatus   int             `json:"post_status,omitempty"`
	PostBody     string          `json:"post_body,omitempty"`
	SecretValue  string          `json:"secret_value,omitempty"`
}

type echoError struct{ msg string }

func (e *echoError) Error() string { return e.msg }

type handler struct {
	invocations int
	lastID      string
	secrets     *secretsmanager.Client
}

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
	prev := h.lastID
	h.lastID = r.RequestID
	if req.Post != "" {
		var err error
		if r.PostStatus, r.PostBody, err = post(ctx, req.Post, r.RequestID, prev); err != nil {
			return nil, err
		}
	}
	if req.Secret != "" {
		out, err := h.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(req.Secret)})
		if err != nil {
			return nil, fmt.Errorf("get secret %s: %w", req.Secret, err)
		}
		r.SecretValue = aws.ToString(out.SecretString)
	}
	return r, nil
}

func main() {
	if msg := os.Getenv("ECHOFN_INIT_FAIL"); msg != "" {
		log.Fatalf("echofn: init: %s", msg)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatalf("echofn: load AWS config: %v", err)
	}
	lambda.Start((&handler{secrets: secretsmanager.NewFromConfig(cfg)}).Handle)
}

// post makes a Runtime API call the runtime client never would, and
// returns the status and body the API answered:
//
//	"unknown"    a response for a request id the service never issued
//	"previous"   a response for the previous, already answered invocation
//	"bad-error"  an error for this invocation whose body is not JSON
func post(ctx context.Context, what, id, prev string) (int, string, error) {
	base := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	var url, body string
	switch what {
	case "unknown":
		url, body = base+"00000000-0000-4000-8000-000000000000/response", `"hello"`
	case "previous":
		url, body = base+prev+"/response", `"again"`
	case "bad-error":
		url, body = base+id+"/error", "not json"
	default:
		return 0, "", fmt.Errorf("post %q: unknown", what)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}
