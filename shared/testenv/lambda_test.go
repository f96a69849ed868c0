package testenv_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"backstop/shared/testenv"
)

const echofnPkg = "backstop/shared/testenv/images/echofn"

// echoResponse is echofn's answer.
type echoResponse struct {
	Echo         json.RawMessage `json:"echo"`
	RequestID    string          `json:"request_id"`
	FunctionARN  string          `json:"function_arn"`
	DeadlineMS   int64           `json:"deadline_ms"`
	FunctionName string          `json:"function_name"`
	Region       string          `json:"region"`
	Handler      string          `json:"handler"`
	PID          int             `json:"pid"`
	Invocation   int             `json:"invocation"`
	PostStatus   int             `json:"post_status"`
	PostBody     string          `json:"post_body"`
	SecretValue  string          `json:"secret_value"`
}

func decodeEcho(t *testing.T, raw []byte) echoResponse {
	t.Helper()
	var r echoResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("echofn response %q: %v", raw, err)
	}
	return r
}

// invokeOK invokes and fails the test on a function error.
func invokeOK(t *testing.T, l *testenv.Lambda, payload string) echoResponse {
	t.Helper()
	raw, fe := l.Invoke(t, []byte(payload))
	if fe != nil {
		t.Fatalf("invoke %s: function error %s: %s\nlogs:\n%s", payload, fe.ErrorType, fe.ErrorMessage, l.Logs())
	}
	return decodeEcho(t, raw)
}

