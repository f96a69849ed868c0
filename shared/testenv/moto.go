package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// MotoServer is a running moto_server (AWS service stand-in: Secrets
// Manager, SNS, SQS, ...) on 127.0.0.1, owned by one test and stopped
// when it ends. Any access key is accepted; the helpers use "test"/"test".
type MotoServer struct {
	Endpoint  string // http://127.0.0.1:port
	Region    string // us-east-1
	AccessKey string // test
	SecretKey string // test
	Port      int

	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// motoServerBinary finds moto_server on PATH or in pyenv's shims.
func motoServerBinary() (string, error) {
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	p := "/root/.pyenv/shims/moto_server"
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("moto_server is neither on PATH nor in /root/.pyenv/shims")
	}
	return p, nil
}

// Moto starts moto_server on a free loopback port, waits until it
// answers HTTP and stops it when t ends. Without moto_server the test
// goes through Need.
func Moto(t testing.TB) *MotoServer {
	t.Helper()
	bin, err := motoServerBinary()
	Need(t, "moto_server", err, "it ships with the image's Python (pip's moto[server])")

	m := &MotoServer{Region: "us-east-1", AccessKey: "test", SecretKey: "test", log: filepath.Join(t.TempDir(), "moto.log")}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m.Port = FreePort(t)
		m.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port))
		if lastErr = m.start(bin); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("moto_server: %v", lastErr)
	}
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			out, _ := os.ReadFile(m.log)
			t.Logf("moto_server log (%s):\n%s", m.log, tail(out, 3000))
		}
	})
	return m
}

func (m *MotoServer) start(bin string) error {
	log, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(m.Port))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited

	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			m.cmd = nil
			out, _ := os.ReadFile(m.log)
			return fmt.Errorf("moto_server on port %d exited: %s", m.Port, tail(out, 2000))
		default:
		}
		// moto's own API answers once the server routes requests.
		if resp, err := hc.Get(m.Endpoint + "/moto-api/data.json"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop()
	return fmt.Errorf("moto_server on port %d did not answer within 30s", m.Port)
}

// stop ends moto_server's process group (the pyenv shim runs it as a
// child).
func (m *MotoServer) stop() {
	if m.cmd == nil {
		return
	}
	pgid := m.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-m.exited
	}
	m.cmd = nil
}

// Config is an AWS SDK config for the server: its region, static "test"
// credentials and its endpoint for every service.
func (m *MotoServer) Config() aws.Config {
	return aws.Config{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	}
}

// SecretsManager returns a Secrets Manager client pointed at the server.
func (m *MotoServer) SecretsManager() *secretsmanager.Client {
	return secretsmanager.NewFromConfig(m.Config())
}

// Env is what a function (StartLambda's Env) needs for the SDK's default
// config to send Secrets Manager, SNS and SQS calls to the server: the
// service-specific endpoint overrides only, so S3 can point elsewhere
// (moto accepts any credentials, versitygw's among them).
func (m *MotoServer) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": m.Endpoint,
		"AWS_ENDPOINT_URL_SNS":             m.Endpoint,
		"AWS_ENDPOINT_URL_SQS":             m.Endpoint,
	}
}

// CreateSecret creates a secret with a string value and returns its ARN.
func (m *MotoServer) CreateSecret(t testing.TB, name, value string) (arn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.SecretsManager().CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretString: aws.String(value),
	})
	if err != nil {
		t.Fatalf("create secret %s on %s: %v", name, m.Endpoint, err)
	}
	return aws.ToString(out.ARN)
}
