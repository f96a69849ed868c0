package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a running throwaway redis-server on 127.0.0.1 with no
// persistence, owned by one test and stopped when it ends.
type RedisServer struct {
	Addr     string // 127.0.0.1:port
	Port     int
	Password string // requirepass; "" = none

	cmd     *exec.Cmd
	exited  chan struct{}
	logFile string
	once    sync.Once
}

// Redis starts redis-server for t (with requirepass when password is not
// empty), waits until it answers and stops it when t ends. A missing
// redis-server goes through Need.
func Redis(t testing.TB, password string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	Need(t, "redis-server", err, "run `make deps` (scripts/deps.sh)")
	dir := t.TempDir()

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		r := &RedisServer{
			Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Port:     port,
			Password: password,
			exited:   make(chan struct{}),
			logFile:  filepath.Join(dir, fmt.Sprintf("redis-%d.log", attempt)),
		}
		if lastErr = r.start(bin, dir); lastErr == nil {
			t.Cleanup(r.stop)
			return r
		}
	}
	t.Fatalf("redis: %v", lastErr)
	return nil
}

// Stop shuts the server down, so the test can see "redis down".
func (r *RedisServer) Stop(t testing.TB) {
	t.Helper()
	r.stop()
}

func (r *RedisServer) start(bin, dir string) error {
	args := []string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
	}
	if r.Password != "" {
		args = append(args, "--requirepass", r.Password)
	}
	log, err := os.Create(r.logFile)
	if err != nil {
		return err
	}
	defer log.Close()
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.Dir = dir
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			out, _ := os.ReadFile(r.logFile)
			return fmt.Errorf("redis-server on port %d exited: %s", r.Port, tail(out, 2000))
		default:
		}
		if redisAnswers(r.Addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop()
	return fmt.Errorf("redis-server on %s did not answer within 15s", r.Addr)
}

func (r *RedisServer) stop() {
	r.once.Do(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.exited
		}
	})
}

// redisAnswers reports whether addr replies to an inline PING (PONG or,
// with requirepass, -NOAUTH: either way the server is serving).
func redisAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && len(line) > 0 && (line[0] == '+' || line[0] == '-')
}
