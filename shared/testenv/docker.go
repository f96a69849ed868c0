package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// DefaultDockerHost is the engine address used when DOCKER_HOST is unset.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// Labels put on every test image and container, so leftovers can be found.
const (
	LabelTest       = "backstop.test"
	LabelSourceHash = "backstop.test.source-hash"
)

// imageBuilderVersion is part of every image hash: bump it when the way
// images are built (Dockerfile, build flags) changes.
const imageBuilderVersion = "1"

const dockerHint = "run `make deps` (scripts/deps.sh) to install and start dockerd"

// DockerEnv is a connection to the real Docker engine for one test. Its
// helpers fail the test (t.Fatal) on any engine error.
type DockerEnv struct {
	// Client is the Engine API client; the API version is negotiated with
	// the engine (1.41 for Docker 20.10).
	Client *client.Client
	// Host is the engine address, e.g. unix:///var/run/docker.sock.
	Host string
}

// Docker connects to the engine at DOCKER_HOST (default
// unix:///var/run/docker.sock) and pings it. An absent or silent engine goes
// through Need: the test fails in CI and is skipped elsewhere. The client is
// closed when the test ends.
func Docker(t testing.TB) *DockerEnv {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = DefaultDockerHost
	}
	c, err := client.New(client.FromEnv)
	if err != nil {
		Need(t, "Docker engine", fmt.Errorf("docker client for %s: %w", host, err), dockerHint)
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		Need(t, "Docker engine", fmt.Errorf("ping %s: %w", host, err), dockerHint)
		return nil
	}
	t.Cleanup(func() { c.Close() })
	return &DockerEnv{Client: c, Host: host}
}

// images caches, per test process, the image refs already built or found.
var images = struct {
	sync.Mutex
	refs map[string]string // host + "\x00" + name -> ref
}{refs: map[string]string{}}

// Image returns the ref (backstop-test/<name>:<hash>) of a FROM-scratch
// image holding the Go program in shared/testenv/images/<name>/, built with
// CGO_ENABLED=0 and run as /<name> (its ENTRYPOINT). The hash covers the
// program's source files, the Go version and the build recipe; an image
// already on the engine with that hash label is reused, so only a changed
// program is rebuilt, and each test process builds an image at most once.
// The programs must be self-contained (standard library only): sources
// outside their directory are not part of the hash.
func (d *DockerEnv) Image(t testing.TB, name string) string {
	t.Helper()
	src, err := imageSourceDir(name)
	if err != nil {
		t.Fatalf("test image %s: %v", name, err)
	}
	hash, err := sourceHash(src)
	if err != nil {
		t.Fatalf("test image %s: %v", name, err)
	}
	return d.cachedImage(t, name, hash, func(ctx context.Context, tmp, ref string) error {
		return d.buildImage(ctx, tmp, name, src, ref, hash)
	})
}

// ImageAt is Image with the program installed at binPath, an absolute
// path such as /usr/local/bin/kamal-proxy, instead of /<name>: binPath is
// the ENTRYPOINT and its directory comes first in the image's PATH, so
// `docker exec C kamal-proxy deploy ...` finds it as on a real host. The
// ref is backstop-test/<name>:<hash>, the hash covering binPath too.
func (d *DockerEnv) ImageAt(t testing.TB, name, binPath string) string {
	t.Helper()
	if !path.IsAbs(binPath) || path.Clean(binPath) != binPath || path.Base(binPath) == "/" || strings.ContainsAny(binPath, "\"\n\\ ") {
		t.Fatalf("test image %s: binary path %q: want a clean absolute path without spaces or quotes", name, binPath)
	}
	src, err := imageSourceDir(name)
	if err != nil {
		t.Fatalf("test image %s: %v", name, err)
	}
	srcHash, err := sourceHash(src)
	if err != nil {
		t.Fatalf("test image %s: %v", name, err)
	}
	sum := sha256.Sum256([]byte("at " + binPath + "\x00" + srcHash))
	hash := hex.EncodeToString(sum[:])[:12]
	return d.cachedImage(t, name, hash, func(ctx context.Context, tmp, ref string) error {
		binData, err := goBuild(ctx, tmp, name, src)
		if err != nil {
			return err
		}
		dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s %s\nENV PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nENTRYPOINT [\"%s\"]\n",
			name, binPath, path.Dir(binPath), binPath)
		return d.buildContext(ctx, ref, hash, []contextFile{
			{"Dockerfile", 0o644, []byte(dockerfile)},
			{name, 0o755, binData},
		})
	})
}

