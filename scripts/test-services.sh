#!/usr/bin/env bash
# test-services.sh starts the real servers that Apiary's distributed-adapter
# tests talk to, on 127.0.0.1, with all state under .test-services/ in the
# repository root:
#
#   milvus-lite   (PyPI, in .test-services/venv)          APIARY_TEST_MILVUS_ADDR
#   local-kms     (Go module, in .test-services/bin)      APIARY_TEST_KMS_ENDPOINT
#   fauxqs        (npm, in .test-services/npm; falls back APIARY_TEST_SQS_ENDPOINT
#                  to moto_server if fauxqs does not start)
#   nats-server   (the version pinned in go.mod)          APIARY_TEST_NATS_URL
#   moto_server   (PyPI moto[server], in                  APIARY_TEST_S3_ENDPOINT
#                  .test-services/venv; S3 for connectors/s3)
#   standardwebhooks (npm, installed only)                APIARY_TEST_NODE_PATH
#   cfn-lint      (PyPI, in .test-services/venv,          APIARY_TEST_CFN_LINT
#                  installed only; lints deploy/aws/)
#   ONNX models   (apiary models pull, in                 APIARY_TEST_MODELS_DIR
#                  .test-services/models: the runtime
#                  and the models the onnx tests load)
#   oidc-provider (npm, in .test-services/npm; launched   APIARY_TEST_OIDC_ISSUER,
#                  by scripts/oidc-provider.mjs)           APIARY_TEST_OIDC_CLIENT_ID,
#                                                         APIARY_TEST_OIDC_CLIENT_SECRET
#
# Usage:
#   scripts/test-services.sh start    install what is missing, start what is not
#                                     running, wait until healthy, write .test-services/env
#   scripts/test-services.sh start NAME...
#                                     only those services (milvus kms sqs nats oidc s3);
#                                     the env file names the ones running
#   scripts/test-services.sh stop     TERM every started process and wait for it
#   scripts/test-services.sh stop s3  only the named services
#   scripts/test-services.sh env      print .test-services/env
#   scripts/test-services.sh status   show which services run
#
# Then: source .test-services/env && go test -race ./workers/queue/sqs/...
#
# start is idempotent: a service whose pid file names a live process is left
# alone. Every service listens on a free port chosen at its start. A service
# that does not become healthy in time makes start fail with its log's tail.
# Logs are in .test-services/logs/*.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S="$ROOT/.test-services"
RUN="$S/run"
LOGS="$S/logs"
DATA="$S/data"
BIN="$S/bin"
VENV="$S/venv"
NPM="$S/npm"
ENV_FILE="$S/env"
MODELS="$S/models"

# Pinned versions: bump deliberately.
MILVUS_LITE_VERSION="3.2.2"
PYMILVUS_VERSION="3.0.2"
LOCAL_KMS_VERSION="v0.0.0-20260228092603-2a5e92d09ab6"
FAUXQS_VERSION="1.9.2"
STANDARDWEBHOOKS_VERSION="1.1.1"
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
OIDC_PROVIDER_VERSION="9.13.3"

# The client the local authorization server knows Apiary by (test only).
OIDC_CLIENT_ID="apiary-test"
OIDC_CLIENT_SECRET="apiary-test-secret-not-for-production"

# The models the onnx embedder's tests load (names of the model table in
# pipeline/embed/onnx/models.go, which pins their versions and digests).
TEST_MODELS=(all-minilm-l6-v2-q all-minilm-l6-v2 bge-small-en-v1.5-q)

# Seconds each service gets to become healthy (milvus-lite is slow the first time).
MILVUS_TIMEOUT="${MILVUS_TIMEOUT:-180}"
SERVICE_TIMEOUT="${SERVICE_TIMEOUT:-60}"

SERVICES=(milvus kms sqs nats oidc s3)

