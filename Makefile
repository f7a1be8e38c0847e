# flowhouse: the two commands are `make run` and `make test` (see README).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
BIN := bin/flowhouse
VAR := $(CURDIR)/var
CLICKHOUSE_PORT ?= 19000
# Fuzz budgets are execution counts, not durations: a duration makes go1.26's
# fuzz coordinator fail spuriously with "context deadline exceeded" when the
# time runs out under load (go.dev/issue/75804, fixed in go1.27).
FUZZTIME ?= 100000x

.PHONY: all build run run-server test test-deps test-unprivileged deps vet fmt-check unit fuzz fuzz-short bench bench-detect clean

all: build

build:
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/flowhouse

# Install what is missing and run flowhouse with its defaults: the embedded
# ClickHouse engine, data under ./var/data.
run: deps build
	./$(BIN) serve

# The same against a local ClickHouse server (Debian's) under ./var/clickhouse.
run-server: deps build
	@scripts/clickhouse-server.sh start $(VAR)/clickhouse $(CLICKHOUSE_PORT)
	FLOWHOUSE_CLICKHOUSE_ADDR=127.0.0.1:$(CLICKHOUSE_PORT) ./$(BIN) serve

deps:
	@scripts/deps.sh
	@scripts/chdb.sh install $(VAR)/lib/libchdb.so

test-deps: deps

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race ./collector/... ./store/... ./enrich/... ./queryapi/... ./notify/... ./analytics/... ./token/... ./api/... ./alertapi/... ./privacy/...

# A short fuzz run of every target on each test run (seconds); `make fuzz`
# runs each for millions of executions (minutes).
fuzz-short:
	@for t in FuzzDecode FuzzDecodeAfterTemplates; do \
		$(GO) test ./collector -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) >/tmp/flowhouse-fuzz.log 2>&1 || { cat /tmp/flowhouse-fuzz.log; exit 1; }; \
	done; \
	$(GO) test ./token -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) >/tmp/flowhouse-fuzz.log 2>&1 || { cat /tmp/flowhouse-fuzz.log; exit 1; }; \
	echo "fuzz: all targets ran $(FUZZTIME) without failure"

fuzz:
	$(MAKE) fuzz-short FUZZTIME=10000000x

# As root (CI), make test also runs a few packages' tests as an
# unprivileged user, servers they start included: flowhouse needs no root.
UNPRIVILEGED_PKGS := ./config ./deploy ./secret ./internal/chtest ./internal/loopback

test: test-deps vet fmt-check unit fuzz-short
	@if [ "$$(id -u)" = 0 ]; then GO=$(shell command -v $(GO)) scripts/test-unprivileged.sh $(UNPRIVILEGED_PKGS); fi

# Throughput, about 12 minutes: decoder benchmarks against goflow2, load
# steps into both engines, the burst into a slowed server, and the capture
# replay side by side with goflow2 and nfcapd; writes
# bench/results/report.{md,json}.
bench: deps build
	@scripts/deps.sh --bench
	$(GO) run ./cmd/flowbench -flowhouse $(BIN) -out bench/results -only decode,ingest,burst,replay,cluster

# Detection, about 15 minutes more: the rules' cost, rules on and off under
# load, detection delay, FastNetMon side by side and API latency; writes
# bench/results/detect/report.{md,json}.
bench-detect: deps build
	@scripts/deps.sh --bench
	$(GO) run ./cmd/flowbench -flowhouse $(BIN) -out bench/results/detect -only rules-cost,rules-load,rules-delay,fastnetmon,api

# The tests that need no root (no network namespaces, no Open vSwitch),
# run as an unprivileged user; PKGS limits them (default: all of those).
test-unprivileged: test-deps
	GO=$(shell command -v $(GO)) scripts/test-unprivileged.sh $(PKGS)

clean:
	rm -rf bin
