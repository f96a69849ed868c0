package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Runtime API limits and defaults, as the Lambda service has them.
const (
	lambdaAPIPrefix        = "/2018-06-01/runtime/"
	lambdaDefaultTimeout   = 30 * time.Second
	lambdaInitTimeout      = 10 * time.Second // the service's init phase limit
	lambdaMaxResponseBytes = 6 << 20          // synchronous response payload limit
	lambdaAccountID        = "123456789012"

	hdrRequestID   = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadlineMS  = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionARN = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID     = "Lambda-Runtime-Trace-Id"
	hdrErrorType   = "Lambda-Runtime-Function-Error-Type"
	trlErrorBody   = "Lambda-Runtime-Function-Error-Body"
)

// LambdaError is a function error as the Lambda service reports it to the
// caller: the errorMessage and errorType of the runtime's error POST, or
// one the service makes itself ("Sandbox.Timedout" when the deadline
// passed, "Runtime.ExitError" when the process exited without answering,
// "Function.ResponseSizeTooLarge").
type LambdaError struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
}

func (e *LambdaError) Error() string { return e.ErrorType + ": " + e.ErrorMessage }

// LambdaOptions configure StartLambda.
type LambdaOptions struct {
	// Env is added to the function's environment, after (so over) the
	// variables the service sets. The process does not inherit the test's
	// environment, as a real function does not.
	Env map[string]string
	// Timeout is the function timeout: each invocation's deadline is this
	// long after the runtime receives it. Default 30s.
	Timeout time.Duration
	// FunctionName defaults to the name of the bootstrap's directory (the
	// package's last element for BuildBootstrap binaries).
	FunctionName string
}

// InvokeResult is the outcome of one invocation.
type InvokeResult struct {
	RequestID string
	Response  []byte       // the function's response payload, when it succeeded
	FnErr     *LambdaError // the function error, when it failed
	Err       error        // the harness got no outcome (Lambda stopped)
}

// Lambda is a Runtime API server (GET /2018-06-01/runtime/invocation/next,
// POST /2018-06-01/runtime/invocation/{id}/response and /error, POST
// /2018-06-01/runtime/init/error) on 127.0.0.1 with the bootstrap running
// against it, owned by one test.
//
// Like one sandbox of the service, it runs one process at a time, handing
// it invocations one by one in the order queued (for overlapping
// invocations start two Lambdas from the same bootstrap, as the service
// would run two sandboxes); a process that exits or passes a
// deadline fails its invocation ("Runtime.ExitError", "Sandbox.Timedout",
// and a timed-out process is killed), and the next invocation starts a
// fresh process (a new cold start). A response or error for a request id
// that is unknown, not yet handed out or already answered gets 400.
type Lambda struct {
	FunctionName string
	FunctionARN  string
	Region       string

	bootstrap string
	env       map[string]string
	timeout   time.Duration
	logs      lockedBuffer

	mu       sync.Mutex
	closed   bool
	queue    []*invocation          // waiting for GET /next
	byID     map[string]*invocation // every invocation not yet finished
	changed  chan struct{}          // closed and replaced when queue or proc changes
	proc     *lambdaProc            // the running process, nil when none
	procs    int                    // processes started so far
	lastCold time.Duration
	lastRSS  int64         // peak RSS in bytes of the last process that exited
	coldSet  chan struct{} // closed when the current process first asks for /next
}

// lambdaProc is one bootstrap process with its own Runtime API listener,
// so a request from a process that is gone can never take an invocation
// meant for its successor.
type lambdaProc struct {
	n        int
	cmd      *exec.Cmd
	srv      *http.Server
	started  time.Time
	exited   chan struct{}
	nexted   bool         // asked for /next at least once
	initErr  *LambdaError // posted to /runtime/init/error
	inflight *invocation
	killed   string // why the harness killed it
}

type invocation struct {
	id      string
	payload []byte
	done    chan InvokeResult // buffered 1
	proc    *lambdaProc       // set when handed out
	timer   *time.Timer
}

