package check

import (
	"context"
	"strings"
	"testing"
	"time"

	"backstop/probe/internal/config"
	"backstop/shared/testenv"
)

// redisPassword is recognizable so a leak into any Result field shows.
const redisPassword = "redis-pw-Leak4412"

func TestRedisCheck(t *testing.T) {
	open := testenv.Redis(t, "")
	locked := testenv.Redis(t, redisPassword)
	down := testenv.Redis(t, "")
	down.Stop(t)
	silent := hangingServer(t)

	cases := []struct {
		name     string
		addr     string
		password string
		timeout  time.Duration
		status   Status
		message  string
	}{
		{"up without password", open.Addr, "", 0, OK, "PONG from " + open.Addr},
		{"up with password", locked.Addr, redisPassword, 0, OK, "PONG from " + locked.Addr},
		{"wrong password", locked.Addr, "wrong-" + redisPassword, 0, Critical, "authentication failed"},
		{"password missing but required", locked.Addr, "", 0, Critical, "server requires a password"},
		{"password set but not required", open.Addr, redisPassword, 0, Warn,
			"PONG from " + open.Addr + "; password set but the server requires none"},
		{"down", down.Addr, redisPassword, 0, Critical, "connect " + down.Addr + ": connection refused"},
		{"server hangs", silent, redisPassword, 300 * time.Millisecond, Critical,
			"AUTH " + silent + ": timed out after 300ms"},
		{"server hangs, no password", silent, "", 300 * time.Millisecond, Critical,
			"PING " + silent + ": timed out after 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runConfigured(t, config.Check{
				Name: "cache", Type: "redis", Address: tc.addr,
				Password: config.Secret(tc.password), Timeout: config.Duration(tc.timeout),
			})
			assertSecretAbsent(t, r, redisPassword)
			if r.Status != tc.status || r.Message != tc.message {
				t.Fatalf("got %v %q, want %v %q", r.Status, r.Message, tc.status, tc.message)
			}
			if r.Name != "cache" || r.Type != "redis" {
				t.Fatalf("name/type %q/%q", r.Name, r.Type)
			}
			if r.Status != Critical {
				if _, ok := r.Observed["latency_ms"].(float64); !ok || r.Latency <= 0 {
					t.Errorf("latency not observed: %v %v", r.Observed, r.Latency)
				}
			}
		})
	}
}

// TestRedisCheckCancelled: cancelling the round's ctx ends a hung exchange
// at once with the cause "cancelled", not after the check's timeout.
func TestRedisCheckCancelled(t *testing.T) {
	silent := hangingServer(t)
	ch, err := New(config.Check{Name: "cache", Type: "redis", Address: silent, Timeout: config.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- ch.Check(ctx) }()
	time.Sleep(100 * time.Millisecond) // let it reach the read
	cancel()
	select {
	case r := <-done:
		// Usually cancelled mid-PING; on a loaded machine possibly still dialing.
		if r.Status != Critical || (r.Message != "PING "+silent+": cancelled" && r.Message != "connect "+silent+": cancelled") {
			t.Fatalf("got %v %q, want critical \"PING %s: cancelled\"", r.Status, r.Message, silent)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Check did not return after ctx was cancelled")
	}
}

func TestRedisCheckConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		addr string
		want string
	}{
		{"no address", "", "address: required"},
		{"no port", "127.0.0.1", "address: must be host:port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(config.Check{Name: "cache", Type: "redis", Address: tc.addr, Password: redisPassword})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), redisPassword) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
