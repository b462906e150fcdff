#!/usr/bin/env bash
# The GPU check of masf-bench, from the checkout, installing nothing (bench/gpu_check.py says what it checks).
#
#   bash bench/gpu_check.sh [OUT_DIR] [gpu_check.py options, e.g. --cpu-smoke]
#
# OUT_DIR: where gpu_check.json / gpu_check.md go (default $OUT, else bench/results).
# PYTHON: the interpreter (default: the checkout's .venv if there is one, else python3).
# GPU_CHECK_LIMIT_S: the total time bound in seconds (default 480); parts stop starting 90 s before it.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARGS="$*"
OUT_DIR="${OUT:-$HERE/bench/results}"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    OUT_DIR="$1"
    shift
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then PY=python3
    else echo "gpu_check: no python3 on PATH (set PYTHON)" >&2; exit 1
    fi
fi
LIMIT="${GPU_CHECK_LIMIT_S:-480}"
BUDGET=$(( LIMIT > 180 ? LIMIT - 90 : LIMIT / 2 ))
mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export GPU_CHECK_COMMAND="bash bench/gpu_check.sh${ARGS:+ $ARGS}"
cd "$HERE"
if command -v timeout >/dev/null 2>&1; then
    timeout -k 20 "$LIMIT" "$PY" bench/gpu_check.py --out-dir "$OUT_DIR" --budget-s "$BUDGET" "$@"
else
    "$PY" bench/gpu_check.py --out-dir "$OUT_DIR" --budget-s "$BUDGET" "$@"
fi
rc=$?
[ "$rc" -eq 124 ] && echo "gpu_check: stopped at the ${LIMIT} s bound; the parts done so far are in the files" >&2
echo "gpu_check: exit $rc; figures written to $(ls "$OUT_DIR"/gpu_check*.json "$OUT_DIR"/gpu_check*.md 2>/dev/null | tr '\n' ' ')"
exit "$rc"