log() { printf 'test-services: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------- helpers

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
port_of() { cat "$RUN/$1.port" 2>/dev/null || true; }

alive() {
	local pid
	pid="$(pid_of "$1")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# healthy NAME reports whether service NAME answers on its port.
healthy() {
	local port
	port="$(port_of "$1")"
	[[ -n "$port" ]] || return 1
	case "$1" in
	sqs)
		curl -fsS -o /dev/null --max-time 2 -X POST "http://127.0.0.1:$port/" \
			-H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: AmazonSQS.ListQueues' \
			-H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0' \
			-d '{}' 2>/dev/null
		;;
	oidc)
		curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/.well-known/openid-configuration" 2>/dev/null
		;;
	kms)
		curl -fsS -o /dev/null --max-time 2 -X POST "http://127.0.0.1:$port/" \
			-H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: TrentService.ListKeys' \
			-d '{}' 2>/dev/null
		;;
	s3)
		curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/moto-api/" 2>/dev/null
		;;
	*) tcp_open "$port" ;;
	esac
}

# launch NAME PORT CMD... runs CMD detached in its own session, logging to logs/NAME.log.
launch() {
	local name="$1" port="$2"
	shift 2
	mkdir -p "$RUN" "$LOGS"
	printf '%s\n' "$port" >"$RUN/$name.port"
	: >"$LOGS/$name.log"
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	printf '%s\n' "$!" >"$RUN/$name.pid"
	log "$name: started pid $! on 127.0.0.1:$port"
}

# wait_healthy NAME TIMEOUT waits for NAME to answer; on failure it prints the
# log's tail, stops the process and returns 1.
wait_healthy() {
	local name="$1" timeout="$2" deadline
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if ! alive "$name"; then
			log "$name: process exited before it became healthy; last lines of $LOGS/$name.log:"
			tail -n 40 "$LOGS/$name.log" >&2 || true
			rm -f "$RUN/$name.pid"
			return 1
		fi
		if healthy "$name"; then
			log "$name: healthy"
			return 0
		fi
		sleep 0.5
	done
	log "$name: not healthy after ${timeout}s; last lines of $LOGS/$name.log:"
	tail -n 40 "$LOGS/$name.log" >&2 || true
	stop_one "$name" || true
	return 1
}

stop_one() {
	local name="$1" pid deadline
	pid="$(pid_of "$name")"
	if [[ -z "$pid" ]]; then
		return 0
	fi
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "$name: pid $pid did not exit within 30s of SIGTERM"
				return 1
			fi
			sleep 0.2
		done
		log "$name: stopped pid $pid"
	fi
	rm -f "$RUN/$name.pid" "$RUN/$name.port" "$RUN/$name.kind"
}

fresh_dir() {
	rm -rf "$1"
	mkdir -p "$1"
}

# ---------------------------------------------------------------- installs

install_venv() {
	if [[ ! -x "$VENV/bin/python" ]]; then
		log "creating $VENV"
		python3 -m venv "$VENV"
	fi
}

install_milvus() {
	install_venv
	if [[ -x "$VENV/bin/milvus-lite" ]] &&
		[[ "$("$VENV/bin/pip" show milvus-lite 2>/dev/null)" == *$'\nVersion: '"$MILVUS_LITE_VERSION"$'\n'* ]]; then
		return 0
	fi
	log "installing milvus-lite $MILVUS_LITE_VERSION, pymilvus $PYMILVUS_VERSION"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check \
		"milvus-lite==$MILVUS_LITE_VERSION" "pymilvus==$PYMILVUS_VERSION"
}

