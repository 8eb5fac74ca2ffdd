#!/usr/bin/env bash
# Install the GGUF export tooling from the package registry (never vendored in git).
#
#   scripts/install_gguf_tools.sh [VENV_DIR] [TARGET_DIR]
#
# 1. Downloads the llama-cpp-python sdist (it vendors llama.cpp) into a cache and extracts llama.cpp's HF -> GGUF
#    converter (convert_hf_to_gguf.py + its conversion/ package + the vendored gguf-py/) into TARGET_DIR
#    (default <repo>/vendor/llama.cpp-tools, gitignored). The exporters find it there or via FINETUNE_GGUF_TOOLS.
# 2. Builds and installs llama-cpp-python into the venv (the real llama.cpp runtime the GGUF verification uses).
#    This compiles llama.cpp from source (4-7 min on 2 cores) and is skipped when `import llama_cpp` already works.
#
# Idempotent: a second run with everything in place takes about a second.
# Env: LLAMA_CPP_PYTHON_VERSION (default 0.3.36), FINETUNE_CACHE_DIR (default ~/.cache/finetune),
#      SKIP_LLAMA_CPP_RUNTIME=1 to extract the converter only, CMAKE_ARGS passed through to the build,
#      LLAMA_CPP_PORTABLE=1 to build for any x86_64 CPU (-DGGML_NATIVE=OFF: no -march=native), as the Docker and
#      Modal images do (an image built on one host runs on others); the default tunes llama.cpp for this CPU
#      (on a CPU with AMX: its instruction sets without AMX, see below).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$REPO_DIR/.venv}"
TARGET_DIR="${2:-$REPO_DIR/vendor/llama.cpp-tools}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE_DIR="${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune}/sdist"
CONSTRAINTS="$REPO_DIR/constraints.txt"
PY="$VENV_DIR/bin/python"
MARKER="$TARGET_DIR/.installed-llama-cpp-python-$VERSION"

if [ ! -x "$PY" ]; then
    echo "error: no python at $PY (pass the virtualenv as the first argument)" >&2
    exit 2
fi
CONSTRAINT_ARGS=()
if [ -f "$CONSTRAINTS" ]; then
    CONSTRAINT_ARGS=(-c "$CONSTRAINTS")
fi

SDIST="$CACHE_DIR/llama_cpp_python-$VERSION.tar.gz"

fetch_sdist() {
    if [ -f "$SDIST" ]; then
        return
    fi
    mkdir -p "$CACHE_DIR"
    echo "downloading the llama-cpp-python $VERSION sdist into $CACHE_DIR"
    "$PY" -m pip download --no-deps --no-binary :all: --quiet -d "$CACHE_DIR" "llama-cpp-python==$VERSION"
    if [ ! -f "$SDIST" ]; then
        echo "error: the download did not produce $SDIST" >&2
        exit 1
    fi
}

# --- 1. the converter --------------------------------------------------------------------------------------------
if [ -f "$MARKER" ] && [ -f "$TARGET_DIR/convert_hf_to_gguf.py" ]; then
    echo "converter already in $TARGET_DIR"
else
    fetch_sdist
    STAGE="$(mktemp -d "${TMPDIR:-/tmp}/gguf-tools.XXXXXX")"
    trap 'rm -rf "$STAGE"' EXIT
    PREFIX="llama_cpp_python-$VERSION/vendor/llama.cpp"
    # Only what the converter imports: the script, its sibling conversion/ package (newer llama.cpp), gguf-py/.
    tar -xzf "$SDIST" -C "$STAGE" --wildcards \
        "$PREFIX/convert_hf_to_gguf.py" "$PREFIX/convert_lora_to_gguf.py" "$PREFIX/gguf-py/*" "$PREFIX/LICENSE" \
        2>/dev/null || tar -xzf "$SDIST" -C "$STAGE" --wildcards "$PREFIX/convert_hf_to_gguf.py" "$PREFIX/gguf-py/*"
    if tar -tzf "$SDIST" "$PREFIX/conversion" >/dev/null 2>&1 || tar -tzf "$SDIST" | grep -q "^$PREFIX/conversion/"; then
        tar -xzf "$SDIST" -C "$STAGE" --wildcards "$PREFIX/conversion/*"
    fi
    SRC="$STAGE/$PREFIX"
    if [ ! -f "$SRC/convert_hf_to_gguf.py" ] || [ ! -d "$SRC/gguf-py/gguf" ]; then
        echo "error: $SDIST does not contain convert_hf_to_gguf.py and gguf-py/" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$TARGET_DIR")"
    NEW="$(dirname "$TARGET_DIR")/.$(basename "$TARGET_DIR").new.$$"
    rm -rf "$NEW"
    mv "$SRC" "$NEW"
    touch "$NEW/.installed-llama-cpp-python-$VERSION"
    rm -rf "$TARGET_DIR"
    mv "$NEW" "$TARGET_DIR"
    echo "converter extracted into $TARGET_DIR"
