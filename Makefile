# Tandem — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
FUNCTIONS := plan snapshot finalize status
BUILD := .build

.PHONY: all build test test-long fuzz soak bench bench-scale lint fmt demo image up status down clean $(addprefix build-,$(FUNCTIONS))

all: build

## build: the Lambda bootstraps (linux/arm64, provided.al2023), the streamer and the tandem command.
build: $(addprefix build-,$(FUNCTIONS)) $(BUILD)/streamer $(BUILD)/tandem

$(addprefix build-,$(FUNCTIONS)): build-%:
	mkdir -p $(BUILD)/$*
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags='-s -w' -o $(BUILD)/$*/bootstrap ./functions/$*

.PHONY: $(BUILD)/streamer $(BUILD)/tandem tandem
$(BUILD)/streamer:
	mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./streamer

## tandem: the operator's command (.build/tandem): check, status, verify, resnapshot,
## deadletters, teardown.
tandem: $(BUILD)/tandem
$(BUILD)/tandem:
	@mkdir -p $(BUILD)
	@CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./cmd/tandem

## SAM's `BuildMethod: makefile` runs these (sam build), with ARTIFACTS_DIR set.
build-PlanFunction build-SnapshotFunction build-FinalizeFunction build-StatusFunction: build-%Function:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags lambda.norpc -ldflags='-s -w' \
		-o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo $* | tr A-Z a-z)

## image: the streamer's arm64 container image (needs a docker engine with buildx).
image:
	docker buildx build --platform linux/arm64 -f infra/Dockerfile -t tandem-streamer --load .

## test: everything CI runs — vet, unit tests and the end-to-end tests against a real
## PostgreSQL and the moto DynamoDB endpoint, both started by the tests themselves, then a
## short run of every fuzz target (.ci/fuzz).
test: lint
	cfn-lint template.yaml
	$(GO) test -count=1 -timeout 20m ./...
	GO=$(GO) .ci/fuzz $(FUZZTIME_SHORT)

## fuzz: each fuzz target for FUZZTIME (default 1m), one after another; make test runs
## them for FUZZTIME_SHORT (6s) each. Prints the executions, and their total.
FUZZTIME ?= 1m
FUZZTIME_SHORT ?= 6s
fuzz:
	GO=$(GO) .ci/fuzz $(FUZZTIME)

## test-long: many randomized seeds and longer crash runs (not part of make test).
test-long:
	TANDEM_SEEDS=$${TANDEM_SEEDS:-20} TANDEM_CRASH_ROUNDS=$${TANDEM_CRASH_ROUNDS:-10} \
		$(GO) test -count=1 -timeout 120m -run 'Convergence|Crash' -v ./localstack/e2e/

## soak: the randomized convergence through the DynamoDB fault proxy, harder and longer
## than in make test (higher fault rates, three 60 s outages, SIGKILLs of the streamer).
soak:
	TANDEM_SOAK=1 TANDEM_SEEDS=$${TANDEM_SEEDS:-3} \
		$(GO) test -count=1 -timeout 120m -run 'TestConvergenceThroughFaults' -v ./localstack/e2e/

## bench: Tandem's throughput and lag figures against dynalite (installed with npm into the
## user cache) and a real PostgreSQL, each next to its reference measured in the same run,
## with a summary table (figure, value, reference, ratio, target, PASS/MISS). ~5-10 min.
bench:
	$(GO) run ./localstack/bench

## bench-scale: the same with larger tables, plus the bounded figures (longest snapshot
## transaction on a 1M-row table, streamer RSS through a 1M-row transaction). Much longer.
bench-scale:
	$(GO) run ./localstack/bench -scale

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BUILD)

## demo: the whole pipeline on this machine (PostgreSQL + moto are started and stopped).
demo:
	$(GO) run ./localstack/demo

## up: the local pipeline against your own database, left running for inspection:
##   make up PG_URL=postgres://user:pass@host:5432/db [TABLES=public.a,public.b]
up:
	@test -n "$(PG_URL)" || { echo "usage: make up PG_URL=postgres://... [TABLES=schema.table,...]"; exit 2; }
	@if [ -f .standin/pid ] && kill -0 $$(cat .standin/pid) 2>/dev/null; then echo "already up (pid $$(cat .standin/pid)); make down first"; exit 1; fi
	@mkdir -p .standin && rm -f .standin/up.json
	$(GO) build -o $(BUILD)/up ./localstack/up
	@nohup $(BUILD)/up --pg-url '$(PG_URL)' --tables '$(TABLES)' --state .standin > .standin/up.log 2>&1 & echo $$! > .standin/pid
	@for i in $$(seq 1 300); do \
		if [ -f .standin/up.json ]; then cat .standin/up.json; echo; \
			echo "Endpoint http://127.0.0.1:4566 (AWS_ENDPOINT_URL). Status: make status. Stop: make down."; exit 0; fi; \
		if ! kill -0 $$(cat .standin/pid) 2>/dev/null; then cat .standin/up.log; rm -f .standin/pid; exit 1; fi; sleep 1; done; \
	echo "up did not finish within 300 s; stopping it (see .standin/up.log)"; $(MAKE) --no-print-directory down; exit 1

## status: per-table progress and the streamer's lag, from the deployed status function.
status:
	@AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
		aws --endpoint-url http://127.0.0.1:4566 lambda invoke --payload '{}' $$(aws --version 2>&1 | grep -q '^aws-cli/2' && echo --cli-binary-format raw-in-base64-out) --function-name \
		$$(python3 -c "import json;print(json.load(open('.standin/up.json'))['stack']['StatusFunctionName'])") /dev/stdout | head -c 20000; echo

## down: stop what make up started.
down:
	@if [ -f .standin/pid ]; then pid=$$(cat .standin/pid); kill -TERM $$pid 2>/dev/null || true; \
		for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
		kill -KILL $$pid 2>/dev/null || true; rm -f .standin/pid; fi
	@echo "stopped"
