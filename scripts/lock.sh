#!/usr/bin/env bash
# The locked Python dependency set: compile the inputs into hashed locks (`make lock`), or check that the locks were
# compiled from the inputs as they are now (`make lock-check`, part of `make lint`; no network).
#
#   scripts/lock.sh            re-lock after editing an input (keeps every pin that still fits: uv prefers the
#                              versions already in the lock; UPGRADE=1 lets them move to the newest allowed)
#   scripts/lock.sh --check    fail when an input changed since the locks were compiled
#
# Inputs -> locks (all for CPython 3.11 on x86_64 Linux, every pin with its sha256 hashes from PyPI):
#   requirements.txt         -> requirements.lock          runtime: the production image, Modal, the workers
#   requirements-dev.txt     -> requirements-dev.lock      runtime + tests and tools (pytest, Playwright, ruff, uv...)
#   requirements-nodeps.txt  -> requirements-nodeps.lock   installed with --no-deps (their declared dependencies
#                                                           would replace the pinned stack)
# torch and its CUDA-only packages (nvidia-*, cuda-*, triton) are resolved but not written into the locks: torch is
# installed first, as the CPU or the CUDA build (README "Dependencies"), then the locks with --require-hashes --no-deps.
# uv: the `uv` of the virtualenv (requirements-dev.txt pins it) or UV=/path/to/uv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
INPUTS=(requirements.txt requirements-dev.txt requirements-nodeps.txt constraints.txt)
LOCKS=(requirements.lock requirements-dev.lock requirements-nodeps.lock)
inputs_hash() { cat "${INPUTS[@]}" | sha256sum | cut -c1-32; }
MARK="# inputs-sha256:"

if [ "${1:-}" = "--check" ]; then
    want="$(inputs_hash)"
    status=0
    for lock in "${LOCKS[@]}"; do
        got="$(grep -m1 "^$MARK" "$lock" 2>/dev/null | awk '{print $3}' || true)"
        if [ "$got" != "$want" ]; then
            echo "error: $lock is out of date with ${INPUTS[*]} (recorded ${got:-nothing}, now $want): run \`make lock\`" >&2
            status=1
        fi
    done
    [ "$status" = 0 ] && echo "locks up to date with ${INPUTS[*]}"
    exit "$status"
fi

UV="${UV:-$ROOT/.venv/bin/uv}"
if [ ! -x "$UV" ]; then
    UV="$(command -v uv || true)"
fi
if [ -z "$UV" ]; then
    echo "error: no uv (pip install -r requirements-dev.lock, or set UV=)" >&2
    exit 2
fi
COMMON=(--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --quiet
    --custom-compile-command "make lock")
if [ "${UPGRADE:-0}" = "1" ]; then
    COMMON+=(--upgrade)
fi
# Extra constraints for this run only (e.g. LOCK_CONSTRAINTS=<(pip freeze) to lock what a venv has).
if [ -n "${LOCK_CONSTRAINTS:-}" ]; then
    COMMON+=(-c "$LOCK_CONSTRAINTS")
fi

# What torch brings that is CUDA-only (its PyPI wheel is the CUDA build): resolved once without hashes to name them.
probe="$(mktemp)"
trap 'rm -f "$probe" "$probe".*' EXIT
"$UV" pip compile requirements.txt -c constraints.txt "${COMMON[@]}" --no-annotate --no-header -o "$probe"
NO_EMIT=()
while read -r name; do
    NO_EMIT+=(--no-emit-package "$name")
done < <(sed -nE 's/^(torch|triton|nvidia-[^=]+|cuda-[^=]+)==.*/\1/p' "$probe")

hash="$(inputs_hash)"
compile() {  # compile OUT INPUT [ARGS...]: into a temporary file, then the header line in front
    local out="$1" input="$2"
    shift 2
    cp "$out" "$probe.out" 2>/dev/null || : > "$probe.out"  # uv keeps the pins of the existing output
    "$UV" pip compile "$input" "${COMMON[@]}" --generate-hashes "$@" -o "$probe.out"
    { echo "$MARK $hash (of ${INPUTS[*]}; \`make lock-check\` compares it)"; grep -v "^$MARK" "$probe.out"; } > "$out"
    echo "wrote $out ($(grep -cE '^[A-Za-z0-9]' "$out") packages)"
}
compile requirements.lock requirements.txt -c constraints.txt "${NO_EMIT[@]}"
# The dev lock takes every runtime pin from requirements.lock, so the two agree.
compile requirements-dev.lock requirements-dev.txt -c constraints.txt -c requirements.lock "${NO_EMIT[@]}"
compile requirements-nodeps.lock requirements-nodeps.txt --no-deps
