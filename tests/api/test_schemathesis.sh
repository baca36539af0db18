#!/usr/bin/env bash
# Schemathesis against a real `runwatch start`: every operation of the OpenAPI document the
# daemon serves, called with generated valid and invalid input (examples, coverage,
# fuzzing and stateful phases); no answer may be a 5xx and the daemon must not crash.
#
#   tests/api/test_schemathesis.sh                 # make test: about 2 minutes
#   ST_MAX_EXAMPLES=2000 ST_MAX_TIME=900 tests/api/test_schemathesis.sh   # make soak
#   ST_CHECKS=all tests/api/test_schemathesis.sh   # also conformance checks (exploratory)
#
# Nothing leaves this machine: generated notifiers can point anywhere (any URL, and
# Workplace's default base is graph.facebook.com), and the daemon delivers every stored
# event to every enabled notifier, so the daemon and schemathesis run in a private network
# namespace that has only a loopback interface: no route, no DNS, nothing outside. The
# daemon's HTTP client also gets a proxy on a closed loopback port, so even a URL on
# loopback reaches nothing but a refused connection. Without a namespace (no privilege for
# one) operations that create notifiers or send test messages are left out instead.
#
# Needs target/debug/runwatch (cargo build -p runwatch-cli). Installs schemathesis from
# PyPI into target/schemathesis-venv the first time (the only step that uses the network).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/debug/runwatch
VENV=$TARGET/schemathesis-venv
ST_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-60}
MAX_TIME=${ST_MAX_TIME:-110}
ARTIFACTS=$TARGET/artifacts/schemathesis

if [ -z "${RUNWATCH_ST_ISOLATED:-}" ]; then
  if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
    echo "schemathesis: installing schemathesis==$ST_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
  fi
  [ -x "$BIN" ] || { echo "schemathesis: $BIN is not built; run 'cargo build -p runwatch-cli' first" >&2; exit 1; }
  # Run the rest in a network namespace of its own (as root, or as a user namespace's root).
  if unshare --net true 2>/dev/null; then
    exec env RUNWATCH_ST_ISOLATED=netns unshare --net -- bash "$SELF" "$@"
  elif unshare --user --map-root-user --net true 2>/dev/null; then
    exec env RUNWATCH_ST_ISOLATED=netns unshare --user --map-root-user --net -- bash "$SELF" "$@"
  fi
  echo "schemathesis: warning: no network namespace available; leaving out POST /notifiers and the test send" >&2
  RUNWATCH_ST_ISOLATED=none
fi

EXCLUDE=(--exclude-path /api/v1/stream) # an endless server-sent-events response
if [ "$RUNWATCH_ST_ISOLATED" = netns ]; then
  # A new namespace's loopback is down; bring it up (no iproute2 needed).
  python3 - <<'EOF'
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]  # SIOCGIFFLAGS
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS: IFF_UP
EOF
  # Check the isolation before generating anything (without sending a packet): the only
  # interface is loopback and there is no IPv4 route.
  interfaces=$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/net/dev | tr '\n' ' ')
  if [ "$interfaces" != "lo " ] || [ "$(awk 'NR > 1' /proc/net/route | wc -l)" -ne 0 ]; then
    echo "schemathesis: the namespace has interfaces '$interfaces' or routes; refusing to run" >&2
    exit 1
  fi
  echo "schemathesis: isolated in a private network namespace (loopback only)"
else
  EXCLUDE+=(--exclude-path /api/v1/notifiers --exclude-path '/api/v1/notifiers/{id}/test')
fi

WORK=$(mktemp -d)
DAEMON_PID=
cleanup() {
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then kill -KILL "$DAEMON_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A closed port for the daemon's proxy: bound, then released.
CLOSED_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u NO_PROXY -u no_proxy \
  ALL_PROXY="http://127.0.0.1:$CLOSED_PORT" HTTPS_PROXY="http://127.0.0.1:$CLOSED_PORT" HTTP_PROXY="http://127.0.0.1:$CLOSED_PORT" \
  RUNWATCH_LOG=warn \
  "$BIN" --data-dir "$WORK/data" start --http 127.0.0.1:0 </dev/null >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
DAEMON_PID=$!
for _ in $(seq 600); do
  grep -q '^Press Ctrl+C to exit' "$WORK/daemon.out" && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { echo "schemathesis: the daemon exited:" >&2; cat "$WORK/daemon.out" "$WORK/daemon.err" >&2; exit 1; }
  sleep 0.1
done
URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/#token=[0-9a-f]*' "$WORK/daemon.out" | head -n1)
[ -n "$URL" ] || { echo "schemathesis: no URL in the daemon's output" >&2; cat "$WORK/daemon.out" >&2; exit 1; }
BASE=${URL%%/#token=*}
TOKEN=${URL##*#token=}

mkdir -p "$ARTIFACTS"
echo "schemathesis: $BASE/api/v1/openapi.json, at most $MAX_EXAMPLES examples per operation, $MAX_TIME s"
for attempt in 1 2; do
  status=0
  (cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/api/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "${ST_CHECKS:-not_a_server_error}" \
    "${EXCLUDE[@]}" \
    --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" \
    --request-timeout 20 --workers 2 --no-color \
    --generation-database none \
    --report junit --report-junit-path "$ARTIFACTS/junit.xml") | tee "$ARTIFACTS/output.txt" || status=$?
  # CPython 3.11's ast module can fail inside Hypothesis with "AST constructor recursion
  # depth mismatch" (python/cpython#106905): the tool crashed, the API was not at fault.
  # Only a run whose every error is that crash, with no failure, is run once more.
  errors=$(awk '/^Errors:/{on=1; next} on && NF==0{on=0} on' "$ARTIFACTS/output.txt")
  if [ "$status" -ne 0 ] && [ "$attempt" -eq 1 ] && ! grep -q '^Failures:' "$ARTIFACTS/output.txt" \
     && grep -q 'AST constructor recursion depth mismatch' "$ARTIFACTS/output.txt" \
     && [ -n "$errors" ] && ! grep -v 'Runtime Error' <<<"$errors" | grep -q .; then
    echo "schemathesis: the tool itself crashed (CPython's AST bug, not a finding); running once more"
    continue
  fi
  break
done

# The daemon survived all of it and stops cleanly.
if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
  echo "schemathesis: the daemon died during the run:" >&2
  cat "$WORK/daemon.err" >&2
  exit 1
fi
stop_started=$(date +%s)
kill -TERM "$DAEMON_PID"
daemon_status=0
wait "$DAEMON_PID" || daemon_status=$?
DAEMON_PID=
echo "schemathesis: the daemon stopped $(( $(date +%s) - stop_started )) s after SIGTERM"
python3 - "$WORK/data/runwatch.db" <<'EOF' || true
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
count = lambda table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
print(f"schemathesis: the run left {count('notifications')} notifications, {count('notifiers')} notifiers, {count('deliveries')} deliveries")
EOF
cp "$WORK/daemon.err" "$ARTIFACTS/daemon.log"
if grep -qE 'panicked|internal error' "$WORK/daemon.err"; then
  echo "schemathesis: the daemon panicked:" >&2
  grep -E 'panicked|internal error' "$WORK/daemon.err" >&2
  exit 1
fi
[ "$daemon_status" -eq 0 ] || { echo "schemathesis: the daemon exited $daemon_status after SIGTERM" >&2; exit 1; }
[ "$status" -eq 0 ] || { echo "schemathesis: failures found (see $ARTIFACTS/output.txt)" >&2; exit "$status"; }
echo "schemathesis: passed: no 5xx, the daemon did not crash and stopped cleanly"
