#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real servers the tests
# need, then formatting, vet, module tidiness, staticcheck and the race-enabled
# tests. Run from anywhere: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== go mod tidy"
cp go.mod /tmp/headroom-go.mod.$$ && cp go.sum /tmp/headroom-go.sum.$$
go mod tidy
if ! git diff --quiet -- go.mod go.sum 2>/dev/null; then
  echo "go.mod/go.sum are not tidy; run 'go mod tidy' and commit:" >&2
  git diff -- go.mod go.sum >&2
  cp /tmp/headroom-go.mod.$$ go.mod && cp /tmp/headroom-go.sum.$$ go.sum
  exit 1
fi
rm -f /tmp/headroom-go.mod.$$ /tmp/headroom-go.sum.$$

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# bench/fasthttpproxy is a module of its own (so that headroom's go.mod
# does not depend on fasthttp), outside ./... above; gofmt covers it already.
echo "== bench/fasthttpproxy: go vet, go mod tidy, staticcheck"
(
  cd bench/fasthttpproxy
  go vet ./...
  go mod tidy -diff
  go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
)

echo "== go test -race"
go test -race -count=1 -timeout 45m ./...

echo "== allocation tests without -race (it drops sync.Pool items at random)"
go test -count=1 -run 'Alloc' ./internal/...

# The guard's integration tests once more, against the net/http front-end
# instead of the default fast HTTP/1.1 path (internal/fastproxy, issue 12),
# and once more against the event loop (internal/evproxy, --event-loop),
# with what it hands off served by the fast path.
echo "== go test -race ./internal/guard -nethttp"
go test -race -count=1 -timeout 10m ./internal/guard/ -nethttp
echo "== go test -race ./internal/guard -evloop"
go test -race -count=1 -timeout 10m ./internal/guard/ -evloop
