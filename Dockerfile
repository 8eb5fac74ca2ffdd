# One image for web (finetune.serve: daphne processes), Celery workers and beat. The GPU worker runs it with a CUDA device reserved.
# Build: docker compose build   (TORCH_INDEX_URL selects the torch build: CUDA by default on PyPI for x86_64)
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
COPY requirements.txt requirements-nodeps.txt constraints.txt ./
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' constraints.txt)" \
    && pip install -r requirements.txt -c constraints.txt \
    && pip install --no-deps -r requirements-nodeps.txt -c constraints.txt
COPY scripts/install_gguf_tools.sh scripts/
# The script takes a Python prefix: the image's own Python lives in /usr/local (bin/python).
RUN bash scripts/install_gguf_tools.sh /usr/local /opt/llama.cpp-tools
ENV FINETUNE_GGUF_TOOLS=/opt/llama.cpp-tools
COPY . .
COPY --from=frontend /src/static/frontend /app/static/frontend
RUN DEBUG=1 python manage.py collectstatic --noinput -v 0
EXPOSE 8000
# The web tier: one daphne process per core on one socket (WEB_WORKERS, WEB_THREADS override; README "Serving many
# users"). Worker and beat services override this command.
CMD ["python", "-m", "finetune.serve", "--host", "0.0.0.0", "--port", "8000"]