install_moto() {
	install_venv
	if [[ -x "$VENV/bin/moto_server" ]] &&
		[[ "$("$VENV/bin/pip" show moto 2>/dev/null)" == *$'\nVersion: '"$MOTO_VERSION"$'\n'* ]]; then
		return 0
	fi
	log "installing moto[server] $MOTO_VERSION"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

go_install() { # go_install BINARY MODULE@VERSION
	mkdir -p "$BIN"
	log "installing $2"
	(cd "$ROOT" && GOBIN="$BIN" go install "$2")
	[[ -x "$BIN/$1" ]] || die "go install $2 did not produce $BIN/$1"
}

install_kms() {
	local stamp="$BIN/local-kms.version"
	if [[ -x "$BIN/local-kms" && "$(cat "$stamp" 2>/dev/null)" == "$LOCAL_KMS_VERSION" ]]; then
		return 0
	fi
	go_install local-kms "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION"
	printf '%s\n' "$LOCAL_KMS_VERSION" >"$stamp"
}

nats_version() {
	awk '$1 == "github.com/nats-io/nats-server/v2" { print $2; exit }' "$ROOT/go.mod"
}

install_nats() {
	local want
	want="$(nats_version)"
	[[ -n "$want" ]] || die "no github.com/nats-io/nats-server/v2 in go.mod"
	if [[ -x "$BIN/nats-server" && "$("$BIN/nats-server" --version 2>/dev/null)" == *" $want" ]]; then
		return 0
	fi
	go_install nats-server "github.com/nats-io/nats-server/v2@$want"
}

install_npm() {
	local have_fx have_sw
	have_fx="$(node -p "require('$NPM/node_modules/fauxqs/package.json').version" 2>/dev/null || true)"
	have_sw="$(node -p "require('$NPM/node_modules/standardwebhooks/package.json').version" 2>/dev/null || true)"
	if [[ "$have_fx" == "$FAUXQS_VERSION" && "$have_sw" == "$STANDARDWEBHOOKS_VERSION" ]]; then
		return 0
	fi
	log "installing fauxqs@$FAUXQS_VERSION standardwebhooks@$STANDARDWEBHOOKS_VERSION (npm)"
	mkdir -p "$NPM"
	npm install --prefix "$NPM" --no-audit --no-fund --loglevel=error \
		"fauxqs@$FAUXQS_VERSION" "standardwebhooks@$STANDARDWEBHOOKS_VERSION" >&2
}

install_oidc() {
	local have
	have="$(node -p "require('$NPM/node_modules/oidc-provider/package.json').version" 2>/dev/null || true)"
	[[ "$have" == "$OIDC_PROVIDER_VERSION" ]] && return 0
	log "installing oidc-provider@$OIDC_PROVIDER_VERSION (npm)"
	mkdir -p "$NPM"
	npm install --prefix "$NPM" --no-audit --no-fund --loglevel=error \
		"oidc-provider@$OIDC_PROVIDER_VERSION" >&2
}

# ---------------------------------------------------------------- cfn-lint
# Not a server: the linter deploy/'s tests run on the CloudFormation template
# (deploy/aws/apiary.cfn.yaml) when APIARY_TEST_CFN_LINT names it. It shares
# the venv with milvus-lite and moto.

install_cfn_lint() {
	install_venv
	if [[ -x "$VENV/bin/cfn-lint" ]] &&
		[[ "$("$VENV/bin/pip" show cfn-lint 2>/dev/null)" == *$'\nVersion: '"$CFN_LINT_VERSION"$'\n'* ]]; then
		return 0
	fi
	log "installing cfn-lint $CFN_LINT_VERSION"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
}

# ---------------------------------------------------------------- models
# Not a server: the ONNX Runtime and the models in $MODELS, fetched by the
# code's own `apiary models pull`, which checks the pinned digests and keeps
# what is there (then it returns at once).

pull_models() {
	local args=() m
	for m in "${TEST_MODELS[@]}"; do
		args+=(--model "$m")
	done
	log "models: ${TEST_MODELS[*]} and the ONNX Runtime in $MODELS"
	(cd "$ROOT" && go run ./cmd/apiary models pull --models-dir "$MODELS" "${args[@]}" >&2) ||
		die "apiary models pull failed (it needs registry.npmjs.org and repo1.maven.org the first time)"
}

# ---------------------------------------------------------------- starts

start_milvus() {
	alive milvus && healthy milvus && return 0
	stop_one milvus
	install_milvus
	local port
	port="$(free_port)"
	fresh_dir "$DATA/milvus"
	launch milvus "$port" "$VENV/bin/milvus-lite" server --data-dir "$DATA/milvus" \
		--host 127.0.0.1 --port "$port"
	wait_healthy milvus "$MILVUS_TIMEOUT"
}

start_kms() {
	alive kms && healthy kms && return 0
	stop_one kms
	install_kms
	local port
	port="$(free_port)"
	fresh_dir "$DATA/kms"
	# local-kms listens on every interface (":PORT"); it has no bind-address setting.
	launch kms "$port" env PORT="$port" KMS_REGION=us-east-1 KMS_ACCOUNT_ID=111122223333 \
		KMS_DATA_PATH="$DATA/kms" "$BIN/local-kms"
	wait_healthy kms "$SERVICE_TIMEOUT"
}

start_fauxqs() {
	install_npm || return 1
	local port launcher="$RUN/fauxqs-launch.mjs"
	port="$(free_port)"
	mkdir -p "$RUN"
	# fauxqs's own CLI listens on 0.0.0.0; this launcher serves the same app
	# (buildApp, in-memory state) on 127.0.0.1 only. FAUXQS_HOST is left unset
	# so that queue URLs name the address the client used (127.0.0.1:PORT).
	cat >"$launcher" <<'EOF'
const { buildApp } = await import(process.env.FAUXQS_APP);
const app = buildApp({ logger: process.env.FAUXQS_LOGGER !== "false" });
await app.listen({ port: Number(process.env.FAUXQS_PORT), host: "127.0.0.1" });
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => app.close().then(() => process.exit(0)));
EOF
	launch sqs "$port" env FAUXQS_APP="$NPM/node_modules/fauxqs/dist/app.js" FAUXQS_PORT="$port" \
		FAUXQS_LOGGER=false node "$launcher"
	printf 'fauxqs\n' >"$RUN/sqs.kind"
	wait_healthy sqs "$SERVICE_TIMEOUT"
}

