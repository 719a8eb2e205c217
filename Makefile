# Apiary's developer commands. `make test` is the one test command: it installs
# and starts the real servers the integration tests need (milvus-lite, local-kms,
# an SQS emulator, an external nats-server, oidc-provider), points the tests at them, runs vet
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

# bench: chunking, embedding (the ONNX model, sorted and unsorted batches),
# encryption, the pipeline in documents/s, query latency p50/p95 with the ONNX
# model over 10k and 100k chunks, ingest requests/s against a bare echo
# handler (ratio in the same run), then `apiary bench` (the default ONNX
# embedder alone and the whole path on the same texts, embedded engines; add
# the distributed flags to compare), then `apiary bench --fair`: a quiet
# account's p50/p95 alone and under a noisy account's query, job and webhook
# floods.
MODELS_DIR ?= $(CURDIR)/.test-services/models
bench:
	$(GO) run ./cmd/apiary models pull --models-dir $(MODELS_DIR) --model all
	APIARY_TEST_MODELS_DIR=$(MODELS_DIR) $(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./pipeline/... ./storage/local/... ./api/...
	$(GO) run ./cmd/apiary bench --models-dir $(MODELS_DIR)
	$(GO) run ./cmd/apiary bench --fair --embedder local

build:
	$(GO) build -o bin/apiary ./cmd/apiary

run:
	$(GO) run ./cmd/apiary serve

# eval-data builds the evaluation set (README, "Evaluation") into .eval/godoc:
# the Go standard library's documentation as a known-item BEIR set.
eval-data:
	$(GO) run ./scripts/evaldata -out .eval/godoc

# eval runs it through an in-process Apiary on the default embedder (the
# serve flags apply: EVAL_FLAGS="--embedder local"), in the three query modes,
# with BM25 in the same run.
eval: eval-data
	$(GO) run ./cmd/apiary models pull --models-dir $(MODELS_DIR)
	$(GO) run ./cmd/apiary eval --models-dir $(MODELS_DIR) --baseline bm25 --mode all $(EVAL_FLAGS) .eval/godoc