// StartLambda starts the bootstrap against a Runtime API server on a free
// loopback port (a fresh one for each process), with AWS_LAMBDA_RUNTIME_API,
// AWS_LAMBDA_FUNCTION_NAME, _HANDLER, AWS_REGION (default us-east-1) and
// the other variables the service sets, plus o.Env. Its stdout and stderr
// go to Logs (and to the test log when the test fails); the process and
// the server stop when t ends.
func StartLambda(t testing.TB, bootstrap string, o LambdaOptions) *Lambda {
	t.Helper()
	abs, err := filepath.Abs(bootstrap)
	if err != nil {
		t.Fatalf("lambda bootstrap %s: %v", bootstrap, err)
	}
	if st, err := os.Stat(abs); err != nil || st.Mode()&0o111 == 0 || !st.Mode().IsRegular() {
		t.Fatalf("lambda bootstrap %s: not an executable file (%v)", abs, err)
	}
	l := &Lambda{
		FunctionName: o.FunctionName,
		Region:       "us-east-1",
		bootstrap:    abs,
		timeout:      o.Timeout,
		byID:         map[string]*invocation{},
		changed:      make(chan struct{}),
		coldSet:      make(chan struct{}),
	}
	if l.FunctionName == "" {
		l.FunctionName = filepath.Base(filepath.Dir(abs))
	}
	if l.timeout <= 0 {
		l.timeout = lambdaDefaultTimeout
	}
	if r := o.Env["AWS_REGION"]; r != "" {
		l.Region = r
	}
	l.FunctionARN = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", l.Region, lambdaAccountID, l.FunctionName)
	l.env = l.environ(o)

	t.Cleanup(func() {
		l.close()
		if t.Failed() {
			t.Logf("lambda %s logs:\n%s", l.FunctionName, tail([]byte(l.Logs()), 4000))
		}
	})

	l.mu.Lock()
	err = l.startLocked()
	l.mu.Unlock()
	if err != nil {
		t.Fatalf("lambda %s: %v", l.FunctionName, err)
	}
	return l
}

// environ is the function's environment but AWS_LAMBDA_RUNTIME_API: what
// the service sets for a provided.al2023 function, then o.Env.
func (l *Lambda) environ(o LambdaOptions) map[string]string {
	env := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        l.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + l.FunctionName,
		"AWS_LAMBDA_LOG_STREAM_NAME":      "2024/01/01/[$LATEST]" + randomHex(16),
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"_HANDLER":                        "bootstrap",
		"AWS_REGION":                      l.Region,
		"AWS_DEFAULT_REGION":              l.Region,
		"AWS_ACCESS_KEY_ID":               "test",
		"AWS_SECRET_ACCESS_KEY":           "test",
		"LAMBDA_TASK_ROOT":                filepath.Dir(l.bootstrap),
		"LAMBDA_RUNTIME_DIR":              filepath.Dir(l.bootstrap),
		"PATH":                            "/usr/local/bin:/usr/bin:/bin",
		"LANG":                            "en_US.UTF-8",
		"TZ":                              ":UTC",
	}
	for k, v := range o.Env {
		env[k] = v
	}
	return env
}

