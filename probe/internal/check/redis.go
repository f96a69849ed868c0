package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/clip"
)

func init() { register("redis", newRedis) }

// RedisCheck sends PING (after AUTH when a password is set) to a Redis
// server and expects PONG. It speaks the two commands of RESP itself.
type RedisCheck struct {
	name     string
	addr     string
	password string
	timeout  time.Duration
}

var _ Checker = (*RedisCheck)(nil)

func newRedis(c config.Check) (Checker, error) {
	if c.Address == "" {
		return nil, errors.New("address: required (host:port)")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("address: must be host:port, like 127.0.0.1:6379 (got %q)", c.Address)
	}
	r := &RedisCheck{name: c.Name, addr: c.Address, password: c.Password.Reveal(), timeout: c.Timeout.D()}
	if r.timeout <= 0 {
		r.timeout = config.DefaultTimeout
	}
	return r, nil
}

// errRedisReply is a Redis error reply (the line after '-').
type errRedisReply string

func (e errRedisReply) Error() string { return string(e) }

// Check dials, authenticates when a password is configured, and PINGs, all
// within ctx's deadline (or Timeout, whichever is sooner); cancelling ctx
// aborts the exchange. PONG is OK with the round-trip latency; a refused,
// timed-out or rejected exchange is Critical with the cause. A password the
// server does not need is a Warn (the configuration is out of step).
func (r *RedisCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: r.name, Type: "redis", Status: OK, At: start}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	limit := r.timeout
	if dl, ok := ctx.Deadline(); ok {
		limit = dl.Sub(start)
	}
	critical := func(msg string) Result {
		res.Status, res.Value = Critical, "down"
		res.Message = scrubSecret(msg, r.password)
		return res
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return critical(fmt.Sprintf("connect %s: %s", r.addr, redisCause(ctx, err, limit)))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	rd := bufio.NewReader(conn)

	var warn string
	if r.password != "" {
		err := redisCommand(conn, rd, "AUTH", r.password)
		var reply errRedisReply
		switch {
		case errors.As(err, &reply) && strings.Contains(string(reply), "without any password configured"):
			warn = "password set but the server requires none"
		case errors.As(err, &reply) && (strings.HasPrefix(string(reply), "WRONGPASS") ||
			strings.Contains(string(reply), "invalid password") || strings.Contains(string(reply), "invalid username-password")):
			return critical("authentication failed")
		case errors.As(err, &reply):
			return critical("AUTH: " + string(reply))
		case err != nil:
			return critical(fmt.Sprintf("AUTH %s: %s", r.addr, redisCause(ctx, err, limit)))
		}
	}

	err = redisCommand(conn, rd, "PING")
	var reply errRedisReply
	switch {
	case errors.As(err, &reply) && strings.HasPrefix(string(reply), "NOAUTH"):
		return critical("server requires a password")
	case errors.As(err, &reply):
		return critical("PING: " + string(reply))
	case err != nil:
		return critical(fmt.Sprintf("PING %s: %s", r.addr, redisCause(ctx, err, limit)))
	}
	res.Latency = time.Since(start)
	res.Value = res.Latency.Round(time.Millisecond).String()
	res.Observed = map[string]any{"latency_ms": float64(res.Latency.Microseconds()) / 1000}
	res.Message = "PONG from " + r.addr
	if warn != "" {
		res.Status = Warn
		res.Message += "; " + warn
	}
	return res
}

// redisCommand sends one command as a RESP array of bulk strings and reads
// a one-line reply: nil for +OK/+PONG, errRedisReply for -ERR..., an error
// for anything else (or an I/O failure).
func redisCommand(conn net.Conn, rd *bufio.Reader, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := redisReadLine(rd, 4096)
	if err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(line, "+"):
		want := "OK"
		if args[0] == "PING" {
			want = "PONG"
		}
		if line[1:] != want {
			return fmt.Errorf("unexpected reply %q (want +%s)", clip.End(line, 80), want)
		}
		return nil
	case strings.HasPrefix(line, "-"):
		return errRedisReply(line[1:])
	default:
		return fmt.Errorf("not a Redis reply: %q", clip.End(line, 80))
	}
}

// redisReadLine reads one CRLF-terminated line of at most max bytes.
func redisReadLine(rd *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		b = append(b, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
		if len(b) > max {
			return "", fmt.Errorf("reply line longer than %d bytes", max)
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// redisCause is one clean line for a network failure: connection refused,
// timed out after 10s, cancelled, connection closed by the server.
func redisCause(ctx context.Context, err error, limit time.Duration) string {
	var dnsErr *net.DNSError
	var errno syscall.Errno
	var netErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timed out after " + limit.Round(time.Millisecond).String()
	case errors.As(err, &dnsErr):
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	case errors.Is(err, io.EOF):
		return "connection closed by the server"
	case errors.As(err, &errno):
		return errno.Error()
	}
	return err.Error()
}