func TestLambdaInvoke(t *testing.T) {
	bin := testenv.BuildBootstrap(t, echofnPkg)
	if again := testenv.BuildBootstrap(t, echofnPkg); again != bin {
		t.Errorf("second BuildBootstrap = %s, want the cached %s", again, bin)
	}
	l := testenv.StartLambda(t, bin, testenv.LambdaOptions{
		FunctionName: "uptime-test",
		Timeout:      7 * time.Second,
		Env:          map[string]string{"AWS_REGION": "ap-northeast-1"},
	})

	// The process started with the Lambda: its init ends with the first
	// GET /next, before any invocation.
	if cold := l.ColdStart(); cold <= 0 {
		t.Fatalf("ColdStart() = %s, want > 0 (process start to first GET /next)\nlogs:\n%s", cold, l.Logs())
	}

	before := time.Now()
	res := <-l.InvokeAsync([]byte(`{"msg":"hello"}`))
	after := time.Now()
	if res.Err != nil || res.FnErr != nil {
		t.Fatalf("invoke: err %v, function error %v", res.Err, res.FnErr)
	}
	first := decodeEcho(t, res.Response)

	t.Run("response", func(t *testing.T) {
		if string(first.Echo) != `{"msg":"hello"}` {
			t.Errorf("echo = %s, want the payload", first.Echo)
		}
		for _, c := range []struct{ name, got, want string }{
			{"request id (Lambda-Runtime-Aws-Request-Id)", first.RequestID, res.RequestID},
			{"function ARN (Lambda-Runtime-Invoked-Function-Arn)", first.FunctionARN, "arn:aws:lambda:ap-northeast-1:123456789012:function:uptime-test"},
			{"AWS_LAMBDA_FUNCTION_NAME", first.FunctionName, "uptime-test"},
			{"AWS_REGION from Env", first.Region, "ap-northeast-1"},
			{"_HANDLER", first.Handler, "bootstrap"},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
			}
		}
		if l.FunctionARN != first.FunctionARN {
			t.Errorf("Lambda.FunctionARN = %q, function saw %q", l.FunctionARN, first.FunctionARN)
		}
	})

	t.Run("deadline in ctx", func(t *testing.T) {
		// Lambda-Runtime-Deadline-Ms is the hand-out time plus the timeout;
		// aws-lambda-go turns it into the handler's ctx deadline.
		lo, hi := before.Add(7*time.Second).UnixMilli(), after.Add(7*time.Second).UnixMilli()
		if first.DeadlineMS < lo || first.DeadlineMS > hi {
			t.Errorf("ctx deadline = %d ms, want within [%d, %d] (invoke time + 7s timeout)", first.DeadlineMS, lo, hi)
		}
	})

	t.Run("function error", func(t *testing.T) {
		raw, fe := l.Invoke(t, []byte(`{"fail":"disk full"}`))
		if fe == nil {
			t.Fatalf("invoke with fail: response %s, want a function error", raw)
		}
		if fe.ErrorType != "echoError" || fe.ErrorMessage != "echofn failed: disk full" {
			t.Errorf("function error = %s / %q, want echoError / %q", fe.ErrorType, fe.ErrorMessage, "echofn failed: disk full")
		}
		if raw != nil {
			t.Errorf("response with a function error = %q, want none", raw)
		}
		// aws-lambda-go logs the error payload it posts; the process's
		// stderr reaches Logs a moment after the error POST, so wait for it
		// (bounded: a hang detector, not a timing assertion).
		const body = `{"errorMessage":"echofn failed: disk full","errorType":"echoError"}`
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(l.Logs(), body) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(l.Logs(), body) {
			t.Errorf("logs lack the posted error body:\n%s", l.Logs())
		}
	})

	t.Run("peak RSS of the running process", func(t *testing.T) {
		// A Go process is resident in a few MiB, never in bytes or GiB.
		if rss := l.PeakRSS(); rss < 1<<20 || rss > 1<<30 {
			t.Errorf("PeakRSS() = %d bytes, want the process's VmHWM", rss)
		}
	})

	t.Run("warm", func(t *testing.T) {
		r := invokeOK(t, l, `{"msg":"again"}`)
		if r.PID != first.PID {
			t.Errorf("pid = %d, want the warm process %d", r.PID, first.PID)
		}
		if r.Invocation < 2 {
			t.Errorf("invocation = %d on the process, want >= 2 (warm)", r.Invocation)
		}
		if r.RequestID == first.RequestID {
			t.Errorf("request id %s reused", r.RequestID)
		}
		if n := l.Processes(); n != 1 {
			t.Errorf("Processes() = %d, want 1: no invocation so far needed a new process", n)
		}
	})

	t.Run("runtime API strictness", func(t *testing.T) {
		for _, c := range []struct {
			name, post string
			status     int
			bodyHas    string
		}{
			{"unknown request id", "unknown", 400, `"errorType":"InvalidRequestID"`},
			{"already answered request id", "previous", 400, `"errorType":"InvalidRequestID"`},
			{"error body not JSON", "bad-error", 400, "error body is not a JSON object"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := invokeOK(t, l, fmt.Sprintf(`{"post":%q}`, c.post))
				if r.PostStatus != c.status || !strings.Contains(r.PostBody, c.bodyHas) {
					t.Errorf("POST answered %d %s, want %d with %s", r.PostStatus, r.PostBody, c.status, c.bodyHas)
				}
			})
		}
	})

	t.Run("queued invocations each get their own answer", func(t *testing.T) {
		var chans []<-chan testenv.InvokeResult
		for i := range 4 {
			chans = append(chans, l.InvokeAsync(fmt.Appendf(nil, `{"n":%d}`, i)))
		}
		for i, ch := range chans {
			r := <-ch
			if r.Err != nil || r.FnErr != nil {
				t.Fatalf("invocation %d: err %v, function error %v", i, r.Err, r.FnErr)
			}
			e := decodeEcho(t, r.Response)
			if want := fmt.Sprintf(`{"n":%d}`, i); string(e.Echo) != want || e.RequestID != r.RequestID {
				t.Errorf("invocation %d: echo %s for %s, want %s for %s", i, e.Echo, e.RequestID, want, r.RequestID)
			}
		}
	})
}

