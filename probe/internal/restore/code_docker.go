package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"backstop/shared/manifest"
)

// ProxyConfig says how to reach kamal-proxy: the container it runs in
// (default "kamal-proxy"), the service name it knows the app by (default
// the app's container prefix, e.g. psyfit-web) and the host it serves the
// app on ("" = no --host).
type ProxyConfig struct {
	Container string
	Service   string
	Host      string
}

// dockerAPI is the part of the Docker client DockerCode needs.
type dockerAPI interface {
	ContainerList(ctx context.Context, o client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerStop(ctx context.Context, id string, o client.ContainerStopOptions) (client.ContainerStopResult, error)
	ExecCreate(ctx context.Context, id string, o client.ExecCreateOptions) (client.ExecCreateResult, error)
	ExecAttach(ctx context.Context, id string, o client.ExecAttachOptions) (client.ExecAttachResult, error)
	ExecInspect(ctx context.Context, id string, o client.ExecInspectOptions) (client.ExecInspectResult, error)
}

// DockerCode is the docker strategy, the first runbook's manual rollback:
// Kamal keeps the exited containers of earlier versions (psyfit-web-<version>);
// Apply starts the snapshot's one, waits for its health, points kamal-proxy
// at it (`kamal-proxy deploy` executed in the proxy container) and stops the
// container that ran before. Revert does the same the other way round.
type DockerCode struct {
	docker        dockerAPI
	app           string
	port          int
	proxy         ProxyConfig
	stateDir      string
	healthTimeout time.Duration

	mu  sync.Mutex
	mem map[string]*dockerState // txn -> what Apply did
}

var _ Code = (*DockerCode)(nil)

// NewDockerCode returns the docker strategy for the app whose containers
// are named app-<version> (Kamal's prefix, e.g. psyfit-web), serving on
// port inside them (default 3000). healthTimeout (default 60 s) bounds
// each wait for a started container to be healthy (or running, without a
// healthcheck) and is passed to kamal-proxy as --deploy-timeout. What
// Revert needs is kept in stateDir/code-<txn>.json.
func NewDockerCode(docker *client.Client, app string, port int, proxy ProxyConfig, stateDir string, healthTimeout time.Duration) *DockerCode {
	return newDockerCode(docker, app, port, proxy, stateDir, healthTimeout)
}

func newDockerCode(docker dockerAPI, app string, port int, proxy ProxyConfig, stateDir string, healthTimeout time.Duration) *DockerCode {
	if port == 0 {
		port = 3000
	}
	if proxy.Container == "" {
		proxy.Container = "kamal-proxy"
	}
	if proxy.Service == "" {
		proxy.Service = app
	}
	if healthTimeout <= 0 {
		healthTimeout = 60 * time.Second
	}
	return &DockerCode{docker: docker, app: app, port: port, proxy: proxy, stateDir: stateDir,
		healthTimeout: healthTimeout, mem: map[string]*dockerState{}}
}

// dockerState is what Apply did for one txn, written before it changes
// anything, so Revert can undo it from another process.
type dockerState struct {
	Strategy string `json:"strategy"` // "docker"
	Txn      string `json:"txn"`
	// Started is the snapshot's container Apply starts; Stopped the one
	// that ran before (empty when none did), which Apply stops.
	Started containerRef `json:"started"`
	Stopped containerRef `json:"stopped"`
	// PreviousTarget is where the proxy sent the service before (the
	// stopped container's address then); Revert switches the proxy to that
	// container's address at revert time, which may differ.
	PreviousTarget string `json:"previous_target,omitempty"`
	Service        string `json:"service"`
	Host           string `json:"host,omitempty"`
	Reverted       bool   `json:"reverted"`
}

type containerRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// dockerPlan is what resolve found.
type dockerPlan struct {
	target  container.Summary  // the snapshot's container
	current *container.Summary // the newest running one of the app; nil = none
	noop    bool               // target already runs
}

// Plan names the container it would start, the proxy switch and the
// container it would stop. It fails when no container of the snapshot's
// image or revision exists or the proxy container is not running.
func (d *DockerCode) Plan(ctx context.Context, m manifest.Manifest) (string, error) {
	p, err := d.resolve(ctx, m)
	if err != nil {
		return "", err
	}
	if p.noop {
		return fmt.Sprintf("%s (%s) already runs: code unchanged", ctrName(p.target), p.target.Image), nil
	}
	if _, err := d.proxyContainer(ctx); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "start %s (%s), switch kamal-proxy %s", ctrName(p.target), d.since(ctx, p.target), d.proxy.Service)
	if d.proxy.Host != "" {
		fmt.Fprintf(&b, " (host %s)", d.proxy.Host)
	}
	fmt.Fprintf(&b, " to %s:%d", ctrName(p.target), d.port)
	if p.current != nil {
		fmt.Fprintf(&b, ", stop %s", ctrName(*p.current))
	}
	return b.String(), nil
}