// cachedImage returns backstop-test/<name>:<hash>, calling build (with a
// temporary directory and that ref) only when neither this process nor
// the engine (an image with that hash label) already has it.
func (d *DockerEnv) cachedImage(t testing.TB, name, hash string, build func(ctx context.Context, tmp, ref string) error) string {
	t.Helper()
	key := d.Host + "\x00" + name
	images.Lock()
	defer images.Unlock()
	if ref, ok := images.refs[key]; ok && strings.HasSuffix(ref, ":"+hash) {
		return ref
	}
	ref := "backstop-test/" + name + ":" + hash

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if ok, err := d.imageHasHash(ctx, ref, hash); err != nil {
		t.Fatalf("test image %s: %v", name, err)
	} else if !ok {
		if err := build(ctx, t.TempDir(), ref); err != nil {
			t.Fatalf("test image %s: %v", name, err)
		}
		if ok, err := d.imageHasHash(ctx, ref, hash); err != nil || !ok {
			t.Fatalf("test image %s: built %s but the engine does not show it with label %s=%s (err %v)", name, ref, LabelSourceHash, hash, err)
		}
	}
	images.refs[key] = ref
	return ref
}

// imageSourceDir finds shared/testenv/images/<name>: beside this file when
// the build kept source paths, else from the module root above the working
// directory.
func imageSourceDir(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("bad image name %q", name)
	}
	var dirs []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "images"))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				dirs = append(dirs, filepath.Join(dir, "shared", "testenv", "images"))
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no program for it: looked in %s", strings.Join(dirs, ", "))
}

// sourceHash hashes every regular file under dir (path and content), the
// Go version and the build recipe version; 12 hex digits.
func sourceHash(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash sources in %s: %w", dir, err)
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\x00go %s %s\x00", imageBuilderVersion, runtime.Version(), runtime.GOARCH)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("hash sources: %w", err)
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func (d *DockerEnv) imageHasHash(ctx context.Context, ref, hash string) (bool, error) {
	img, err := d.Client.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.Config != nil && img.Config.Labels[LabelSourceHash] == hash, nil
}

// buildImage compiles the program and sends a two-file build context
// (Dockerfile, binary) to the engine's ImageBuild API.
func (d *DockerEnv) buildImage(ctx context.Context, tmp, name, src, ref, hash string) error {
	binData, err := goBuild(ctx, tmp, name, src)
	if err != nil {
		return err
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", name, name, name)
	return d.buildContext(ctx, ref, hash, []contextFile{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{name, 0o755, binData},
	})
}

// goBuild compiles the Go program in src as a static linux binary and
// returns it.
func goBuild(ctx context.Context, tmp, name, src string) ([]byte, error) {
	bin := filepath.Join(tmp, name)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", src, err, out)
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read built binary: %w", err)
	}
	return binData, nil
}

// contextFile is one regular file of an image build context.
type contextFile struct {
	name string // slash-separated path in the context
	mode int64
	data []byte
}

// buildContext sends files (a Dockerfile among them) as a tar build
// context to the engine's ImageBuild API, tagging the image ref with the
// test and hash labels.
func (d *DockerEnv) buildContext(ctx context.Context, ref, hash string, files []contextFile) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}

	res, err := d.Client.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{LabelTest: "1", LabelSourceHash: hash},
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	defer res.Body.Close()
	// The answer is a stream of JSON messages; a failed step is reported in
	// it, not through the HTTP status.
	var log strings.Builder
	dec := json.NewDecoder(res.Body)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("build image %s: read engine output: %w", ref, err)
		}
		log.WriteString(m.Stream)
		if m.Error != "" {
			return fmt.Errorf("build image %s: %s\n%s", ref, m.Error, log.String())
		}
	}
	return nil
}

// Healthcheck is a container healthcheck run by the engine. Zero fields get
// test-friendly defaults (not Docker's 30 s ones).
type Healthcheck struct {
	// Cmd is executed in the container without a shell (Docker's CMD
	// form), e.g. {"/webapp", "-healthcheck", "http://127.0.0.1:3000/up"}.
	Cmd         []string
	Interval    time.Duration // between checks; default 300ms
	Timeout     time.Duration // for one check; default 5s
	StartPeriod time.Duration // failures not counted; default 0
	Retries     int           // consecutive failures before unhealthy; default 1
}

