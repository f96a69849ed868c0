# backstop — see README.md. `make demo` and `make test` are the two commands
# a newcomer needs; both install and start what they use (scripts/deps.sh).
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X backstop/probe/internal/cli.Version=$(VERSION)

.PHONY: all build probe test test-short lint fmt vet bench bench-backup demo deps measure clean

all: build

build: probe

## probe: one static binary for the host
probe:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/probe ./probe

deps:
	bash scripts/deps.sh

## test: every test, against real PostgreSQL, Docker engine, redis, TLS, tmpfs
test: deps
	$(GO) test -count=1 -timeout 20m ./...

## lint: gofmt, go vet, and cfn-lint on template.yaml when it is installed (TESTING.md: lint when present)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v cfn-lint >/dev/null 2>&1; then cfn-lint template.yaml && echo "cfn-lint: template.yaml clean"; \
	else echo "cfn-lint not installed (it ships with the image's Python): template.yaml not linted"; fi

## bench: benchmarks as ratios of a baseline run in the same process, then make measure
bench: deps probe
	bash scripts/bench.sh

## bench-backup: probe backup (local, and uploaded to a local S3) against pg_dump -Fc and -Z0 on a >= 1 GB pgbench database
bench-backup: deps probe
	bash scripts/bench-backup.sh

## measure: the probe's RSS and CPU per round against a shell monitor.sh round
measure: deps probe
	bash scripts/measure-probe.sh

demo: deps probe
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)