// since says how long ago the container exited, e.g. "exited 2h ago".
func (d *DockerCode) since(ctx context.Context, s container.Summary) string {
	in, err := d.docker.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
	if err != nil || in.Container.State == nil {
		return string(s.State)
	}
	st := in.Container.State
	fin, err := time.Parse(time.RFC3339Nano, st.FinishedAt)
	if err != nil || fin.IsZero() || fin.Year() < 2000 {
		return string(st.Status)
	}
	return fmt.Sprintf("%s %s ago", st.Status, roughDuration(time.Since(fin)))
}

// roughDuration prints d in its largest unit: 45s, 12m, 5h, 3d.
func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	default:
		return strconv.Itoa(int(d.Hours()/24)) + "d"
	}
}

func ctrName(s container.Summary) string {
	for _, n := range s.Names {
		return strings.TrimPrefix(n, "/")
	}
	return s.ID
}

// family reports whether a container name is the app's: app itself or
// app-<version>.
func (d *DockerCode) family(n string) bool {
	return n == d.app || (strings.HasPrefix(n, d.app+"-") && !strings.Contains(n, "/"))
}

// resolve finds the snapshot's container: the app's containers whose image
// is m.App.Image, else whose name ends with -<m.App.Revision>; among
// several, a running one means nothing to do, else the newest is taken.
func (d *DockerCode) resolve(ctx context.Context, m manifest.Manifest) (dockerPlan, error) {
	var p dockerPlan
	if m.App.Image == "" && m.App.Revision == "" {
		return p, fmt.Errorf("snapshot %s records no app image or revision: nothing to roll the code back to", m.ID)
	}
	list, err := d.docker.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return p, fmt.Errorf("list containers: %w", err)
	}
	var mine []container.Summary
	for _, s := range list.Items {
		if d.family(ctrName(s)) {
			mine = append(mine, s)
		}
	}
	// Newest first; ties by id for a stable choice.
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].Created != mine[j].Created {
			return mine[i].Created > mine[j].Created
		}
		return mine[i].ID < mine[j].ID
	})
	pick := func(match func(container.Summary) bool) []container.Summary {
		var out []container.Summary
		for _, s := range mine {
			if match(s) {
				out = append(out, s)
			}
		}
		return out
	}
	var cands []container.Summary
	if img := m.App.Image; img != "" {
		cands = pick(func(s container.Summary) bool {
			return s.Image == img || (strings.HasPrefix(img, "sha256:") && s.ImageID == img)
		})
	}
	if len(cands) == 0 && m.App.Revision != "" {
		suffix := "-" + m.App.Revision
		cands = pick(func(s container.Summary) bool { return strings.HasSuffix(ctrName(s), suffix) })
	}
	if len(cands) == 0 {
		var seen []string
		for _, s := range mine {
			seen = append(seen, fmt.Sprintf("%s (%s, %s)", ctrName(s), s.Image, s.State))
		}
		have := "none"
		if len(seen) > 0 {
			have = strings.Join(seen, ", ")
		}
		return p, fmt.Errorf("no container of image %q or named %s-%s to roll back to (Kamal's exited containers may have been pruned); the app's containers: %s",
			m.App.Image, d.app, m.App.Revision, have)
	}
	for _, s := range cands {
		if s.State == container.StateRunning {
			return dockerPlan{target: s, noop: true}, nil
		}
	}
	p.target = cands[0]
	for i, s := range mine {
		if s.State == container.StateRunning && s.ID != p.target.ID {
			p.current = &mine[i]
			break
		}
	}
	return p, nil
}

// proxyContainer inspects the proxy container and requires it running.
func (d *DockerCode) proxyContainer(ctx context.Context) (container.InspectResponse, error) {
	res, err := d.docker.ContainerInspect(ctx, d.proxy.Container, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, fmt.Errorf("proxy container %s: not found", d.proxy.Container)
	}
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect proxy container %s: %w", d.proxy.Container, err)
	}
	in := res.Container
	if in.State == nil || !in.State.Running {
		status := "unknown"
		if in.State != nil {
			status = string(in.State.Status)
		}
		return in, fmt.Errorf("proxy container %s is %s, not running", d.proxy.Container, status)
	}
	return in, nil
}

