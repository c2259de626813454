# syntax=docker/dockerfile:1
# One image for the API, the worker and the migrations (docker-compose.yml picks the command).
# The base is pinned by digest, given at build time: `docker buildx imagetools inspect python:3.11-slim` prints
# it; record it where the deployment keeps its settings (docker-compose.yml requires PYTHON_IMAGE_DIGEST). There is
# no default: a digest written here without being checked against the registry would be a guess.
ARG PYTHON_IMAGE_DIGEST
FROM python:3.11-slim@${PYTHON_IMAGE_DIGEST}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 simflow \
    && useradd --system --uid 10001 --gid simflow --no-create-home --home-dir /app --shell /usr/sbin/nologin simflow

# Pango and its fonts: WeasyPrint renders invoices as PDF; HarfBuzz subsets the fonts (fontTools, its fallback, is 15× slower).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Only what the application needs: never the virtualenv, the git history, var/ or a developer's .env.
# `*.py` takes the top-level modules (worker.py, simflow_cli.py); alembic runs from /app (alembic.ini).
COPY pyproject.toml uv.lock alembic.ini *.py ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY integrations ./integrations
COPY infra ./infra
COPY api ./api
COPY starters ./starters
COPY simulators ./simulators
COPY bench ./bench
COPY migrations ./migrations

# Installs the runtime dependencies only (no dev extra: no temporal CLI, test servers or test tools), hashes
# checked. The project itself is not installed: its code exists once, under /app, where it runs from
# (PYTHONPATH; templates and static files live next to it). The CLI is `python -m simflow_cli`.
# api/static may be empty, hence absent from git: create it while still root.
# Bytecode is compiled here, once: the tree is read-only for the simflow user and the workflow sandbox
# imports the workflow modules again for every workflow run.
RUN pip install uv==0.13.9 \
    && uv export --frozen --no-dev --no-emit-project --format requirements-txt -o /tmp/requirements.txt \
    && pip install --require-hashes -r /tmp/requirements.txt \
    && pip uninstall -y uv \
    && rm -f /tmp/requirements.txt \
    && mkdir -p api/static \
    && python -m compileall -q /app

USER simflow

EXPOSE 8000
CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--timeout-graceful-shutdown", "35"]
