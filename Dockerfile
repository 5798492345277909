# One image for the worker, the GCP simulator and the approval service (docker-compose.yml
# and deploy/k8s pick the command). Keys and tokens are never baked in: they are mounted at
# run time.
#
# Dependencies come from requirements.lock: every runtime dependency of pyproject.toml's
# [project] table pinned with hashes, so builds are reproducible; the `dev` and `test`
# extras (the Temporal dev-server binary, test tools) are not in it and never reach the
# image. After changing [project] dependencies, regenerate it with uv from a throwaway venv:
#   python3.11 -m venv /tmp/uv && /tmp/uv/bin/pip install uv
#   /tmp/uv/bin/uv pip compile pyproject.toml requirements-build.in --python-version 3.11 \
#       --python-platform x86_64-unknown-linux-gnu --generate-hashes -o requirements.lock
# (requirements-build.in adds the build backend, so building the project needs no download
# outside the lock either.)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Numeric ids, so Kubernetes' runAsNonRoot can verify the user (deploy/k8s runs as 10001).
RUN groupadd --system --gid 10001 runbook \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin runbook \
    && mkdir -p /data \
    && chown runbook:runbook /data

# Dependencies before the code: this layer is rebuilt only when the lock file changes, not
# on every code edit. --require-hashes refuses anything the lock does not pin exactly.
COPY requirements.lock /app/requirements.lock
RUN pip install --require-hashes --no-deps -r /app/requirements.lock

# The project itself (see .dockerignore for what stays out), installed without dependencies
# (all above, at the locked versions) and built with the locked setuptools, not a fresh
# download (--no-build-isolation); worker.py stays in /app for `python worker.py`.
COPY . /app
RUN pip install --no-deps --no-build-isolation /app

USER 10001:10001
# Prometheus metrics (REMEDIATION_METRICS_BIND) and /healthz, /readyz (REMEDIATION_HEALTH_BIND).
EXPOSE 9464 8081
# The worker is the default; the simulator and approval services override the command.
CMD ["python", "worker.py"]
