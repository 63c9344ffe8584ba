#!/usr/bin/env bash
# Runs the end-to-end suite: setup (idempotent), then the tests tagged e2e.
#   usage: e2e/run.sh [go test flags...]     e.g. e2e/run.sh -run 'TestOllamaCLI'
# HEARTH_E2E_CACHE chooses where Ollama and the tiny models are built (default ~/.cache/hearth-e2e);
# HEARTH_E2E_DIRECT=1 points the clients at Ollama itself (to check the suite, not hearth).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HEARTH_E2E_CACHE=${HEARTH_E2E_CACHE:-$HOME/.cache/hearth-e2e}
"$here/setup.sh" >/dev/null
cd "$here/.."
exec go test -tags e2e -count=1 -timeout 40m -v "$@" ./e2e/...
