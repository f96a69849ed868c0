# backstop — see README.md. `make demo` and `make test` are the two commands
# a newcomer needs; both install and start what they use (scripts/deps.sh).
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X backstop/probe/internal/cli.Version=$(VERSION)

.PHONY: all build probe functions build-UptimeFunction build-AlertFunction test test-short lint fmt vet bench bench-backup bench-restore demo deps measure clean

all: build

build: probe

## probe: one static binary for the host
probe:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/probe ./probe

## The Lambda functions: provided.al2023 on arm64 runs a static binary named
## bootstrap. Runtime API client only (lambda.norpc), no cgo, no local paths.
FUNCTIONS := uptime alert restore offsite
LAMBDA_BUILD := GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags '-s -w'

## build-<LogicalId>: what `sam build` runs for a function with
## Metadata BuildMethod: makefile and CodeUri: . (this Makefile), with
## ARTIFACTS_DIR set to the directory it packages.
build-UptimeFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build sets it (or use make functions)"; exit 2; }
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/uptime

build-AlertFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build sets it (or use make functions)"; exit 2; }
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/alert

build-RestoreFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build sets it (or use make functions)"; exit 2; }
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/restore

build-OffsiteFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build sets it (or use make functions)"; exit 2; }
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/offsite

## functions: every function's bootstrap as sam builds it, in bin/functions/<name>/, with its size
functions:
	@for f in $(FUNCTIONS); do \
		echo "$(LAMBDA_BUILD) -o $(BIN)/functions/$$f/bootstrap ./functions/$$f"; \
		$(LAMBDA_BUILD) -o $(BIN)/functions/$$f/bootstrap ./functions/$$f || exit 1; \
	done
	@for f in $(FUNCTIONS); do \
		printf '%-8s %s bytes\n' "$$f" "$$(stat -c %s $(BIN)/functions/$$f/bootstrap)"; \
	done

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

## bench-restore: probe restore (db only, and end to end with the docker strategy) against pg_restore, and the write-unavailability of each, on the same database
bench-restore: deps probe
	bash scripts/bench-restore.sh

## measure: the probe's RSS and CPU per round against a shell monitor.sh round
measure: deps probe
	bash scripts/measure-probe.sh

demo: deps probe
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)
