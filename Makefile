SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO        ?= go
BUF       := $(GO) tool -modfile=tools/buf/go.mod buf
STATICCHECK := $(GO) tool -modfile=tools/go.mod staticcheck
GOTEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/writ
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/writ ./cmd/writ

.PHONY: run
run: build ## build and run a dev node with the example policies and identities
	./bin/writ dev

.PHONY: test
test: ## unit, rpc and in-process cluster tests with -race
	$(GO) test $(GOTEST_FLAGS) ./...

.PHONY: test-policies
test-policies: build ## writ policy test policies/: the example library's cases against its sets, validated
	./bin/writ policy test policies/

.PHONY: test-corpus
test-corpus: ## the full Cedar integration corpus (from the cedar-go module) through Writ's plain evaluation, without -race
	$(GO) test -count=1 -run 'TestCedarCorpus' -v ./authz/ | grep -E '^(---|ok|FAIL|\s+corpus_test)'

.PHONY: bench
bench: ## Go micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: image
image: ## build the writ:dev image FROM scratch around a static binary (no pull)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o bin/writ-linux-amd64 ./cmd/writ
	docker build -t writ:dev .

.PHONY: cluster-up
cluster-up: image ## start a 3-node cluster in containers (API on 127.0.0.1:7400/7410/7420)
	@test -n "$${WRIT_ADMIN_TOKEN:-}" || { echo "export WRIT_ADMIN_TOKEN=writ_admin_$$(head -c 24 /dev/urandom | base64 | tr '+/' '-_') first"; exit 1; }
	$(COMPOSE) -p writ up -d

.PHONY: cluster-down
cluster-down: ## stop the container cluster and delete its volumes
	WRIT_ADMIN_TOKEN=$${WRIT_ADMIN_TOKEN:-unused} $(COMPOSE) -p writ down -v

.PHONY: test-docker
test-docker: ## docker cluster test: 3 containers, kill, disconnect, rolling restart (skips without an engine)
	WRIT_DOCKER_TESTS=1 $(GO) test -count=1 -timeout 10m -run TestDockerCluster -v ./internal/e2e/

.PHONY: test-chaos
test-chaos: ## fault history run: clients under partitions, slow links, kills, checked with porcupine (WRIT_HISTORY_DURATION, default 3m)
	WRIT_HISTORY_DURATION=$${WRIT_HISTORY_DURATION:-3m} $(GO) test -race -count=1 -timeout 20m -run 'TestHistoryUnderFaults' -v ./node/
.PHONY: test-leases-big
test-leases-big: ## cluster test: revoke an identity holding 100,000 leases in one entry (about a minute)
	WRIT_BIG_LEASES=100000 $(GO) test -count=1 -timeout 10m -run TestRevokeIdentityHoldingManyLeases -v ./node/

.PHONY: bench-revoke
bench-revoke: ## revocation propagation p50/p99, idle and loaded 3-node cluster (run on a quiet machine)
	$(GO) test -count=1 -run '^$$' -bench 'RevokePropagation' -benchtime $${BENCHTIME:-300x} ./node/
	$(GO) test -count=1 -run '^$$' -bench 'IdleCPU' -benchtime 3x ./node/

.PHONY: bench-failover
bench-failover: ## leader failover with 1,000,000 live leases (about 9 GiB of heap for 3 replicas; minutes to load)
	GOMEMLIMIT=$${GOMEMLIMIT:-12GiB} WRIT_FAILOVER_LEASES=$${WRIT_FAILOVER_LEASES:-1000000} $(GO) test -count=1 -timeout 90m -run '^$$' -bench 'Failover' -benchtime $${BENCHTIME:-3x} -v ./node/
.PHONY: churn
churn: ## soak: 1,000 leases/s with 60 s TTLs for WRIT_CHURN (default 10m); prints stored leases, snapshot size, heap, RSS
	WRIT_CHURN=$${WRIT_CHURN:-10m} $(GO) test -count=1 -timeout 30m -run TestLeaseChurn -v ./node/

.PHONY: bench-leases
bench-leases: ## heap per live lease and revoke-identity apply with 1,000,000 leases; revoke commit on 3 nodes with 1,000,000
	WRIT_LEASE_MEMORY_N=1000000 $(GO) test -run '^$$' -bench 'LeaseMemory|ApplyRevokeIdentity' -benchtime 2000x -timeout 30m ./fsm/
	WRIT_BENCH_LEASES=1000000 $(GO) test -run '^$$' -bench RevokeIdentityManyLeases -benchtime 1x -timeout 60m ./node/

.PHONY: fuzz
FUZZTIME ?= 20s
fuzz: ## run every fuzz target for FUZZTIME each (default 20s); a failing input lands in its package's testdata/fuzz (tools/fuzz.sh retries Go 1.26's deadline race once)
	@set -e; for d in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -h '^func Fuzz' $$d/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== fuzz $$d $$t ($(FUZZTIME))"; bash tools/fuzz.sh "$(GO)" $$d $$t $(FUZZTIME); \
		done; \
	done

.PHONY: bench-ci
bench-ci: ## run every benchmark once so they cannot rot
	$(GO) test -run '^$$' -bench . -benchtime=1x ./...

.PHONY: bench-smoke
bench-smoke: build ## a few seconds of writ bench against 3 local processes, with peers and a report (bin/bench-smoke)
	./bin/writ bench --local 3 --scenario authorize,batch-authorize,issue,revoke-propagation,mixed \
		--duration 2s --warmup 500ms --concurrency 16 --peers --json --report bin/bench-smoke > bin/bench-smoke.json
	@test "$$(grep -c '"scenario"' bin/bench-smoke.json)" -ge 5 || { cat bin/bench-smoke.json; echo "bench-smoke: missing results"; exit 1; }
	@echo "bench-smoke: $$(wc -l < bin/bench-smoke.json) results, report in bin/bench-smoke/index.html"

.PHONY: generate
generate: ## regenerate protobuf and Connect code
	rm -rf rpc/gen fsm/fsmpb/*.pb.go
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: generate ## fail if generated code is stale
	@git diff --exit-code -- rpc/gen fsm/fsmpb || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- rpc/gen fsm/fsmpb)" || { git status --porcelain -- rpc/gen fsm/fsmpb; echo "untracked generated files: run make generate and commit"; exit 1; }

.PHONY: lint
lint: ## gofmt, go vet, staticcheck, buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^rpc/gen/\|\.pb\.go$$')); test -z "$$out" || { echo "gofmt needed: $$out"; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(BUF) lint