// startLocked starts a new bootstrap process; l.mu is held.
func (l *Lambda) startLocked() error {
	if l.closed {
		return errors.New("lambda stopped")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("runtime API listen: %w", err)
	}
	env := make([]string, 0, len(l.env)+1)
	env = append(env, "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	for k, v := range l.env {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(l.bootstrap)
	cmd.Dir = filepath.Dir(l.bootstrap)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &l.logs, &l.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	l.procs++
	p := &lambdaProc{n: l.procs, cmd: cmd, exited: make(chan struct{})}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { l.serve(p, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go p.srv.Serve(ln)
	fmt.Fprintf(&l.logs, "[testenv] start %s (process %d, runtime API %s)\n", l.bootstrap, p.n, ln.Addr())
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.srv.Close()
		return fmt.Errorf("start %s: %w", l.bootstrap, err)
	}
	l.proc = p
	l.coldSet = make(chan struct{})
	l.notifyLocked()
	go func() {
		err := cmd.Wait()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			l.mu.Lock()
			l.lastRSS = ru.Maxrss << 10 // Linux reports KiB
			l.mu.Unlock()
		}
		p.srv.Close()
		l.exited(p, err)
		close(p.exited)
	}()
	go func() {
		select {
		case <-p.exited:
		case <-time.After(lambdaInitTimeout):
			l.mu.Lock()
			if !p.nexted && p.killed == "" {
				p.killed = fmt.Sprintf("init did not finish within %s", lambdaInitTimeout)
				cmd.Process.Kill()
			}
			l.mu.Unlock()
		}
	}()
	return nil
}

// exited fails what the process left unanswered, as the service does.
func (l *Lambda) exited(p *lambdaProc, waitErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	status := "exit status 0"
	if waitErr != nil {
		status = waitErr.Error()
	}
	fmt.Fprintf(&l.logs, "[testenv] process %d exited: %s\n", p.n, status)
	if l.proc == p {
		l.proc = nil
	}
	if l.closed {
		return
	}
	// The invocation the process held, or, when it died before taking any,
	// the one that was waiting for it (the invocation that triggered init).
	inv := p.inflight
	if inv == nil && !p.nexted && len(l.queue) > 0 {
		inv = l.queue[0]
		l.queue = l.queue[1:]
	}
	if inv != nil && l.byID[inv.id] == inv {
		fe := p.initErr
		switch {
		case fe != nil:
		case strings.HasPrefix(p.killed, "deadline"):
			fe = &LambdaError{ErrorType: "Sandbox.Timedout", ErrorMessage: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, l.timeout.Seconds())}
		case p.killed != "":
			fe = &LambdaError{ErrorType: "Runtime.ExitError", ErrorMessage: fmt.Sprintf("RequestId: %s Error: %s", inv.id, p.killed)}
		default:
			fe = &LambdaError{ErrorType: "Runtime.ExitError", ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", inv.id, status)}
		}
		l.finishLocked(inv, InvokeResult{FnErr: fe})
	}
	if len(l.queue) > 0 {
		if err := l.startLocked(); err != nil {
			for _, q := range l.queue {
				l.finishLocked(q, InvokeResult{Err: fmt.Errorf("lambda %s: %w", l.FunctionName, err)})
			}
			l.queue = nil
		}
	}
}

// notifyLocked wakes every GET /next waiting for a change.
func (l *Lambda) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// finishLocked records the outcome of inv once.
func (l *Lambda) finishLocked(inv *invocation, r InvokeResult) {
	if l.byID[inv.id] != inv {
		return
	}
	delete(l.byID, inv.id)
	if inv.timer != nil {
		inv.timer.Stop()
	}
	if inv.proc != nil && inv.proc.inflight == inv {
		inv.proc.inflight = nil
	}
	r.RequestID = inv.id
	inv.done <- r
}

// InvokeAsync queues one invocation (starting a process when none runs)
// and returns at once; the channel yields its one result.
func (l *Lambda) InvokeAsync(payload []byte) <-chan InvokeResult {
	inv := &invocation{id: newRequestID(), payload: bytes.Clone(payload), done: make(chan InvokeResult, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		inv.done <- InvokeResult{RequestID: inv.id, Err: fmt.Errorf("lambda %s: stopped", l.FunctionName)}
		return inv.done
	}
	l.byID[inv.id] = inv
	l.queue = append(l.queue, inv)
	if l.proc == nil {
		if err := l.startLocked(); err != nil {
			l.queue = l.queue[:len(l.queue)-1]
			l.finishLocked(inv, InvokeResult{Err: fmt.Errorf("lambda %s: %w", l.FunctionName, err)})
			return inv.done
		}
	}
	l.notifyLocked()
	return inv.done
}

// Invoke queues one invocation and waits for the function's response or
// error; the test fails when the harness gets neither.
func (l *Lambda) Invoke(t testing.TB, payload []byte) (response []byte, fnErr *LambdaError) {
	t.Helper()
	r := <-l.InvokeAsync(payload)
	if r.Err != nil {
		t.Fatalf("invoke %s: %v", l.FunctionName, r.Err)
	}
	return r.Response, r.FnErr
}

// Logs returns everything the function's processes wrote to stdout and
// stderr so far, with a "[testenv]" line at each process start and exit.
func (l *Lambda) Logs() string { return l.logs.String() }

// PeakRSS is the peak resident set in bytes of the running process
// (VmHWM), or of the last one to exit (its rusage); 0 when none ran. It
// follows the process the harness started, not a binary path, so a
// rebuilt or replaced bootstrap cannot be mistaken for it.
func (l *Lambda) PeakRSS() int64 {
	l.mu.Lock()
	p, last := l.proc, l.lastRSS
	l.mu.Unlock()
	if p != nil {
		if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
					if kb > 0 {
						return kb << 10
					}
				}
			}
		}
	}
	return last
}

