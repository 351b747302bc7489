# The two quickstart commands are `make quickstart` and `make test`.
.PHONY: quickstart build filters test deps bench schema fuzz

# On other ports: make quickstart PLEXUS_PORT=18080 PLEXUS_ADMIN_PORT=19901 BACKEND_PORT=19000
quickstart:
	./examples/quickstart/run.sh

build:
	mkdir -p bin
	go build -o bin/plexus ./cmd/plexus

# Every first-party filter, to bin/filters/NAME.wasm, its config schema in the module.
filters:
	./filters/build.sh

# The whole test suite; installs what the tests need first when it is missing. Builds are
# cached in $PLEXUS_TEST_CACHE, or in plexus-test-cache-UID in the temp dir.
test: deps
	go test -count=1 -timeout 15m ./...
	go test -count=1 -timeout 15m -race ./runtime/... ./gateway/internal/...
	$(MAKE) fuzz FUZZTIME=10s

# The fuzz targets on the ABI boundary (every host call with a guest's random arguments,
# header maps from a guest) and on the HTTP/1.1 server's request parser, FUZZTIME each:
# briefly in `make test`, longer on demand (make fuzz FUZZTIME=10m).
FUZZTIME ?= 1m
fuzz:
	go test -run '^$$' -fuzz '^FuzzHostCalls$$' -fuzztime $(FUZZTIME) ./runtime/proxywasm
	go test -run '^$$' -fuzz '^FuzzParseMap$$' -fuzztime $(FUZZTIME) ./runtime/proxywasm
	go test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./gateway/internal/h1

deps:
	./scripts/deps.sh

bench:
	./bench/compare.sh
	./bench/ratelimit.sh

schema:
	go generate ./gateway/config
