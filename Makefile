# Tandem — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
FUNCTIONS := plan snapshot finalize status
BUILD := .build

.PHONY: ca-bundle all build test test-long fuzz soak bench bench-scale lint fmt demo image up status cli down clean $(addprefix build-,$(FUNCTIONS))

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

## SAM's `BuildMethod: makefile` runs these (sam build), with ARTIFACTS_DIR set. Each
## function's package carries the CA bundle (ca.pem) its connections verify the database with.
build-PlanFunction build-SnapshotFunction build-FinalizeFunction build-StatusFunction: build-%Function: ca-bundle
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags lambda.norpc -ldflags='-s -w' \
		-o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo $* | tr A-Z a-z)
	cp $(DB_CA_BUNDLE) $(ARTIFACTS_DIR)/ca.pem

## ca-bundle: the CA bundle the deployed stack verifies PostgreSQL's certificate with
## (DatabaseSSLMode verify-full, the default). By default AWS's RDS/Aurora global bundle,
## downloaded on your machine from $(RDS_CA_URL) and checked against the SHA-256 pinned in
## infra/rds-ca.sha256 (the first download records it: compare it with what AWS publishes,
## then commit it). Or your own PEM bundle: DB_CA_BUNDLE=path/to/bundle.pem (not pinned).
RDS_CA_URL := https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
DB_CA_BUNDLE ?= infra/rds-ca.pem
ca-bundle:
	@if [ "$(DB_CA_BUNDLE)" = infra/rds-ca.pem ]; then \
		if [ ! -s infra/rds-ca.pem ]; then curl -fsSL --proto '=https' --tlsv1.2 $(RDS_CA_URL) -o infra/rds-ca.pem.tmp && mv infra/rds-ca.pem.tmp infra/rds-ca.pem \
			|| { rm -f infra/rds-ca.pem.tmp; echo "ca-bundle: cannot download $(RDS_CA_URL); download it yourself to infra/rds-ca.pem, or set DB_CA_BUNDLE"; exit 1; }; fi; \
		if [ -s infra/rds-ca.sha256 ]; then (cd infra && sha256sum --quiet -c rds-ca.sha256) || { echo "infra/rds-ca.pem does not match the checksum pinned in infra/rds-ca.sha256"; exit 1; }; \
		else (cd infra && sha256sum rds-ca.pem > rds-ca.sha256); echo "ca-bundle: recorded the SHA-256 of the bundle in infra/rds-ca.sha256 ($$(cut -c1-16 infra/rds-ca.sha256)...): check it against AWS's, then commit it"; fi; \
	elif [ ! -s "$(DB_CA_BUNDLE)" ]; then echo "ca-bundle: DB_CA_BUNDLE=$(DB_CA_BUNDLE) is not a file"; exit 1; fi
	@grep -q 'BEGIN CERTIFICATE' $(DB_CA_BUNDLE) || { echo "ca-bundle: $(DB_CA_BUNDLE) holds no PEM certificate"; exit 1; }

## image: the streamer's arm64 container image (needs a docker engine with buildx).
image: ca-bundle
	mkdir -p $(BUILD) && cp $(DB_CA_BUNDLE) $(BUILD)/ca.pem
	docker buildx build --platform linux/arm64 -f infra/Dockerfile -t tandem-streamer --load .

## test: everything CI runs — vet, unit tests and the end-to-end tests against a real
## PostgreSQL and the moto DynamoDB endpoint, both started by the tests themselves, then a
## short run of every fuzz target (.ci/fuzz).
test: lint
	cfn-lint template.yaml
	$(GO) test -count=1 -timeout 20m ./...
	GO=$(GO) .ci/fuzz $(FUZZTIME_SHORT)

