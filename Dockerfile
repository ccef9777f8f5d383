# The helpdesk backend: `helpdesk serve` by default, `helpdesk worker` with another command
# (docker-compose.yml runs both). Build: docker build -t helpdesk .
# In mainland China: --build-arg PIP_INDEX_URL=https://mirrors.aliyun.com/pypi/simple/
# (any PyPI mirror: the lock's hashes are checked whatever the index).

# Bookworm, not the newer Debian: its slim image ships the system time-zone database, which
# zoneinfo needs for HELPDESK_TIMEZONE (the lock has no `tzdata` wheel).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: uv, the hashed lock into a virtual environment, the app ---------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    UV_DEFAULT_INDEX=${PIP_INDEX_URL} \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CONFIG=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN python -m pip install --quiet "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, so this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m uv venv --quiet --python /usr/local/bin/python /opt/venv \
 && python -m uv pip sync --quiet --python /opt/venv/bin/python requirements.lock
COPY pyproject.toml README.md alembic.ini main.py ./
COPY alembic ./alembic
COPY app ./app
# Installed as `make install` does (editable, no dependencies): the code runs from /app, where
# app/db/migrate.py finds alembic/ beside app/. Compiled now: at run time /app is read-only.
RUN python -m uv pip install --quiet --python /opt/venv/bin/python --no-deps -e . \
 && /opt/venv/bin/python -m compileall -q app alembic main.py

# --- runtime: slim Python, the venv and the app, a user without privileges -------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HELPDESK_DATA_DIR=/data \
    HELPDESK_HOST=0.0.0.0 \
    HELPDESK_PORT=8000
RUN groupadd --system --gid 10001 helpdesk \
 && useradd --system --uid 10001 --gid helpdesk --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin helpdesk \
 && install -d -o helpdesk -g helpdesk -m 0750 /data
# Owned by root: the process can read its code, not change it.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER helpdesk:helpdesk
# Local attachments and, in development only, the generated secret key. A named volume mounted
# here starts out owned by `helpdesk`; a bind mount must be writable by uid 10001.
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (no database): the slim image has no curl, Python has urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/api/v1/health' % os.environ.get('HELPDESK_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
CMD ["helpdesk", "serve", "--host", "0.0.0.0"]