// LogsContain reports whether the logs hold s, waiting up to within for a
// line the process may still be writing (its output reaches Logs a moment
// after it answers).
func (l *Lambda) LogsContain(s string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if strings.Contains(l.Logs(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ColdStart is the time from the start of the current process to its
// first GET /next (the bootstrap's init). It waits for that request up to
// the init limit and returns 0 when the process exited or never asked.
func (l *Lambda) ColdStart() time.Duration {
	l.mu.Lock()
	ch := l.coldSet
	p := l.proc
	l.mu.Unlock()
	if p == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.lastCold
	}
	select {
	case <-ch:
	case <-p.exited:
	case <-time.After(lambdaInitTimeout):
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !p.nexted {
		return 0
	}
	return l.lastCold
}

// Processes returns how many bootstrap processes have been started (1
// while every invocation was warm).
func (l *Lambda) Processes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs
}

// close fails what is pending, stops the process and the server.
func (l *Lambda) close() {
	l.mu.Lock()
	l.closed = true
	p := l.proc
	for _, inv := range l.byID {
		l.finishLocked(inv, InvokeResult{Err: fmt.Errorf("lambda %s: stopped", l.FunctionName)})
	}
	l.queue = nil
	l.notifyLocked()
	l.mu.Unlock()
	if p != nil {
		// The service sends SIGTERM at shutdown (aws-lambda-go handles it
		// when an extension is registered); give it a moment, then kill.
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

// serve is process p's Runtime API.
func (l *Lambda) serve(p *lambdaProc, w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, lambdaAPIPrefix)
	if !ok {
		apiError(w, http.StatusNotFound, "InvalidRequest", "no such path "+r.URL.Path)
		return
	}
	switch {
	case rest == "invocation/next":
		if r.Method != http.MethodGet {
			apiError(w, http.StatusMethodNotAllowed, "InvalidRequest", r.Method+" "+r.URL.Path)
			return
		}
		l.next(p, w, r)
	case rest == "init/error":
		if r.Method != http.MethodPost {
			apiError(w, http.StatusMethodNotAllowed, "InvalidRequest", r.Method+" "+r.URL.Path)
			return
		}
		l.initError(p, w, r)
	case strings.HasPrefix(rest, "invocation/"):
		id, what := path.Split(strings.TrimPrefix(rest, "invocation/"))
		id = strings.TrimSuffix(id, "/")
		if r.Method != http.MethodPost || id == "" || strings.Contains(id, "/") || (what != "response" && what != "error") {
			apiError(w, http.StatusNotFound, "InvalidRequest", r.Method+" "+r.URL.Path)
			return
		}
		l.answer(p, w, r, id, what)
	default:
		apiError(w, http.StatusNotFound, "InvalidRequest", "no such path "+r.URL.Path)
	}
}

// next blocks until an invocation is queued, then hands it out with the
// service's headers and starts its deadline.
func (l *Lambda) next(p *lambdaProc, w http.ResponseWriter, r *http.Request) {
	for {
		l.mu.Lock()
		if !p.nexted {
			p.nexted = true
			l.lastCold = time.Since(p.started)
			close(l.coldSet)
			fmt.Fprintf(&l.logs, "[testenv] process %d ready after %s\n", p.n, l.lastCold)
		}
		if l.closed || l.proc != p {
			l.mu.Unlock()
			apiError(w, http.StatusGone, "Runtime.Stopped", "the sandbox is gone")
			return
		}
		if prev := p.inflight; prev != nil {
			// The runtime must answer before asking for more.
			l.finishLocked(prev, InvokeResult{Err: fmt.Errorf("lambda %s: the runtime asked for the next invocation without answering request %s", l.FunctionName, prev.id)})
		}
		if len(l.queue) > 0 {
			inv := l.queue[0]
			l.queue = l.queue[1:]
			inv.proc = p
			p.inflight = inv
			deadline := time.Now().Add(l.timeout)
			inv.timer = time.AfterFunc(l.timeout, func() { l.timedOut(p, inv) })
			l.mu.Unlock()

			h := w.Header()
			h.Set(hdrRequestID, inv.id)
			h.Set(hdrDeadlineMS, strconv.FormatInt(deadline.UnixMilli(), 10))
			h.Set(hdrFunctionARN, l.FunctionARN)
			h.Set(hdrTraceID, fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(12), randomHex(8)))
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.Write(inv.payload)
			return
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
}

// timedOut fails inv and kills its process, as the service does when the
// function timeout passes.
func (l *Lambda) timedOut(p *lambdaProc, inv *invocation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID[inv.id] != inv {
		return
	}
	p.killed = "deadline passed"
	l.finishLocked(inv, InvokeResult{FnErr: &LambdaError{
		ErrorType:    "Sandbox.Timedout",
		ErrorMessage: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, l.timeout.Seconds()),
	}})
	fmt.Fprintf(&l.logs, "[testenv] process %d: request %s timed out after %s, killing it\n", p.n, inv.id, l.timeout)
	p.cmd.Process.Kill()
}

// answer takes POST .../invocation/{id}/response or /error.
func (l *Lambda) answer(p *lambdaProc, w http.ResponseWriter, r *http.Request, id, what string) {
	l.mu.Lock()
	inv := l.byID[id]
	known := inv != nil && inv.proc == p
	l.mu.Unlock()
	if !known {
		// Unknown, not yet handed out, or already answered (or timed out).
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID "+strconv.Quote(id))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, lambdaMaxResponseBytes+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	var res InvokeResult
	status := http.StatusAccepted
	switch {
	case len(body) > lambdaMaxResponseBytes:
		res.FnErr = &LambdaError{ErrorType: "Function.ResponseSizeTooLarge", ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", lambdaMaxResponseBytes)}
		status = http.StatusRequestEntityTooLarge
	case r.Trailer.Get(hdrErrorType) != "":
		// aws-lambda-go's body reader failed mid-stream: the error is in
		// the trailers (type, and the error JSON base64-encoded).
		res.FnErr = &LambdaError{ErrorType: r.Trailer.Get(hdrErrorType)}
		if raw, err := base64.StdEncoding.DecodeString(r.Trailer.Get(trlErrorBody)); err == nil {
			var e LambdaError
			if json.Unmarshal(raw, &e) == nil {
				res.FnErr.ErrorMessage = e.ErrorMessage
			}
		}
	case what == "response":
		res.Response = body
	default:
		fe, err := decodeFunctionError(r.Header, body)
		if err != nil {
			apiError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
		res.FnErr = fe
	}

	l.mu.Lock()
	if l.byID[id] != inv {
		l.mu.Unlock()
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID "+strconv.Quote(id))
		return
	}
	l.finishLocked(inv, res)
	l.mu.Unlock()
	if status != http.StatusAccepted {
		apiError(w, status, res.FnErr.ErrorType, res.FnErr.ErrorMessage)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`)
}

// initError takes POST /runtime/init/error: the process failed to
// initialise; the service fails the invocation waiting for it with this
// error and resets the sandbox.
func (l *Lambda) initError(p *lambdaProc, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, lambdaMaxResponseBytes))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	fe, err := decodeFunctionError(r.Header, body)
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	l.mu.Lock()
	if l.proc != p || p.nexted {
		l.mu.Unlock()
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "init error after init")
		return
	}
	p.initErr = fe
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`)
	go func() {
		select {
		case <-p.exited:
		case <-time.After(time.Second):
			p.cmd.Process.Kill()
		}
	}()
}

// decodeFunctionError reads an error POST: a JSON object with string
// errorMessage and errorType (aws-lambda-go also sends stackTrace), the
// type repeated in the Lambda-Runtime-Function-Error-Type header when set.
func decodeFunctionError(h http.Header, body []byte) (*LambdaError, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("error body is not a JSON object: %v", err)
	}
	var fe LambdaError
	for key, dst := range map[string]*string{"errorMessage": &fe.ErrorMessage, "errorType": &fe.ErrorType} {
		v, ok := raw[key]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, fmt.Errorf("error body: %s is not a string", key)
		}
	}
	if _, ok := raw["errorMessage"]; !ok {
		return nil, errors.New("error body: no errorMessage")
	}
	if t := h.Get(hdrErrorType); t != "" && fe.ErrorType == "" {
		fe.ErrorType = t
	}
	if fe.ErrorType == "" {
		fe.ErrorType = "Unhandled"
	}
	return &fe, nil
}

// apiError writes the Runtime API's error body.
func apiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(LambdaError{ErrorMessage: msg, ErrorType: typ})
}

// newRequestID is a random UUID (version 4), like the service's request ids.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lockedBuffer collects a process's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bootstrapBuild is one package's build in this test process.
type bootstrapBuild struct {
	once sync.Once
	path string
	err  error
}

var bootstrapBuilds sync.Map // pkg -> *bootstrapBuild

// BuildBootstrap compiles the Lambda at pkg (an import path like
// "backstop/functions/uptime") for THIS machine's arch (tests run it here)
// with CGO_ENABLED=0 -tags lambda.norpc -trimpath (and -ldflags '-s -w',
// as the Makefile builds it) once per test process, and returns the path
// of the binary, named bootstrap in a directory named after the package's
// last element. The binary lives in a directory under os.TempDir() keyed
// by the module and package, replaced atomically by each build so test
// processes running at once never see half a binary. A build failure
// fails the test with the compiler's output.
func BuildBootstrap(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := bootstrapBuilds.LoadOrStore(pkg, &bootstrapBuild{})
	b := v.(*bootstrapBuild)
	b.once.Do(func() { b.path, b.err = buildBootstrap(pkg) })
	if b.err != nil {
		t.Fatalf("build bootstrap %s: %v", pkg, b.err)
	}
	return b.path
}

func buildBootstrap(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root + "\x00" + pkg))
	dir := filepath.Join(os.TempDir(), "backstop-bootstrap", hex.EncodeToString(sum[:6]), path.Base(pkg))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".bootstrap-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", tmp.Name(), pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bootstrap")
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}
