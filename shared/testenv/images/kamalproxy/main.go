package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const defaultStatePath = "/var/run/kamal-proxy/state.json"

// State is the routing table shared by deploy (writer) and run (reader).
type State struct {
	Services map[string]Service `json:"services"`
}

// Service is one deployed service.
type Service struct {
	Target string   `json:"target"`          // host:port
	Hosts  []string `json:"hosts,omitempty"` // empty: any host
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	statePath := os.Getenv("KAMAL_PROXY_STATE")
	if statePath == "" {
		statePath = defaultStatePath
	}
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(args, statePath, stdout)
	case "deploy":
		err = deploy(args, statePath, stdout)
	case "list", "ls":
		err = list(statePath, stdout)
	default:
		err = fmt.Errorf("unknown command %q (want run, deploy or list)", cmd)
	}
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}

// interspersed parses flags that may come before or after positional
// arguments, as cobra (the real CLI's parser) allows.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// multi is a repeatable, comma-separable string flag (cobra's StringSlice).
type multi []string

func (m *multi) String() string { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*m = append(*m, s)
		}
	}
	return nil
}

func deploy(args []string, statePath string, stdout io.Writer) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var targets, hosts multi
	fs.Var(&targets, "target", "target host:port")
	fs.Var(&hosts, "host", "host(s) to serve this target on")
	timeout := fs.Duration("deploy-timeout", 30*time.Second, "time for the target to become healthy")
	path := fs.String("health-check-path", "/up", "path to check for health")
	interval := fs.Duration("health-check-interval", time.Second, "interval between health checks")
	checkTimeout := fs.Duration("health-check-timeout", 5*time.Second, "time each health check must complete in")
	pos, err := interspersed(fs, args)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("deploy: want exactly one service name, got %d arguments", len(pos))
	}
	service := pos[0]
	if len(targets) != 1 {
		return errors.New(`deploy: required flag "target" not set (exactly one host:port)`)
	}
	target := targets[0]
	if _, _, err := net.SplitHostPort(target); err != nil {
		return fmt.Errorf("deploy: target %q: %w", target, err)
	}
	if err := waitHealthy(target, *path, *timeout, *interval, *checkTimeout); err != nil {
		return err
	}
	st, err := load(statePath)
	if err != nil {
		return err
	}
	st.Services[service] = Service{Target: target, Hosts: hosts}
	if err := save(statePath, st); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Deployed %s to %s\n", service, target)
	return nil
}

// waitHealthy GETs http://target<path> every interval until it answers 200
// or timeout passes.
func waitHealthy(target, path string, timeout, interval, checkTimeout time.Duration) error {
	hc := &http.Client{Timeout: checkTimeout}
	deadline := time.Now().Add(timeout)
	url := "http://" + target + path
	var last string
	for {
		resp, err := hc.Get(url)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = "HTTP " + resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("target failed to become healthy within configured timeout (%s): GET %s: %s", timeout, url, last)
		}
		time.Sleep(interval)
	}
}

func load(path string) (State, error) {
	st := State{Services: map[string]Service{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read state %s: %w", path, err)
	}
	if st.Services == nil {
		st.Services = map[string]Service{}
	}
	return st, nil
}

// save writes the state to a temporary file beside path and renames it
// over path, so a reader sees the old table or the new one, never half.
func save(path string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func list(statePath string, stdout io.Writer) error {
	st, err := load(statePath)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(st.Services))
	for n := range st.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(stdout, "%-30s%-30s%-30s%-10s%-10s\n", "Service", "Host", "Target", "State", "TLS")
	for _, n := range names {
		s := st.Services[n]
		host := strings.Join(s.Hosts, ",")
		if host == "" {
			host = "*"
		}
		fmt.Fprintf(stdout, "%-30s%-30s%-30s%-10s%-10s\n", n, host, s.Target, "running", "no")
	}
	return nil
}

func run(args []string, statePath string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	port := fs.Int("http-port", 80, "port to serve HTTP traffic on")
	if _, err := interspersed(fs, args); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(statePath), 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{
		Addr:              fmt.Sprintf(":%d", *port),
		Handler:           &router{statePath: statePath},
		ReadHeaderTimeout: 5 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintln(stdout, "kamal-proxy: listening on", srv.Addr, "state", statePath)
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", srv.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// router reads the state file for every request and forwards to the
// matching service's target.
type router struct {
	statePath string
}

func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	st, err := load(r.statePath)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	target, ok := route(st, req.Host)
	if !ok {
		http.Error(w, "no service for host "+req.Host, http.StatusNotFound)
		return
	}
	u := &url.URL{Scheme: "http", Host: target}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
	}
	p.ServeHTTP(w, req)
}

// route picks the service whose hosts include host (port ignored), else
// one deployed for any host.
func route(st State, host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	wildcard := ""
	names := make([]string, 0, len(st.Services))
	for n := range st.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := st.Services[n]
		if len(s.Hosts) == 0 {
			if wildcard == "" {
				wildcard = s.Target
			}
			continue
		}
		for _, h := range s.Hosts {
			if strings.EqualFold(h, host) {
				return s.Target, true
			}
		}
	}
	return wildcard, wildcard != ""
}