// TestLambdaFailures covers what the service does when the process fails:
// each case's invocation fails with the service's error, and the next
// invocation runs on a fresh process.
func TestLambdaFailures(t *testing.T) {
	bin := testenv.BuildBootstrap(t, echofnPkg)
	for _, c := range []struct {
		name     string
		timeout  time.Duration
		payload  string
		wantType string
		wantMsg  string
	}{
		{"deadline passed", time.Second, `{"sleep":"5s"}`, "Sandbox.Timedout", "Task timed out after 1.00 seconds"},
		{"process exits mid-invocation", 0, `{"exit":3}`, "Runtime.ExitError", "Runtime exited with error: exit status 3"},
		{"response over 6 MB", 0, `{"bytes":7000000}`, "Function.ResponseSizeTooLarge", "Response payload size exceeded maximum allowed payload size (6291456 bytes)."},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := testenv.StartLambda(t, bin, testenv.LambdaOptions{Timeout: c.timeout})
			first := invokeOK(t, l, `{}`)

			res := <-l.InvokeAsync([]byte(c.payload))
			if res.Err != nil {
				t.Fatalf("invoke: %v", res.Err)
			}
			if res.FnErr == nil {
				t.Fatalf("invoke %s: response %.200s, want a %s error", c.payload, res.Response, c.wantType)
			}
			if res.FnErr.ErrorType != c.wantType || !strings.Contains(res.FnErr.ErrorMessage, c.wantMsg) {
				t.Errorf("function error = %s / %q, want %s / ...%q", res.FnErr.ErrorType, res.FnErr.ErrorMessage, c.wantType, c.wantMsg)
			}
			if !strings.Contains(res.FnErr.ErrorMessage, res.RequestID) && c.wantType != "Function.ResponseSizeTooLarge" {
				t.Errorf("function error %q does not name request %s", res.FnErr.ErrorMessage, res.RequestID)
			}

			if c.wantType == "Runtime.ExitError" {
				// the process is gone: its peak comes from its rusage
				if rss := l.PeakRSS(); rss < 1<<20 || rss > 1<<30 {
					t.Errorf("PeakRSS() after the process exited = %d bytes, want its rusage maxrss", rss)
				}
			}

			next := invokeOK(t, l, `{"msg":"after"}`)
			if next.PID == first.PID || next.Invocation != 1 {
				t.Errorf("next invocation ran on pid %d (invocation %d), want a fresh process (not %d)", next.PID, next.Invocation, first.PID)
			}
			if n := l.Processes(); n != 2 {
				t.Errorf("Processes() = %d, want 2", n)
			}
			if cold := l.ColdStart(); cold <= 0 {
				t.Errorf("ColdStart() of the fresh process = %s, want > 0", cold)
			}
		})
	}
}

func TestLambdaInitFailure(t *testing.T) {
	bin := testenv.BuildBootstrap(t, echofnPkg)
	l := testenv.StartLambda(t, bin, testenv.LambdaOptions{
		Env: map[string]string{"ECHOFN_INIT_FAIL": "SENDGRID_SECRET_ARN is not set"},
	})
	if cold := l.ColdStart(); cold != 0 {
		t.Errorf("ColdStart() = %s for a process that never asked for work, want 0", cold)
	}
	raw, fe := l.Invoke(t, []byte(`{}`))
	if fe == nil {
		t.Fatalf("invoke: response %s, want Runtime.ExitError", raw)
	}
	if fe.ErrorType != "Runtime.ExitError" || !strings.Contains(fe.ErrorMessage, "exit status 1") {
		t.Errorf("function error = %s / %q, want Runtime.ExitError / ...exit status 1", fe.ErrorType, fe.ErrorMessage)
	}
	if logs := l.Logs(); !strings.Contains(logs, "echofn: init: SENDGRID_SECRET_ARN is not set") {
		t.Errorf("logs lack the init failure:\n%s", logs)
	}
}

// TestLambdaMotoSecret runs a function that reads a secret from moto with
// the SDK's default config and Moto.Env.
func TestLambdaMotoSecret(t *testing.T) {
	m := testenv.Moto(t)
	m.CreateSecret(t, "backstop/sendgrid", "SG.from-moto")
	bin := testenv.BuildBootstrap(t, echofnPkg)
	l := testenv.StartLambda(t, bin, testenv.LambdaOptions{Env: m.Env()})
	r := invokeOK(t, l, `{"secret":"backstop/sendgrid"}`)
	if r.SecretValue != "SG.from-moto" {
		t.Errorf("secret read in the function = %q, want SG.from-moto", r.SecretValue)
	}
	_, fe := l.Invoke(t, []byte(`{"secret":"backstop/missing"}`))
	if fe == nil || !strings.Contains(fe.ErrorMessage, "get secret backstop/missing") || !strings.Contains(fe.ErrorMessage, "ResourceNotFoundException") {
		t.Errorf("missing secret: function error %v, want get secret backstop/missing ... ResourceNotFoundException", fe)
	}
}