// Apply starts the snapshot's container, waits for it, switches the proxy
// to it and stops the container that ran before. On a failure it undoes
// what it did (the previous container serves again) before returning.
func (d *DockerCode) Apply(ctx context.Context, m manifest.Manifest, txn string) error {
	p, err := d.resolve(ctx, m)
	if err != nil {
		return err
	}
	if p.noop {
		return nil
	}
	proxy, err := d.proxyContainer(ctx)
	if err != nil {
		return err
	}
	st := &dockerState{Strategy: "docker", Txn: txn, Service: d.proxy.Service, Host: d.proxy.Host,
		Started: containerRef{ID: p.target.ID, Name: ctrName(p.target)}}
	if p.current != nil {
		st.Stopped = containerRef{ID: p.current.ID, Name: ctrName(*p.current)}
		if in, err := d.inspect(ctx, p.current.ID); err == nil {
			if ip, err := sharedIP(in, proxy); err == nil {
				st.PreviousTarget = d.target(ip)
			}
		}
	}
	if err := d.save(st); err != nil {
		return err
	}
	if err := d.forward(ctx, st, proxy); err != nil {
		if uerr := d.undo(ctx, st); uerr != nil {
			return fmt.Errorf("%w; undoing it failed too: %w", err, uerr)
		}
		if st.Stopped.ID != "" {
			return fmt.Errorf("%w (undone: %s serves again)", err, st.Stopped.Name)
		}
		return fmt.Errorf("%w (undone: %s stopped again)", err, st.Started.Name)
	}
	return nil
}

func (d *DockerCode) forward(ctx context.Context, st *dockerState, proxy container.InspectResponse) error {
	in, err := d.startAndWait(ctx, st.Started)
	if err != nil {
		return err
	}
	ip, err := sharedIP(in, proxy)
	if err != nil {
		return fmt.Errorf("container %s: %w", st.Started.Name, err)
	}
	if err := d.deploy(ctx, proxy.ID, d.target(ip)); err != nil {
		return err
	}
	if st.Stopped.ID != "" {
		if err := d.stop(ctx, st.Stopped); err != nil {
			return err
		}
	}
	return nil
}

// Revert undoes Apply of txn: starts the container that ran before, waits
// for it, switches the proxy back to it and stops the one Apply started.
// Every action is "make it so", so Revert also finishes an Apply that was
// interrupted anywhere (e.g. the probe killed), and running it twice is
// harmless.
func (d *DockerCode) Revert(ctx context.Context, txn string) error {
	d.mu.Lock()
	st := d.mem[txn]
	d.mu.Unlock()
	if st == nil {
		st = &dockerState{}
		found, err := loadCodeState(d.stateDir, txn, st)
		if err != nil {
			return err
		}
		if !found {
			return nil
		}
		if st.Strategy != "docker" {
			return fmt.Errorf("code state of %s was written by the %s strategy, not docker", txn, st.Strategy)
		}
	}
	if st.Reverted {
		return nil
	}
	return d.undo(ctx, st)
}

// undo brings back the previous container and proxy target, stops the
// started one and records that in the state.
func (d *DockerCode) undo(ctx context.Context, st *dockerState) error {
	if st.Stopped.ID != "" {
		proxy, err := d.proxyContainer(ctx)
		if err != nil {
			return fmt.Errorf("revert code: %w", err)
		}
		in, err := d.startAndWait(ctx, st.Stopped)
		if err != nil {
			return fmt.Errorf("revert code: %w", err)
		}
		ip, err := sharedIP(in, proxy)
		if err != nil {
			return fmt.Errorf("revert code: container %s: %w", st.Stopped.Name, err)
		}
		if err := d.deploy(ctx, proxy.ID, d.target(ip)); err != nil {
			return fmt.Errorf("revert code: %w", err)
		}
	}
	if err := d.stop(ctx, st.Started); err != nil {
		return fmt.Errorf("revert code: %w", err)
	}
	st.Reverted = true
	return d.save(st)
}

func (d *DockerCode) save(st *dockerState) error {
	d.mu.Lock()
	d.mem[st.Txn] = st
	d.mu.Unlock()
	return saveCodeState(d.stateDir, st.Txn, st)
}

