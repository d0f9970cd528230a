# quietmx: `make up` runs the appliance, `make test` runs every test.
SHELL := /bin/bash
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
export PATH := /usr/local/go/bin:$(PATH)
# testcontainers-go here: no registry (Ryuk's image cannot be pulled) and
# /.dockerenv makes it look for the daemon on an unreachable gateway.
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE := 127.0.0.1
export DOCKER_BUILDKIT := 0

# Compose: the v2 plugin when present, else Debian's docker-compose (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: all build test test-unit test-e2e fuzz bench tools image pebble-image up down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

# Everything: unit tests, fuzz seed corpora (run as plain tests), CLI
# scripts, rendered configs checked by the real postconf/doveconf, and the
# end-to-end suite against the real image.
test: test-unit test-e2e

# Host tools the unit tests call for real (postconf, postfix, doveconf).
tools:
	bash internal/render/install-tools.sh

test-unit: tools
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -count=1 ./...

# The image, built without any registry (docker/build-image.sh): a Debian
# root from Debian's archive, Go binaries built here.
image:
	bash docker/build-image.sh

# Pebble, the test ACME CA of the certbot tests (docker/pebble; built once,
# from the Go module proxy and the local base).
pebble-image:
	bash docker/pebble/build.sh

# The end-to-end suite against the real image (testcontainers-go).
test-e2e: image pebble-image
	@mkdir -p bin
	$(GO) test -tags e2e -count=1 -timeout 60m -v ./e2e/ 2>&1 | tee bin/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

# Start the appliance with the default spec (appliance/quietmx.yaml and the
# QUIETMX_* variables in compose.yaml or your environment), then show how
# to log in.
up: image
	$(COMPOSE) up -d --no-build
	@for i in $$(seq 1 60); do \
	  if $(COMPOSE) logs quietmx 2>/dev/null | grep -q 'quietmx: ready'; then break; fi; sleep 1; done
	@$(COMPOSE) logs quietmx 2>/dev/null | grep -E 'quietmx: (ready|  |generated)' || { $(COMPOSE) logs quietmx | tail -30; exit 1; }
	@echo "stop with: make down (volumes are kept)"

down:
	$(COMPOSE) down

FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

# Benchmarks (docs/performance.md): in-process ones, then the agent exec'd
# against the bare durable Maildir write, interleaved.
bench:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchmem -count 10 ./internal/... | tee bin/bench.txt
	$(GO) test -run '^$$' -bench ExecDelivery -benchtime 200x -count 10 -timeout 60m ./cmd/altpostlocal/ | tee bin/bench-exec.txt

clean:
	rm -rf bin docker/bin