// RunOpts says which container Run starts.
type RunOpts struct {
	Image string // required: a ref, usually from DockerEnv.Image
	// Name is the exact container name. When empty the name is
	// NamePrefix (default "backstop-test-") followed by 10 random hex
	// digits, e.g. NamePrefix "psyfit-web-" gives psyfit-web-3f9a0c21be.
	Name       string
	NamePrefix string
	Cmd        []string // arguments to the image's entrypoint
	Env        []string // KEY=VALUE
	Labels     map[string]string
	Health     *Healthcheck
	// Restart is the restart policy: "" or "no", "always",
	// "unless-stopped", "on-failure" (with MaxRetries).
	Restart    string
	MaxRetries int
	// NoStart only creates the container (state "created").
	NoStart bool
	// Ports are container TCP ports (e.g. 3000) to publish on the host's
	// 127.0.0.1, each on a free host port the engine picks; Container.URL
	// and Container.HostAddr give the published address. Nothing is
	// published unless asked for here.
	Ports []int
	// NetworkMode "" is the engine's default bridge. "host" shares the
	// host's network namespace: 127.0.0.1 inside the container is the
	// host's loopback (how a container reaches a test server listening on
	// 127.0.0.1), and whatever it listens on is on the host's loopback too.
	// Ports must then be empty.
	NetworkMode string
}

// publishIP is the only host address container ports are published on:
// tests reach containers through the loopback, never over the bridge.
var publishIP = netip.MustParseAddr("127.0.0.1")

// Container is a container started by Run. It is removed (forced, with its
// volumes) when the test ends.
type Container struct {
	ID    string
	Name  string
	Image string
	// IP is the container's address on the default bridge network, read
	// right after start; empty when it was not running then. It is only
	// for handing to another container (e.g. a proxy's upstream): tests
	// must never dial it from the host — traffic from this host to
	// private-range addresses is flagged. Dial URL or HostAddr instead.
	IP string
	// HostPorts maps each port in RunOpts.Ports to the 127.0.0.1 host port
	// the engine published it on, read after every Start (the engine may
	// pick another one when the container starts again). Empty before the
	// first start.
	HostPorts map[int]int

	d     *DockerEnv
	ports []int
}

// Run creates and starts a container and registers its forced removal
// with t.Cleanup. When the test fails, the container's last log lines are
// logged first.
func (d *DockerEnv) Run(t testing.TB, opts RunOpts) *Container {
	t.Helper()
	if opts.Image == "" {
		t.Fatalf("docker run: RunOpts.Image is empty")
	}
	name := opts.Name
	if name == "" {
		prefix := opts.NamePrefix
		if prefix == "" {
			prefix = "backstop-test-"
		}
		name = prefix + randomHex(5)
	}
	labels := map[string]string{LabelTest: "1"}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	cfg := &container.Config{Image: opts.Image, Cmd: opts.Cmd, Env: opts.Env, Labels: labels}
	if h := opts.Health; h != nil {
		hc := &container.HealthConfig{
			Test:        append([]string{"CMD"}, h.Cmd...),
			Interval:    orDuration(h.Interval, 300*time.Millisecond),
			Timeout:     orDuration(h.Timeout, 5*time.Second),
			StartPeriod: h.StartPeriod,
			Retries:     h.Retries,
		}
		if hc.Retries == 0 {
			hc.Retries = 1
		}
		cfg.Healthcheck = hc
	}
	hostCfg := &container.HostConfig{NetworkMode: container.NetworkMode(opts.NetworkMode)}
	if opts.NetworkMode == "host" && len(opts.Ports) > 0 {
		t.Fatalf("docker run: RunOpts.Ports %v with NetworkMode host: a host-network container's ports are the host's own", opts.Ports)
	}
	if len(opts.Ports) > 0 {
		cfg.ExposedPorts = network.PortSet{}
		hostCfg.PortBindings = network.PortMap{}
		for _, p := range opts.Ports {
			port, ok := network.PortFrom(uint16(p), network.TCP)
			if p <= 0 || p > 65535 || !ok {
				t.Fatalf("docker run: RunOpts.Ports has %d, want a TCP port 1-65535", p)
			}
			cfg.ExposedPorts[port] = struct{}{}
			// HostPort "" lets the engine pick a free port.
			hostCfg.PortBindings[port] = []network.PortBinding{{HostIP: publishIP, HostPort: ""}}
		}
	}
	if opts.Restart != "" {
		hostCfg.RestartPolicy = container.RestartPolicy{
			Name:              container.RestartPolicyMode(opts.Restart),
			MaximumRetryCount: opts.MaxRetries,
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	created, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hostCfg})
	if err != nil {
		t.Fatalf("create container %s from %s: %v", name, opts.Image, err)
	}
	c := &Container{ID: created.ID, Name: name, Image: opts.Image, HostPorts: map[int]int{}, d: d, ports: opts.Ports}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			if logs, err := c.logs(ctx); err == nil && logs != "" {
				t.Logf("container %s logs (tail):\n%s", c.Name, logs)
			}
		}
		_, err := d.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove container %s: %v", c.Name, err)
		}
	})
	if opts.NoStart {
		return c
	}
	c.Start(t)
	return c
}