fi

# --- 2. the llama.cpp runtime ------------------------------------------------------------------------------------
if [ "${SKIP_LLAMA_CPP_RUNTIME:-0}" = "1" ]; then
    echo "SKIP_LLAMA_CPP_RUNTIME=1: not installing llama-cpp-python"
    exit 0
fi
# Which build: "portable" (LLAMA_CPP_PORTABLE=1), "native" (-march=native) or, on a CPU with AMX, "native-no-amx":
# this CPU's instruction sets named one by one, AMX left out. ggml's AMX matrix multiply died with SIGILL (on
# `tileloadd`) when it ran on the OpenMP threads of a process that had loaded torch (an AMX Xeon VM, 2026-12-07:
# every GGUF verification in the test suite), while torch's own AMX kernels ran; AVX512-VNNI runs q8_0 without it.
FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { case "$FLAGS" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
if [ "${LLAMA_CPP_PORTABLE:-0}" = "1" ]; then
    FLAVOR=portable
elif has amx_tile; then
    FLAVOR=native-no-amx
else
    FLAVOR=native
fi
BUILD_STAMP="$TARGET_DIR/.llama-cpp-python-build"
INSTALLED="$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)' 2>/dev/null || true)"
BUILT="$(cat "$BUILD_STAMP" 2>/dev/null || true)"
if [ "$INSTALLED" = "$VERSION" ] && { [ "$BUILT" = "$VERSION $FLAVOR" ] || { [ -z "$BUILT" ] && [ "$FLAVOR" != native-no-amx ]; }; }; then
    echo "llama-cpp-python $VERSION already installed in $VENV_DIR"
    exit 0
fi
fetch_sdist
echo "building llama-cpp-python $VERSION ($FLAVOR) from source into $VENV_DIR (several minutes)"
# Tests, examples and the server are not needed: the Python binding only loads libllama.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF}"
if [ "$FLAVOR" = portable ]; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_NATIVE=OFF"
elif [ "$FLAVOR" = native-no-amx ]; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_SSE42=$(onoff sse4_2) -DGGML_F16C=$(onoff f16c) -DGGML_FMA=$(onoff fma)"
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_BMI2=$(onoff bmi2) -DGGML_AVX=$(onoff avx) -DGGML_AVX2=$(onoff avx2)"
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX_VNNI=$(onoff avx_vnni) -DGGML_AVX512=$(onoff avx512bw)"
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_VBMI=$(onoff avx512vbmi) -DGGML_AVX512_VNNI=$(onoff avx512_vnni)"
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512_BF16=$(onoff avx512_bf16)"
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
REBUILD_ARGS=()
if [ -n "$INSTALLED" ]; then  # another version or build flavor is installed: build this one, not a cached wheel
    REBUILD_ARGS=(--force-reinstall --no-deps --no-cache-dir)
fi
"$PY" -m pip install "${REBUILD_ARGS[@]}" "${CONSTRAINT_ARGS[@]}" "$SDIST"
"$PY" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__, "installed")'
mkdir -p "$TARGET_DIR"
echo "$VERSION $FLAVOR" > "$BUILD_STAMP"
