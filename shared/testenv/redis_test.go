package testenv

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// redisSay sends one inline command and returns the reply line.
func redisSay(t *testing.T, c net.Conn, r *bufio.Reader, cmd string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return line
}

func TestRedis(t *testing.T) {
	cases := []struct {
		name     string
		password string
		want     []string // replies to PING, AUTH <pw>, PING
	}{
		{"no password", "", []string{"+PONG\r\n"}},
		{"password", "redis-test-pw", []string{"-NOAUTH Authentication required.\r\n", "+OK\r\n", "+PONG\r\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := Redis(t, tc.password)
			c, err := net.Dial("tcp", rs.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			cmds := []string{"PING", "AUTH " + tc.password, "PING"}
			for i, want := range tc.want {
				if got := redisSay(t, c, r, cmds[i]); got != want {
					t.Fatalf("%s: got %q, want %q", cmds[i], got, want)
				}
			}
			// No persistence: a test's data never outlives the server.
			if got := redisSay(t, c, r, "CONFIG GET save"); got != "*2\r\n" {
				t.Fatalf("CONFIG GET save: %q", got)
			}
			r.ReadString('\n')
			r.ReadString('\n')
			if got, _ := r.ReadString('\n'); got != "$0\r\n" {
				t.Fatalf("save is %q, want empty", got)
			}

			rs.Stop(t)
			if c2, err := net.DialTimeout("tcp", rs.Addr, time.Second); err == nil {
				c2.Close()
				t.Fatalf("redis on %s still accepts after Stop", rs.Addr)
			}
			rs.Stop(t) // idempotent
		})
	}
}
