#!/usr/bin/env bash
# The frontend's API types, generated from the OpenAPI schema that drf-spectacular builds (no server needed) by
# openapi-typescript (pinned in frontend/package.json).
#
#   scripts/api_types.sh OUT.ts           regenerate OUT.ts (`make types`)
#   scripts/api_types.sh --check OUT.ts   fail when the committed OUT.ts differs from the schema, or when the schema
#                                         has a warning or does not validate (`make types-check`)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CHECK=0
if [ "${1:-}" = "--check" ]; then
    CHECK=1
    shift
fi
OUT="${1:?usage: scripts/api_types.sh [--check] OUT.ts}"
PY="${PY:-$ROOT/.venv/bin/python}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
if [ "$CHECK" = 1 ]; then
    if ! "$PY" manage.py spectacular --validate --fail-on-warn --file "$work/schema.yml"; then
        echo "error: the API schema has a warning or does not validate (above): fix the serializer or view" >&2
        status=1
    fi
fi
if [ ! -s "$work/schema.yml" ]; then  # not written after a warning: once more without failing, to compare the types
    "$PY" manage.py spectacular --file "$work/schema.yml" 2>/dev/null
fi
(cd frontend && npx --no-install openapi-typescript "$work/schema.yml" --output "$work/schema.gen.ts" >/dev/null)

if [ "$CHECK" = 1 ]; then
    if ! diff -u "$OUT" "$work/schema.gen.ts" > "$work/diff"; then
        head -n 60 "$work/diff" >&2
        echo "error: $OUT does not match the API schema (a serializer or view changed): run \`make types\` and commit it" >&2
        exit 1
    fi
    echo "$OUT matches the API schema"
    exit "$status"
else
    cp "$work/schema.gen.ts" "$OUT"
    echo "wrote $OUT"
fi
