# soulprint-rlm: one uvicorn worker (the job runner lives in the same process), non-root.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json \
    LOCAL_DATA_DIR=/app/data

WORKDIR /app
RUN useradd --create-home --uid 10001 soulprint

COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install . && mkdir -p /app/data && chown soulprint /app/data

USER soulprint
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8000\")}/health', timeout=2)"

# SIGTERM: uvicorn stops accepting, the lifespan lets running jobs finish for
# SHUTDOWN_GRACE_SECONDS (20) and then releases their leases - all below Render's
# maxShutdownDelaySeconds (60 in render.yaml).
CMD ["sh", "-c", "exec python -m app serve --host 0.0.0.0 --port ${PORT:-8000}"]