// Start starts the container (again) and refreshes IP and HostPorts. A
// requested port the engine did not publish on 127.0.0.1 fails the test,
// unless the container had already stopped when it was inspected.
func (c *Container) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := c.d.Client.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container %s: %v", c.Name, err)
	}
	in := c.Inspect(t)
	c.IP = bridgeIP(in)
	ports, err := publishedPorts(in, c.ports)
	if err != nil && in.State != nil && in.State.Running {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	c.HostPorts = ports
}

// publishedPorts reads, for each wanted container TCP port, the host port
// the engine bound it to on 127.0.0.1. A binding on any other host address
// is an error: nothing may be published beyond the loopback.
func publishedPorts(in container.InspectResponse, want []int) (map[int]int, error) {
	got := map[int]int{}
	var missing []string
	for _, p := range want {
		port, _ := network.PortFrom(uint16(p), network.TCP)
		var bindings []network.PortBinding
		if in.NetworkSettings != nil {
			bindings = in.NetworkSettings.Ports[port]
		}
		for _, b := range bindings {
			if b.HostIP != publishIP {
				return got, fmt.Errorf("port %s published on %s:%s, want only %s", port, b.HostIP, b.HostPort, publishIP)
			}
			n, err := strconv.Atoi(b.HostPort)
			if err != nil || n <= 0 || n > 65535 {
				return got, fmt.Errorf("port %s published on bad host port %q", port, b.HostPort)
			}
			got[p] = n
		}
		if _, ok := got[p]; !ok {
			missing = append(missing, port.String())
		}
	}
	if len(missing) > 0 {
		return got, fmt.Errorf("port %s not published on %s", strings.Join(missing, ", "), publishIP)
	}
	return got, nil
}

// Stop stops the container (SIGTERM, SIGKILL after 5 s) and returns when it
// is no longer running. A restart policy does not bring it back.
func (c *Container) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	timeout := 5
	if _, err := c.d.Client.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("stop container %s: %v", c.Name, err)
	}
}

// Inspect returns the engine's current view of the container.
func (c *Container) Inspect(t testing.TB) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := c.d.Client.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect container %s: %v", c.Name, err)
	}
	return res.Container
}

