# scoop: the two commands of the README, and a few helpers.
GO ?= go
TEST_FLAGS ?= -count=1 -p 1 -timeout 45m

.PHONY: demo test unit build stack-up stack-down bench vet

# Stack up, scoop running against it with testdata/demo, writes visible downstream. Ctrl-C stops it.
demo: build
	scripts/stack up
	scripts/demo

# Brings the stack up itself, then runs every test (unit and integration).
test:
	scripts/stack up
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

# Pure unit tests, no servers: -short makes every test that needs the stack
# skip itself (internal/testenv.Require).
unit:
	$(GO) test -short -count=1 ./...

build:
	$(GO) build -o bin/scoop ./cmd/scoop

stack-up:
	scripts/stack up

stack-down:
	scripts/stack down

vet:
	$(GO) vet ./...

# Benchmark: scoop against the raw limits of PostgreSQL, Kafka and Cassandra on the
# same workloads (bench/README.md; sizes from BENCH_* variables). Writes
# bench/results/latest.{json,md} and dated copies; 1,000,000-row workloads, about
# 20 minutes on 2 quiet cores (BENCH_ROWS=200000 for development: about 4).
bench: build
	scripts/stack up
	BENCH_SCOOP_BIN=bin/scoop $(GO) run ./bench

# The same at tiny sizes, under ~2 minutes; asserts nothing about timing, fails
# only when a phase fails. Results in bench/results/smoke.tmp/ (git-ignored).
.PHONY: bench-smoke
bench-smoke: build
	scripts/stack up
	BENCH_SMOKE=1 BENCH_SCOOP_BIN=bin/scoop $(GO) run ./bench

# Randomized differential test: a seeded SQL workload (COPY, key changes, TRUNCATE,
# savepoints, added columns, TOASTed values) while scoop is SIGKILLed and Kafka is
# restarted, then every store compared with the monolith. TORTURE_SEED=N replays a
# run's operations; TORTURE_DURATION sets the workload time (`make test` runs 60s);
# TORTURE_CHAOS=off|kills|kafka narrows the faults. Restarts Kafka of the stack it
# runs against (set SCOOP_STACK_DIR and the port variables for a private stack).
.PHONY: torture
TORTURE_DURATION ?= 10m
torture:
	scripts/stack up
	TORTURE_DURATION=$(TORTURE_DURATION) $(GO) test -count=1 -timeout 60m -run '^TestTorture$$' -v ./cmd/scoop/
