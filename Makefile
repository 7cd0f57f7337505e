# Tandem — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
FUNCTIONS := plan snapshot finalize status
BUILD := .build

.PHONY: all build test test-long bench lint fmt demo image clean $(addprefix build-,$(FUNCTIONS))

all: build

## build: the Lambda bootstraps (linux/arm64, provided.al2023) and the streamer binary.
build: $(addprefix build-,$(FUNCTIONS)) $(BUILD)/streamer

$(addprefix build-,$(FUNCTIONS)): build-%:
	mkdir -p $(BUILD)/$*
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags='-s -w' -o $(BUILD)/$*/bootstrap ./functions/$*

.PHONY: $(BUILD)/streamer
$(BUILD)/streamer:
	mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./streamer

## SAM's `BuildMethod: makefile` runs these (sam build), with ARTIFACTS_DIR set.
build-PlanFunction build-SnapshotFunction build-FinalizeFunction build-StatusFunction: build-%Function:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags lambda.norpc -ldflags='-s -w' \
		-o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo $* | tr A-Z a-z)

## image: the streamer's container image (needs a docker engine).
image:
	docker build -f infra/Dockerfile -t tandem-streamer .

## test: everything CI runs — vet, unit tests and the end-to-end tests against a real
## PostgreSQL and the moto DynamoDB endpoint, both started by the tests themselves.
test: lint
	cfn-lint template.yaml
	$(GO) test -count=1 -timeout 20m ./...

## test-long: many randomized seeds and longer crash runs (not part of make test).
test-long:
	TANDEM_SEEDS=$${TANDEM_SEEDS:-20} TANDEM_CRASH_ROUNDS=$${TANDEM_CRASH_ROUNDS:-10} \
		$(GO) test -count=1 -timeout 120m -run 'Convergence|Crash' -v ./localstack/e2e/

## bench: throughput figures of the writer and the streamer.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

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