start_moto() {
	install_moto
	local port
	port="$(free_port)"
	launch sqs "$port" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
	printf 'moto\n' >"$RUN/sqs.kind"
	wait_healthy sqs "$SERVICE_TIMEOUT"
}

start_sqs() {
	alive sqs && healthy sqs && return 0
	stop_one sqs
	if ! start_fauxqs; then
		log "sqs: fauxqs did not start; falling back to moto_server"
		start_moto
	fi
}

# start_s3 runs moto_server for the S3 connector's tests, apart from the
# SQS fallback's: the tests create a bucket each, with any credential (moto
# does not check signatures here; the expired-token answer is played by the
# tests' proxy).
start_s3() {
	alive s3 && healthy s3 && return 0
	stop_one s3
	install_moto
	local port
	port="$(free_port)"
	launch s3 "$port" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
	printf 'moto\n' >"$RUN/s3.kind"
	wait_healthy s3 "$SERVICE_TIMEOUT"
}

start_nats() {
	alive nats && healthy nats && return 0
	stop_one nats
	install_nats
	local port
	port="$(free_port)"
	fresh_dir "$DATA/nats"
	launch nats "$port" "$BIN/nats-server" -js -sd "$DATA/nats" -a 127.0.0.1 -p "$port"
	wait_healthy nats "$SERVICE_TIMEOUT"
}

start_oidc() {
	alive oidc && healthy oidc && return 0
	stop_one oidc
	install_oidc
	local port
	port="$(free_port)"
	launch oidc "$port" env OIDC_PROVIDER_MODULE="$NPM/node_modules/oidc-provider" OIDC_PORT="$port" \
		OIDC_CLIENT_ID="$OIDC_CLIENT_ID" OIDC_CLIENT_SECRET="$OIDC_CLIENT_SECRET" \
		node "$ROOT/scripts/oidc-provider.mjs"
	wait_healthy oidc "$SERVICE_TIMEOUT"
}