// WaitFor polls the container every 100ms until cond holds and returns
// that view; after timeout (default 30s) it fails the test with what (a
// description of the awaited condition) and the last state seen.
func (c *Container) WaitFor(t testing.TB, what string, timeout time.Duration, cond func(container.InspectResponse) bool) container.InspectResponse {
	t.Helper()
	deadline := time.Now().Add(orDuration(timeout, 30*time.Second))
	for {
		in := c.Inspect(t)
		if cond(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: gave up waiting for %s; last state %s", c.Name, what, describeState(in))
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("container %s: waiting for %s: %v", c.Name, what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitHealth waits until the engine reports the container's health as
// status ("starting", "healthy" or "unhealthy").
func (c *Container) WaitHealth(t testing.TB, status string) container.InspectResponse {
	t.Helper()
	return c.WaitFor(t, "health "+status, 0, func(in container.InspectResponse) bool {
		return in.State != nil && in.State.Health != nil && string(in.State.Health.Status) == status
	})
}

// WaitExited waits until the container has exited and returns its exit code.
func (c *Container) WaitExited(t testing.TB) int {
	t.Helper()
	in := c.WaitFor(t, "exited", 0, func(in container.InspectResponse) bool {
		return in.State != nil && in.State.Status == container.StateExited
	})
	return in.State.ExitCode
}

// WaitRestarts waits until the engine's restart count reaches at least n.
func (c *Container) WaitRestarts(t testing.TB, n int) container.InspectResponse {
	t.Helper()
	return c.WaitFor(t, "restart count "+strconv.Itoa(n), 0, func(in container.InspectResponse) bool {
		return in.RestartCount >= n
	})
}

// HostAddr returns 127.0.0.1:<host port> where the container's TCP port
// is published. It panics when port was not in RunOpts.Ports or the
// container was not running at its last Start: a test bug, not a state
// of the system under test.
func (c *Container) HostAddr(port int) string {
	hp, ok := c.HostPorts[port]
	if !ok {
		panic(fmt.Sprintf("container %s: port %d is not published on %s: add it to RunOpts.Ports (published: %v)", c.Name, port, publishIP, c.HostPorts))
	}
	return net.JoinHostPort(publishIP.String(), strconv.Itoa(hp))
}

// URL returns http://127.0.0.1:<host port><path> for the container's TCP
// port, published through RunOpts.Ports; see HostAddr.
func (c *Container) URL(port int, path string) string {
	return "http://" + c.HostAddr(port) + path
}

// WaitHTTP polls GET url (e.g. c.URL(3000, "/up")) until it answers 200 and
// returns the body; after 30 s it fails the test with the last error. A URL
// whose host is not a loopback address (such as the bridge IP) fails the
// test at once, before anything is dialled.
func (c *Container) WaitHTTP(t testing.TB, url string) string {
	t.Helper()
	if err := checkLoopbackURL(url); err != nil {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := getOK(t.Context(), hc, url)
		if err == nil {
			return body
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			t.Fatalf("container %s: %s never answered 200: %v", c.Name, url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Logs returns the container's stdout and stderr, interleaved.
func (c *Container) Logs(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := c.logs(ctx)
	if err != nil {
		t.Fatalf("logs of container %s: %v", c.Name, err)
	}
	return out
}

func (c *Container) logs(ctx context.Context) (string, error) {
	rc, err := c.d.Client.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "50"})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return "", err
	}
	return demuxLogs(raw), nil
}

// demuxLogs strips the engine's 8-byte frame headers (stream, 0, 0, 0,
// big-endian length) from a non-TTY log stream.
func demuxLogs(raw []byte) string {
	var out strings.Builder
	for len(raw) >= 8 && raw[1] == 0 && raw[2] == 0 && raw[3] == 0 {
		n := int(binary.BigEndian.Uint32(raw[4:8]))
		raw = raw[8:]
		if n > len(raw) {
			n = len(raw)
		}
		out.Write(raw[:n])
		raw = raw[n:]
	}
	out.Write(raw)
	return out.String()
}

// checkLoopbackURL accepts only URLs whose host is a loopback IP address:
// tests reach containers through ports published on 127.0.0.1.
func checkLoopbackURL(raw string) error {
	u, err := neturl.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse URL %q: %w", raw, err)
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("URL %s: host %q is not a loopback address; dial the container through Container.URL (ports published on %s), never its bridge IP", raw, u.Hostname(), publishIP)
	}
	return nil
}

func getOK(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(body), nil
}

func bridgeIP(in container.InspectResponse) string {
	if in.NetworkSettings == nil {
		return ""
	}
	if ep := in.NetworkSettings.Networks["bridge"]; ep != nil && ep.IPAddress.IsValid() {
		return ep.IPAddress.String()
	}
	for _, ep := range in.NetworkSettings.Networks {
		if ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String()
		}
	}
	return ""
}

func describeState(in container.InspectResponse) string {
	if in.State == nil {
		return "unknown"
	}
	s := fmt.Sprintf("%s (exit code %d, restarts %d", in.State.Status, in.State.ExitCode, in.RestartCount)
	if h := in.State.Health; h != nil {
		s += ", health " + string(h.Status)
		if n := len(h.Log); n > 0 {
			s += ": " + strings.TrimSpace(h.Log[n-1].Output)
		}
	}
	return s + ")"
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
