# Herald: the two commands that matter are `make up` and `make test` (see README.md).
SHELL := /bin/bash
GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: up down status reset test test-unit fuzz schemathesis test-stack build vet lint fmt prometheus test-rules loadtest faults test-faults

## up: install what is missing, start the servers, migrate, start Herald (idempotent)
up:
	@stack/up.sh

## down: stop everything make up started
down:
	@stack/down.sh

## status: every server and Herald process with pid, port and health
status:
	@stack/status.sh

## reset: stop everything and wipe all data
reset:
	@stack/reset.sh

## build: build herald (what ships) and herald-dev (the workbench) into .herald/bin
build:
	@stack/herald.sh build

## test: every test, unit and integration, against the real servers (started if not up)
test: vet lint
	@stack/up.sh servers
	@stack/browser.sh install
	@set -a && source .herald/stack.env && set +a && go test -tags integration $(GO_TEST_FLAGS) ./...
	@$(MAKE) --no-print-directory fuzz
	@stack/loadtest-check.sh
	@stack/prometheus.sh check
	@stack/test-stack.sh
	@stack/schemathesis.sh
	@$(MAKE) --no-print-directory test-faults
	@stack/audit-residency.sh
	@$(MAKE) --no-print-directory test-faults-cluster

## schemathesis: the public API fuzzed against docs/openapi-gateway.yaml (needs make up)
schemathesis:
	@stack/schemathesis.sh

## loadtest: every load scenario against the running local deployment (make up first), each
## table judged against its SLO threshold; the failover scenario stops and restarts eu-west-1
LOADTEST_FLAGS ?= --users 1000 --duration 30s --rate 5
loadtest: build
	@set -a && source .herald/stack.env && set +a && .herald/bin/herald-dev loadtest all --disrupt $(LOADTEST_FLAGS)

## faults: the black-box fault suite (docs/reliability.md) against this checkout's stack, which
## it brings up first: one fault at a time (FAULTS: names or all) under steady sends; it stops,
## kills and restarts this stack's servers and processes. The defaults are the full run of the
## table in docs/reliability.md (about 20 minutes); exit 1 when a judged fault misses a target.
FAULTS ?= all
FAULTS_FLAGS ?=
faults: build
	@stack/up.sh >/dev/null
	@set -a && source .herald/stack.env && set +a && .herald/bin/herald-dev faults $(FAULTS) $(FAULTS_FLAGS)

## test-faults: the fault suite with CI's shorter windows (about 6-8 minutes when every fault
## recovers; a fault that loses sends waits out its drain and the client give-up, 2 min); make test
## runs it after the other tests, then audits residency on what it left.
TEST_FAULTS_FLAGS ?= --rate 50 --users 24 --warm 5s --down 8s --outage 20s --after 10s --drain 60s --give-up 60s --latency measure
test-faults:
	@$(MAKE) --no-print-directory faults FAULTS_FLAGS="$(TEST_FAULTS_FLAGS)"

## test-faults-cluster: the Kafka broker kill on three brokers with CI's windows at 20 sends/s
## (make test's last step, about 4 minutes): moves this stack's Kafka to cluster mode (topics
## and offsets wiped), kills a broker under load, audits residency, then moves Kafka back to one
## broker. 20 a second, not 50: on a 2-core machine three brokers, three regions and their
## stores do not keep up with 50 before any fault (docs/reliability.md, "The fault suite").
TEST_FAULTS_CLUSTER_FLAGS ?= $(TEST_FAULTS_FLAGS) --rate 20
test-faults-cluster: build
	@TEST_FAULTS_FLAGS="$(TEST_FAULTS_CLUSTER_FLAGS)" stack/kafka-cluster-faults.sh

## prometheus: start a Prometheus scraping every Herald process, with the alert rules (ops/prometheus)
prometheus:
	@stack/prometheus.sh start

## test-rules: promtool check and unit tests of the alert and recording rules
test-rules:
	@stack/prometheus.sh check

## fuzz: the differential fuzz test of the one reading (gateway vs region), FUZZTIME each
FUZZTIME ?= 45s
fuzz:
	go test -run '^$$' -fuzz '^FuzzGatewayAndRegionReadEverySendAlike$$' -fuzztime $(FUZZTIME) ./gateway/

## test-unit: the tests that need no server
test-unit:
	go test $(GO_TEST_FLAGS) ./...

vet:
	@files=$$(gofmt -l $$(find . -name '*.go' -not -path './.herald/*')); test -z "$$files" || { echo "gofmt needed: $$files"; exit 1; }
	@go vet -tags integration ./...
	@go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy (go mod tidy -diff shows what changes)"; exit 1; }

## lint: golangci-lint with .golangci.yml (stack/lint.sh builds the pinned version once)
lint:
	@stack/lint.sh

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './.herald/*')
