# One image for the worker, the GCP simulator and the approval service (docker-compose.yml
# picks the command). Keys and tokens are never baked in: compose mounts them at run time.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The whole project (see .dockerignore for what stays out), installed as a package so the
# image runs exactly what `pip install .` declares; worker.py stays in /app for
# `python worker.py`.
COPY . /app
RUN pip install /app \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin runbook \
    && mkdir -p /data \
    && chown runbook /data

USER runbook
# The worker is the default; the simulator and approval services override the command.
CMD ["python", "worker.py"]