# env_line NAME LINE prints LINE when service NAME has a port (it was started).
env_line() { [[ -n "$(port_of "$1")" ]] && printf '%s\n' "$2" || true; }

write_env() {
	local tmp="$ENV_FILE.tmp"
	{
	cat <<EOF
# Written by scripts/test-services.sh start; source it before running tests.
EOF
	env_line milvus "export APIARY_TEST_MILVUS_ADDR=127.0.0.1:$(port_of milvus)"
	env_line kms "export APIARY_TEST_KMS_ENDPOINT=http://127.0.0.1:$(port_of kms)"
	env_line sqs "export APIARY_TEST_SQS_ENDPOINT=http://127.0.0.1:$(port_of sqs)"
	env_line nats "export APIARY_TEST_NATS_URL=nats://127.0.0.1:$(port_of nats)"
	env_line oidc "export APIARY_TEST_OIDC_ISSUER=http://127.0.0.1:$(port_of oidc)"
	env_line oidc "export APIARY_TEST_OIDC_CLIENT_ID=$OIDC_CLIENT_ID"
	env_line oidc "export APIARY_TEST_OIDC_CLIENT_SECRET=$OIDC_CLIENT_SECRET"
	env_line s3 "export APIARY_TEST_S3_ENDPOINT=http://127.0.0.1:$(port_of s3)"
	cat <<EOF
export APIARY_TEST_NODE_PATH=$NPM/node_modules
export APIARY_TEST_CFN_LINT=$VENV/bin/cfn-lint
export APIARY_TEST_MODELS_DIR=$MODELS
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
EOF
	} >"$tmp"
	mv "$tmp" "$ENV_FILE"
}

cmd_start() {
	command -v go >/dev/null || die "go is required"
	command -v node >/dev/null || die "node is required"
	command -v npm >/dev/null || die "npm is required"
	command -v python3 >/dev/null || die "python3 is required"
	command -v curl >/dev/null || die "curl is required"
	mkdir -p "$RUN" "$LOGS" "$DATA"
	rm -f "$ENV_FILE"
	if (($# > 0)); then # only the named services
		local name
		for name in "$@"; do
			[[ " ${SERVICES[*]} " == *" $name "* ]] || die "no service $name (${SERVICES[*]})"
			"start_$name"
		done
		write_env
		log "$* healthy; source $ENV_FILE"
		return 0
	fi
	# The npm install also brings standardwebhooks for the webhook verifier test.
	install_npm
	install_cfn_lint
	pull_models
	start_kms
	start_nats
	start_sqs
	start_milvus
	start_oidc
	start_s3
	write_env
	log "all services healthy; source $ENV_FILE"
}

cmd_stop() {
	local rc=0 name names=("${SERVICES[@]}")
	(($# > 0)) && names=("$@")
	for name in "${names[@]}"; do
		stop_one "$name" || rc=1
	done
	if (($# > 0)); then
		write_env
	else
		rm -f "$ENV_FILE"
	fi
	return "$rc"
}

cmd_env() {
	[[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run $0 start"
	cat "$ENV_FILE"
}

cmd_status() {
	local name
	for name in "${SERVICES[@]}"; do
		if alive "$name" && healthy "$name"; then
			printf '%-7s up    pid %s port %s %s\n' "$name" "$(pid_of "$name")" "$(port_of "$name")" \
				"$(cat "$RUN/$name.kind" 2>/dev/null || true)"
		else
			printf '%-7s down\n' "$name"
		fi
	done
}

case "${1:-}" in
start)
	shift
	cmd_start "$@"
	;;
stop)
	shift
	cmd_stop "$@"
	;;
env) cmd_env ;;
status) cmd_status ;;
*)
	echo "usage: $0 start|stop|env|status" >&2
	exit 2
	;;
esac
