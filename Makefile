# Apiary's developer commands. `make test` is the one test command: it installs
# and starts the real servers the integration tests need (milvus-lite, local-kms,
# an SQS emulator, an external nats-server), points the tests at them, runs vet
# and the race-enabled test suite, and stops the servers again.
SHELL := /bin/bash
GO ?= go
TEST_TIMEOUT ?= 15m

.PHONY: test vet unit services services-stop bench build run eval-data eval

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

# bench: chunking, embedding, encryption, the pipeline in documents/s, query
# latency over 10k and 100k chunks, ingest requests/s against a bare echo
# handler (ratio in the same run), then `apiary bench` (embedded engines; add
# the distributed flags to compare), then `apiary bench --fair`: a quiet
# account's p50/p95 alone and under a noisy account's query, job and webhook
# floods.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./pipeline/... ./storage/local/... ./api/...
	$(GO) run ./cmd/apiary bench
	$(GO) run ./cmd/apiary bench --fair

build:
	$(GO) build -o bin/apiary ./cmd/apiary

run:
	$(GO) run ./cmd/apiary serve

# eval-data builds the evaluation set (README, "Evaluation") into .eval/godoc:
# the Go standard library's documentation as a known-item BEIR set.
eval-data:
	$(GO) run ./scripts/evaldata -out .eval/godoc

# eval runs it through an in-process Apiary (the serve flags apply: add
# EVAL_FLAGS="--embedder local --mode all"), with BM25 in the same run.
eval: eval-data
	$(GO) run ./cmd/apiary eval --baseline bm25 $(EVAL_FLAGS) .eval/godoc