## fuzz: each fuzz target for FUZZTIME (default 1m), one after another; make test runs
## them for FUZZTIME_SHORT (20000 executions) each: a count, not a duration (see .ci/fuzz). Prints the executions, and their total.
FUZZTIME ?= 1m
FUZZTIME_SHORT ?= 20000x
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
##   make up PG_URL=postgres://user:pass@host:5432/db [TABLES=public.a,public.b] [CONFIG=tandem.json]
## CONFIG is a Tandem configuration file (tables with key_columns and targets, table_prefix,
## slot, publication, ...; postgres_url may replace PG_URL). `tandem check --deployment`
## runs first (the targets named as up's deployment names them: table_prefix, by default
## the template's tandem-) and stops on a blocker; then up waits for the plan and fails
## with plan's message.
## It writes .standin/tandem.json, the tandem command's configuration for this stack.
up: $(BUILD)/tandem
	@test -n "$(PG_URL)$(CONFIG)" || { echo "usage: make up PG_URL=postgres://... [TABLES=schema.table,...] [CONFIG=tandem.json]"; exit 2; }
	@if [ -f .standin/pid ] && kill -0 $$(cat .standin/pid) 2>/dev/null; then echo "already up (pid $$(cat .standin/pid)); make down first"; exit 1; fi
	@echo "tandem check (against the database; DynamoDB is the stand-in, started next):"
	@env $$(env | sed -n 's/^\(TANDEM_[A-Z_]*\)=.*/-u \1/p') \
		$(if $(CONFIG),TANDEM_CONFIG_FILE='$(CONFIG)') $(if $(PG_URL),TANDEM_PG_URL='$(PG_URL)') $(if $(TABLES),TANDEM_TABLES='$(TABLES)') \
		$(BUILD)/tandem check --no-dynamodb --deployment || { echo "make up: tandem check found a blocker (FAIL above); nothing was started"; exit 1; }
	@mkdir -p .standin && rm -f .standin/up.json .standin/drop-slot
	$(GO) build -o $(BUILD)/up ./localstack/up
	@nohup $(BUILD)/up --pg-url '$(PG_URL)' --tables '$(TABLES)' --config '$(CONFIG)' --state .standin > .standin/up.log 2>&1 & echo $$! > .standin/pid
	@for i in $$(seq 1 300); do \
		if [ -f .standin/up.json ]; then cat .standin/up.json; echo; \
			echo "Endpoint http://127.0.0.1:4566 (AWS_ENDPOINT_URL). Status: make status. Any tandem command: make cli ARGS='verify'. Stop: make down."; exit 0; fi; \
		if ! kill -0 $$(cat .standin/pid) 2>/dev/null; then cat .standin/up.log; rm -f .standin/pid; echo "make up failed (log: .standin/up.log)"; exit 1; fi; sleep 1; done; \
	echo "up did not finish within 300 s; stopping it (see .standin/up.log)"; $(MAKE) --no-print-directory down; exit 1

## status: `tandem status` against the stand-in `make up` started (its configuration in
## .standin/tandem.json): per-table progress, failures with their reasons, the streamer,
## the state machine's latest execution. STATUS_FLAGS=--watch refreshes in place,
## STATUS_FLAGS=--json prints JSON. tandem status exits 1 when a
## table or the latest execution failed, 3 when nothing is up (make shows it as "Error 1" or "Error 3" and itself exits 2).
STATUS_FLAGS ?=
# The stand-in's endpoint and configuration, and nothing of the caller's AWS or TANDEM_
# settings (a real profile or region must not leak into a local run).
STANDIN_TANDEM = @test -f .standin/tandem.json || { echo "nothing is up: no .standin/tandem.json (start it with make up PG_URL=...)"; exit 3; }; \
	env $$(env | sed -n 's/^\(\(TANDEM\|AWS\)_[A-Za-z0-9_]*\)=.*/-u \1/p') \
		AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
		AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null TANDEM_CONFIG_FILE=.standin/tandem.json \
		$(BUILD)/tandem
status: $(BUILD)/tandem
	$(STANDIN_TANDEM) status $(STATUS_FLAGS)

## cli: any tandem subcommand against the stand-in make up started, e.g.
##   make cli ARGS='deadletters public.tags'    make cli ARGS='verify --sample 1000'
##   make cli ARGS='resnapshot public.orders'   make cli ARGS='teardown --yes'
ARGS ?= --help
cli: $(BUILD)/tandem
	$(STANDIN_TANDEM) $(ARGS)

## down: stop what make up started. The replication slot stays (it retains WAL on the
## database: down says how much); make down DROP_SLOT=1 drops it and the publication.
down:
	@if [ -f .standin/pid ]; then pid=$$(cat .standin/pid); \
		if [ -n "$(DROP_SLOT)" ] && [ "$(DROP_SLOT)" != 0 ]; then touch .standin/drop-slot; fi; \
		kill -TERM $$pid 2>/dev/null || true; \
		for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
		kill -KILL $$pid 2>/dev/null || true; rm -f .standin/pid .standin/drop-slot; \
		if [ -f .standin/down.log ]; then cat .standin/down.log; fi; fi
	@echo "stopped"