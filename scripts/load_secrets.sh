# Sourced by scripts/run.sh: production settings unless DEBUG=1. With DEBUG off, SECRET_KEY and
# FINETUNE_ENCRYPTION_KEYS come from the environment or .env, else from var/secrets.env, generated on first start
# (mode 0600) and reused afterwards (finetune/local_secrets.py). Needs $PY and $ROOT.
export DEBUG="${DEBUG:-0}"
if [ "$DEBUG" != "1" ]; then
    secrets_file="${FINETUNE_SECRETS_FILE:-$ROOT/var/secrets.env}"
    "$PY" -m finetune.local_secrets "$secrets_file"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|\#*) continue ;; esac
        key="${line%%=*}"
        value="${line#*=}"  # the whole rest: a Fernet key ends with '='
        if [ -z "${!key:-}" ]; then export "$key=$value"; fi
    done < "$secrets_file"
fi
