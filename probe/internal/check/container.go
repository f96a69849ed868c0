package check

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"backstop/probe/internal/config"
	"backstop/shared/clip"
)

func init() { register("container", newContainer) }

// defaultDockerHost is the engine address when neither socket: nor
// DOCKER_HOST says otherwise.
const defaultDockerHost = "unix:///var/run/docker.sock"

// ContainerCheck asks the Docker engine (Engine API over its socket) about
// each configured container. A configured name matches a container of that
// exact name, or else those named <name>-* (Kamal's psyfit-web-<version>),
// of which the running one, newest by creation time, is judged.
//
// The checker remembers each container's restart count between rounds (the
// daemon keeps one ContainerCheck for its whole life), so a container that
// restarted since the previous round is critical even when it is running
// at the moment of the check.
type ContainerCheck struct {
	name    string
	names   []string
	host    string // engine address, for messages
	cli     *client.Client
	timeout time.Duration

	mu       sync.Mutex
	restarts map[string]int // container ID -> RestartCount seen last round
}

var _ Checker = (*ContainerCheck)(nil)

func newContainer(c config.Check) (Checker, error) {
	if len(c.Containers) == 0 {
		return nil, errors.New("containers: name at least one container")
	}
	names := make([]string, len(c.Containers))
	for i, n := range c.Containers {
		n = strings.TrimPrefix(strings.TrimSpace(n), "/")
		if n == "" {
			return nil, fmt.Errorf("containers[%d]: empty name", i)
		}
		names[i] = n
	}
	host := c.Socket
	opts := []client.Opt{}
	switch {
	case host == "":
		// DOCKER_HOST and its TLS settings, or the default socket.
		host = os.Getenv("DOCKER_HOST")
		if host == "" {
			host = defaultDockerHost
		}
		opts = append(opts, client.FromEnv)
	case strings.HasPrefix(host, "/"):
		host = "unix://" + host
		opts = append(opts, client.WithHost(host))
	default:
		opts = append(opts, client.WithHost(host))
	}
	if !strings.HasPrefix(host, "unix://") && !strings.HasPrefix(host, "tcp://") {
		return nil, fmt.Errorf("socket: must be unix:///path/docker.sock, /path/docker.sock or tcp://host:port (got %q)", host)
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("socket: %q: %w", host, err)
	}
	t := c.Timeout.D()
	if t <= 0 {
		t = config.DefaultTimeout
	}
	return &ContainerCheck{name: c.Name, names: names, host: host, cli: cli, timeout: t, restarts: map[string]int{}}, nil
}

// Check lists the engine's containers once, inspects the chosen one for
// each configured name and judges it:
//
//   - no match: Critical ("psyfit-web: no container named psyfit-web or psyfit-web-*");
//   - exited, created, paused, restarting, dead: Critical with the state,
//     exit code and how long ago it stopped;
//   - running but unhealthy: Critical with the last healthcheck output;
//     health starting: Warn;
//   - restart count higher than at the previous round: Critical
//     ("restarted 2 times since last check");
//   - otherwise OK.
//
// The Status is the worst of these, Message joins the problems (or lists
// what runs when all is well), Value is "2/3 running". An engine that
// cannot be reached, an API error or the end of ctx (deadline: Timeout or
// ctx's, whichever is sooner) gives Unknown with the cause; restart counts
// are then left as they were.
func (c *ContainerCheck) Check(ctx context.Context) Result {
	start := time.Now()
	res := Result{Name: c.name, Type: "container", At: start}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	unknown := func(msg string) Result {
		res.Status, res.Value, res.Message = Unknown, "unknown", msg
		res.Latency = time.Since(start)
		return res
	}

	// The client hides why a unix socket could not be reached (no file,
	// nobody listening); one dial of our own names the cause.
	if path, ok := strings.CutPrefix(c.host, "unix://"); ok {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return unknown(fmt.Sprintf("Docker engine not reachable at %s: no socket file at %s", c.host, path))
		case err != nil:
			return unknown(fmt.Sprintf("Docker engine not reachable at %s: %s", c.host, c.cause(ctx, err)))
		}
		conn.Close()
	}
	list, err := c.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return unknown(fmt.Sprintf("Docker engine not reachable at %s: %s", c.host, c.cause(ctx, err)))
	}

	parts := make([]Result, 0, len(c.names)) // per name: Status and Message
	observed := make([]map[string]any, 0, len(c.names))
	seen := map[string]int{}
	running := 0
	for _, name := range c.names {
		in, found, err := c.pick(ctx, list.Items, name)
		if err != nil {
			return unknown(fmt.Sprintf("Docker engine at %s: %s", c.host, err))
		}
		if !found {
			parts = append(parts, Result{Status: Critical, Message: fmt.Sprintf("%s: no container named %s or %s-*", name, name, name)})
			observed = append(observed, map[string]any{"config_name": name, "state": "missing"})
			continue
		}
		c.mu.Lock()
		prev, had := c.restarts[in.ID]
		c.mu.Unlock()
		seen[in.ID] = in.RestartCount
		p := judge(in, prev, had, start)
		if in.State != nil && in.State.Status == container.StateRunning {
			running++
		}
		parts = append(parts, p)
		observed = append(observed, observe(name, in))
	}

	c.mu.Lock()
	c.restarts = seen
	c.mu.Unlock()

	res.Status = Worst(parts)
	res.Value = fmt.Sprintf("%d/%d running", running, len(c.names))
	var msgs []string
	for _, p := range parts {
		if p.Status != OK || res.Status == OK {
			msgs = append(msgs, p.Message)
		}
	}
	res.Message = strings.Join(msgs, "; ")
	res.Observed = map[string]any{"containers": observed, "running": running, "configured": len(c.names)}
	res.Latency = time.Since(start)
	return res
}

