#!/usr/bin/env bash
# Prepares a machine for the end-to-end tests; idempotent, a second run takes seconds.
#   - Debian packages: curl, the two C headers Ollama's llama.cpp needs, a C++ compiler, node/npm
#     (the last only when `node` is missing);
#   - the real Ollama (CPU only, built from the Go module proxy) and the tiny models, into
#     ${HEARTH_E2E_CACHE:-$HOME/.cache/hearth-e2e} by realollama/build.sh;
#   - the openai npm SDK into e2e/node (npm ci from the committed lock file).
# Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${HEARTH_E2E_CACHE:-$HOME/.cache/hearth-e2e}
export HEARTH_E2E_CACHE=$cache
mkdir -p "$cache"

log() { printf 'e2e setup: %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------------------------
need=()
for p in curl nlohmann-json3-dev libstb-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
command -v g++ >/dev/null 2>&1 || need+=(g++)
if ! command -v node >/dev/null 2>&1; then
  need+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${need[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
fi

# --- Ollama and the tiny models ----------------------------------------------------------------
# One build at a time per cache: a second setup.sh waits on the lock. A build started by hand
# (build.sh without this lock) is waited for too, so that two `go install`s never write the
# same binary.
exec 9>"$cache/.setup.lock"
flock 9
while command -v pgrep >/dev/null 2>&1 && pgrep -f "go install github.com/ollama/ollama@" >/dev/null; do
  log "an Ollama build is already running; waiting for it"
  sleep 10
done
if [ ! -x "$cache/bin/ollama" ] || [ ! -f "$cache/tiny2.gguf" ]; then
  log "building Ollama and the tiny models into $cache (about 6 minutes the first time)"
fi
"$here/realollama/build.sh" "$cache" >/dev/null
"$cache/bin/ollama" --version >/dev/null 2>&1 || { log "$cache/bin/ollama does not run"; exit 1; }
for m in tiny tiny2; do
  [ -s "$cache/$m.gguf" ] || { log "$cache/$m.gguf is missing"; exit 1; }
done
flock -u 9

# --- the openai npm SDK ------------------------------------------------------------------------
cd "$here/node"
want=$(node -p 'require("./package-lock.json").packages["node_modules/openai"].version')
have=$(node -p 'try { require("./node_modules/openai/package.json").version } catch { "" }')
if [ "$want" != "$have" ]; then
  log "installing openai@$want into $here/node"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  else
    npm install --no-audit --no-fund --loglevel=error >&2
  fi
fi

echo "$cache"
