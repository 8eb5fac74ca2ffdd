# One image for web (finetune.serve: daphne processes), Celery workers and beat. The GPU worker runs it with a CUDA device reserved.
# Build: docker compose build. The torch build is a choice (README "Dependencies"): TORCH_INDEX_URL, CUDA 12.8 by
# default; a CPU-only image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (TORCH_INDEX_URL in .env
# for compose). The image has the runtime lock only: no pytest, Playwright or ruff (those are requirements-dev.lock).
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN mkdir -p /src/static && npm run build

FROM python:3.11-slim-bookworm
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FINETUNE_CACHE_DIR=/data/cache DJANGO_SETTINGS_MODULE=finetune.settings
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git curl postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock requirements-nodeps.lock constraints.txt ./
# torch first (from TORCH_INDEX_URL, with its CUDA libraries), then exactly the locked versions, hash-checked.
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' constraints.txt)" \
    && pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --require-hashes --no-deps -r requirements-nodeps.lock
COPY scripts/install_gguf_tools.sh scripts/
# The script takes a Python prefix: the image's own Python lives in /usr/local (bin/python). LLAMA_CPP_PORTABLE=1:
# llama.cpp built for any x86_64 CPU (-DGGML_NATIVE=OFF), not only the build host's.
RUN LLAMA_CPP_PORTABLE=1 bash scripts/install_gguf_tools.sh /usr/local /opt/llama.cpp-tools
ENV FINETUNE_GGUF_TOOLS=/opt/llama.cpp-tools
COPY . .
COPY --from=frontend /src/static/frontend /app/static/frontend
RUN DEBUG=1 python manage.py collectstatic --noinput -v 0
EXPOSE 8000
# The web tier: one daphne process per core on one socket (WEB_WORKERS, WEB_THREADS override; README "Serving many
# users"). Worker and beat services override this command.
CMD ["python", "-m", "finetune.serve", "--host", "0.0.0.0", "--port", "8000"]