// cause is one clean line for a failed engine call.
func (c *ContainerCheck) cause(ctx context.Context, err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return "no answer within " + c.timeout.String()
	case errors.As(err, &errno):
		return errno.Error()
	}
	return err.Error()
}

// pick finds the container for one configured name: the one named exactly
// name if any, else among those named name-* the running one (then
// restarting, then any other state), newest by creation time. found is
// false when nothing matches.
func (c *ContainerCheck) pick(ctx context.Context, list []container.Summary, name string) (in container.InspectResponse, found bool, err error) {
	var candidates []string
	for _, s := range list {
		for _, n := range s.Names {
			n = strings.TrimPrefix(n, "/")
			if n == name {
				in, err := c.inspect(ctx, s.ID)
				if cerrdefs.IsNotFound(err) {
					return in, false, nil // removed since the list
				}
				return in, err == nil, err
			}
			if strings.HasPrefix(n, name+"-") && !strings.Contains(n, "/") {
				candidates = append(candidates, s.ID)
				break
			}
		}
	}
	var all []container.InspectResponse
	for _, id := range candidates {
		in, err := c.inspect(ctx, id)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return in, false, err
		}
		all = append(all, in)
	}
	if len(all) == 0 {
		return in, false, nil
	}
	sort.SliceStable(all, func(i, j int) bool {
		ri, rj := stateRank(all[i]), stateRank(all[j])
		if ri != rj {
			return ri > rj
		}
		ti, tj := createdAt(all[i]), createdAt(all[j])
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return all[i].ID < all[j].ID
	})
	return all[0], true, nil
}

func (c *ContainerCheck) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	r, err := c.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return r.Container, err
		}
		return r.Container, fmt.Errorf("inspect container %s: %s", shortID(id), c.cause(ctx, err))
	}
	return r.Container, nil
}

// stateRank orders prefix matches: running first, then restarting.
func stateRank(in container.InspectResponse) int {
	if in.State == nil {
		return 0
	}
	switch in.State.Status {
	case container.StateRunning:
		return 2
	case container.StateRestarting:
		return 1
	}
	return 0
}

func createdAt(in container.InspectResponse) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, in.Created)
	return t
}

// judge turns one inspected container into a Status and a message part.
// prev is its restart count at the previous round (had: it was seen then).
func judge(in container.InspectResponse, prev int, had bool, now time.Time) Result {
	name := strings.TrimPrefix(in.Name, "/")
	st := in.State
	if st == nil {
		return Result{Status: Unknown, Message: name + ": engine reported no state"}
	}
	var problems []string
	status := OK
	raise := func(s Status, msg string) {
		if rank(s) > rank(status) {
			status = s
		}
		problems = append(problems, msg)
	}

	switch st.Status {
	case container.StateRunning:
		if h := st.Health; h != nil {
			switch h.Status {
			case container.Unhealthy:
				msg := "unhealthy"
				if out := lastHealthOutput(h); out != "" {
					msg += ": " + out
				} else {
					msg += fmt.Sprintf(" (%d failing checks)", h.FailingStreak)
				}
				raise(Critical, msg)
			case container.Starting:
				raise(Warn, "health starting")
			}
		}
	case container.StateExited:
		msg := fmt.Sprintf("exited (code %d", st.ExitCode)
		if st.OOMKilled {
			msg += ", OOM killed"
		}
		msg += ")"
		if t, err := time.Parse(time.RFC3339Nano, st.FinishedAt); err == nil && t.Year() > 1 {
			msg += " " + ago(now.Sub(t))
		}
		if st.Error != "" {
			msg += ": " + clip.Line(st.Error, 200)
		}
		raise(Critical, msg)
	case container.StateRestarting:
		raise(Critical, fmt.Sprintf("restarting (exit code %d, %s so far)", st.ExitCode, times(in.RestartCount, "restart")))
	case container.StateCreated:
		raise(Critical, "created but never started")
	default: // paused, removing, dead
		raise(Critical, string(st.Status))
	}
	if had && in.RestartCount > prev {
		raise(Critical, "restarted "+times(in.RestartCount-prev, "time")+" since last check")
	}

	if status == OK {
		msg := name + " running"
		if st.Health != nil && st.Health.Status == container.Healthy {
			msg += " (healthy)"
		}
		return Result{Status: OK, Message: msg}
	}
	return Result{Status: status, Message: name + ": " + strings.Join(problems, ", ")}
}

// observe is the per-container entry of Result.Observed.
func observe(configName string, in container.InspectResponse) map[string]any {
	o := map[string]any{
		"config_name":   configName,
		"name":          strings.TrimPrefix(in.Name, "/"),
		"id":            shortID(in.ID),
		"restart_count": in.RestartCount,
		"health":        "none",
	}
	if in.State != nil {
		o["state"] = string(in.State.Status)
		if in.State.Health != nil {
			o["health"] = string(in.State.Health.Status)
		}
	}
	if in.Config != nil {
		o["image"] = in.Config.Image
	}
	return o
}

func lastHealthOutput(h *container.Health) string {
	if len(h.Log) == 0 || h.Log[len(h.Log)-1] == nil {
		return ""
	}
	return clip.Line(h.Log[len(h.Log)-1].Output, 200)
}

func times(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// ago is a coarse age: 45s ago, 2m ago, 5h ago, 3d ago.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s ago"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
