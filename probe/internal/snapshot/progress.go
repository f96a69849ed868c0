package snapshot

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints one self-overwriting line on a terminal: the stage,
// bytes written (compressed), rate, and an ETA from the previous snapshot's
// size. With a nil terminal every method is a no-op.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	expected int64
	start    time.Time
	last     time.Time
	total    int64
	name     string
	printed  bool
}

func newProgress(w io.Writer, expected int64) *progress {
	now := time.Now()
	// the first line waits one interval: a rate from the first bytes is noise
	return &progress{w: w, expected: expected, start: now, last: now}
}

// stage returns the writer that counts the bytes of one stage.
func (p *progress) stage(name string) io.Writer {
	if p.w == nil {
		return nil
	}
	return &stageWriter{p: p, name: name}
}

type stageWriter struct {
	p    *progress
	name string
}

func (s *stageWriter) Write(b []byte) (int, error) {
	s.p.add(s.name, len(b))
	return len(b), nil
}

func (p *progress) add(name string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += int64(n)
	p.name = name
	if now := time.Now(); now.Sub(p.last) >= 250*time.Millisecond {
		p.last = now
		p.print(now)
	}
}

func (p *progress) print(now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := float64(p.total) / max(el, 0.001)
	line := fmt.Sprintf("\r%-4s %10s  %9s/s", p.name, HumanSize(p.total), HumanSize(int64(rate)))
	if p.expected > 0 && rate > 0 && p.total < p.expected {
		eta := time.Duration(float64(p.expected-p.total) / rate * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf("  ETA %s", eta)
	}
	fmt.Fprintf(p.w, "%-60s", line)
	p.printed = true
}

func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printed {
		fmt.Fprint(p.w, "\r"+fmt.Sprintf("%-60s", "")+"\r")
	}
}