func (d *DockerCode) target(ip string) string {
	return ip + ":" + strconv.Itoa(d.port)
}

func (d *DockerCode) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	res, err := d.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return res.Container, nil
}

// startAndWait starts c (a no-op when it runs) and waits until it is
// healthy, or running when it has no healthcheck, for healthTimeout.
func (d *DockerCode) startAndWait(ctx context.Context, c containerRef) (container.InspectResponse, error) {
	if _, err := d.docker.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		return container.InspectResponse{}, fmt.Errorf("start container %s: %w", c.Name, err)
	}
	deadline := time.Now().Add(d.healthTimeout)
	for {
		in, err := d.inspect(ctx, c.ID)
		if err != nil {
			return in, err
		}
		st := in.State
		if st == nil {
			return in, fmt.Errorf("container %s: the engine reports no state", c.Name)
		}
		hasCheck := in.Config != nil && in.Config.Healthcheck != nil && len(in.Config.Healthcheck.Test) > 0 && in.Config.Healthcheck.Test[0] != "NONE"
		switch {
		case st.Status == container.StateExited || st.Status == container.StateDead:
			return in, fmt.Errorf("container %s %s (exit code %d) after it was started", c.Name, st.Status, st.ExitCode)
		case st.Running && (!hasCheck || (st.Health != nil && st.Health.Status == container.Healthy)):
			return in, nil
		}
		if time.Now().After(deadline) {
			return in, fmt.Errorf("container %s not healthy within %s: %s", c.Name, d.healthTimeout, healthText(st))
		}
		select {
		case <-ctx.Done():
			return in, fmt.Errorf("wait for container %s: %w", c.Name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func healthText(st *container.State) string {
	s := string(st.Status)
	if h := st.Health; h != nil {
		s += ", health " + string(h.Status)
		if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
			s += ": " + strings.TrimSpace(h.Log[n-1].Output)
		}
	}
	return s
}

// stop stops c (10 s before SIGKILL); an already stopped or removed
// container is fine.
func (d *DockerCode) stop(ctx context.Context, c containerRef) error {
	timeout := 10
	if _, err := d.docker.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", c.Name, err)
	}
	return nil
}

// sharedIP is the container's address on a network the proxy is on too
// (any of its networks when the proxy uses the host's network).
func sharedIP(in, proxy container.InspectResponse) (string, error) {
	if in.NetworkSettings == nil || len(in.NetworkSettings.Networks) == 0 {
		return "", errors.New("no network address")
	}
	hostProxy := proxy.HostConfig != nil && proxy.HostConfig.NetworkMode.IsHost()
	var names []string
	for n := range in.NetworkSettings.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ep := in.NetworkSettings.Networks[n]
		if ep == nil || !ep.IPAddress.IsValid() {
			continue
		}
		if hostProxy {
			return ep.IPAddress.String(), nil
		}
		if proxy.NetworkSettings != nil && proxy.NetworkSettings.Networks[n] != nil {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("on no network the proxy container shares (its networks: %s)", strings.Join(names, ", "))
}

// deploy runs `kamal-proxy deploy <service> --target <target> [--host h]
// --deploy-timeout <healthTimeout>` in the proxy container and fails with
// its output when it exits non-zero.
func (d *DockerCode) deploy(ctx context.Context, proxyID, target string) error {
	cmd := []string{"kamal-proxy", "deploy", d.proxy.Service, "--target", target}
	if d.proxy.Host != "" {
		cmd = append(cmd, "--host", d.proxy.Host)
	}
	cmd = append(cmd, "--deploy-timeout", d.healthTimeout.String())
	what := fmt.Sprintf("%s in container %s", strings.Join(cmd[:5], " "), d.proxy.Container)
	ex, err := d.docker.ExecCreate(ctx, proxyID, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		return fmt.Errorf("%s: create exec: %w", what, err)
	}
	att, err := d.docker.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("%s: start exec: %w", what, err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	var out tailBuf
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return fmt.Errorf("%s: read output: %w", what, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		in, err := d.docker.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			return fmt.Errorf("%s: inspect exec: %w", what, err)
		}
		if !in.Running {
			if in.ExitCode != 0 {
				msg := out.lastLines(3)
				if msg == "" {
					msg = "no output"
				}
				return fmt.Errorf("%s: exit status %d: %s", what, in.ExitCode, msg)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still running after its output ended", what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
