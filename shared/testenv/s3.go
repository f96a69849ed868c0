package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/shared/filelock"
)

// VersityGWVersion is the versitygw release S3 runs; its binary is built
// once per machine with `go install` and cached under os.TempDir().
const VersityGWVersion = "v1.8.0"

// S3Server is a running versitygw S3 gateway (posix backend, versioning
// directory) on 127.0.0.1, owned by one test and stopped when it ends. It
// holds one bucket, created with object lock enabled (which also turns
// versioning on, as on AWS).
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	Region    string // us-east-1
	Bucket    string
	AccessKey string // the root account
	SecretKey string
	Port      int

	bin, dataDir, versionDir, logFile string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// S3 builds versitygw if this machine has no cached binary yet (needs the
// Go module proxy; without it the test goes through Need), starts it on a
// free port with fresh data directories, creates the bucket and stops the
// server when t ends.
func S3(t testing.TB) *S3Server {
	t.Helper()
	bin, err := versitygwBinary()
	Need(t, "versitygw S3 server", err, "needs the Go module proxy")

	dir := t.TempDir()
	s := &S3Server{
		Region:     "us-east-1",
		Bucket:     "backstop-test",
		AccessKey:  "backstoproot",
		SecretKey:  "backstop-root-secret-key",
		bin:        bin,
		dataDir:    filepath.Join(dir, "data"),
		versionDir: filepath.Join(dir, "versions"),
		logFile:    filepath.Join(dir, "versitygw.log"),
	}
	for _, d := range []string{s.dataDir, s.versionDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("versitygw: %v", err)
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.Port = FreePort(t)
		s.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("versitygw: %v", lastErr)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			out, _ := os.ReadFile(s.logFile)
			t.Logf("versitygw log (%s):\n%s", s.logFile, tail(out, 3000))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client(t).CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                     aws.String(s.Bucket),
		ObjectLockEnabledForBucket: aws.Bool(true),
	}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", s.Bucket, s.Endpoint, err)
	}
	return s
}

// Client returns an S3 client for the root account, path-style, with the
// SDK's default retries.
func (s *S3Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// Stop shuts the server down (SIGTERM), keeping its port and data, so a
// test can see "S3 unreachable" and then Start it again.
func (s *S3Server) Stop(t testing.TB) {
	t.Helper()
	s.stop()
}

// Start starts a stopped server again on the same port with the same data.
func (s *S3Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		t.Fatalf("versitygw on %s: Start while running", s.Endpoint)
	}
	if err := s.start(); err != nil {
		t.Fatalf("restart versitygw: %v", err)
	}
}

func (s *S3Server) start() error {
	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(s.bin,
		"--port", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		"--region", s.Region,
		"posix", "--versioning-dir", s.versionDir, s.dataDir)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+s.AccessKey,
		"ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			out, _ := os.ReadFile(s.logFile)
			return fmt.Errorf("versitygw on %s exited: %s", addr, tail(out, 2000))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("versitygw on %s did not listen within 20s", addr)
}

func (s *S3Server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

var versitygwBuild sync.Mutex

// versitygwBinary returns the cached versitygw binary, building it first
// with `go install` when missing. A file lock serialises builds across test
// processes; the binary is built into a temp dir and renamed into place, so
// nobody ever runs a half-written one.
func versitygwBinary() (string, error) {
	versitygwBuild.Lock()
	defer versitygwBuild.Unlock()
	dir := filepath.Join(os.TempDir(), "backstop-versitygw-"+VersityGWVersion)
	bin := filepath.Join(dir, "versitygw")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("versitygw cache: %w", err)
	}
	lock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("versitygw cache: %w", err)
	}
	defer lock.Unlock()
	if isExecutable(bin) { // built by another process while we waited
		return bin, nil
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("versitygw build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pkg := "github.com/versity/versitygw/cmd/versitygw@" + VersityGWVersion
	cmd := exec.CommandContext(ctx, goBin, "install", pkg)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w: %s", pkg, err, tail(out, 2000))
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return "", fmt.Errorf("versitygw cache: %w", err)
	}
	return bin, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
