# Apiary's developer commands. `make test` is the one test command: it installs
# and starts the real servers the integration tests need (milvus-lite, local-kms,
# an SQS emulator, an external nats-server), points the tests at them, runs vet
# and the race-enabled test suite, and stops the servers again.
SHELL := /bin/bash
GO ?= go
TEST_TIMEOUT ?= 15m

.PHONY: test vet unit services services-stop bench build run

test:
	@scripts/test-services.sh start
	@set -a; source .test-services/env; set +a; \
	trap 'scripts/test-services.sh stop' EXIT; \
	$(GO) vet ./... && \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# unit runs the tests without the external servers (integration tests skip).
unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

services:
	scripts/test-services.sh start

services-stop:
	scripts/test-services.sh stop

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./pipeline/... ./storage/local/... ./api/...

build:
	$(GO) build -o bin/apiary ./cmd/apiary

run:
	$(GO) run ./cmd/apiary serve
