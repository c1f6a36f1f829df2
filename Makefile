# The README's commands, and the usual targets.
GO ?= go
BIN := bin/headroom
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test demo bench lint fuzz clean

build:
	$(GO) build -buildvcs=auto -ldflags "-X github.com/headroom-dev/headroom/internal/buildinfo.version=$(VERSION)" -o $(BIN) ./cmd/headroom

# The whole suite, installing the servers it needs (nginx, redis-server, wrk,
# goaccess, chromium) from Debian's packages when they are missing.
test:
	./scripts/test.sh

demo:
	$(GO) run ./cmd/headroom demo

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Go benchmarks; the side-by-side comparisons live in bench/*.sh.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# A short run of every fuzz target (FUZZTIME=30s for longer).
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
