# quietmx: `make up` runs the appliance, `make test` runs every test.
SHELL := /bin/bash
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
export PATH := /usr/local/go/bin:$(PATH)
# testcontainers-go here: no registry (Ryuk's image cannot be pulled) and
# /.dockerenv makes it look for the daemon on an unreachable gateway.
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE := 127.0.0.1
export DOCKER_BUILDKIT := 0

.PHONY: all build test test-unit test-e2e fuzz bench tools clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

# Everything: unit tests, fuzz seed corpora (run as plain tests), CLI
# scripts, rendered configs checked by the real postconf/doveconf, and the
# end-to-end suite against the real image.
test: test-unit

# Host tools the unit tests call for real (postconf, postfix, doveconf).
tools:
	bash internal/render/install-tools.sh

test-unit: tools
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -count=1 ./...

FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 10 ./internal/... | tee bin/bench.txt

clean:
	rm -rf bin docker/bin
