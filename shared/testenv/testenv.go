package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where a missing
// component is a failure, never a skip.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Need stops the test when a component could not be had: in CI it fails the
// test; elsewhere it skips with how to get the component (hint, e.g.
// "run `make deps`").
func Need(t testing.TB, component string, err error, hint string) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("%s is required in CI: %v (%s)", component, err, hint)
	}
	t.Skipf("%s not available: %v (%s)", component, err, hint)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
