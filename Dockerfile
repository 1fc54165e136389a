# One image for every Surge service and the CLI.
#
#   docker build -t surge:dev .
#   docker run --rm surge:dev                                   # the coordinator (default)
#   docker run --rm surge:dev surge-service generator           # any other service
#   docker run --rm surge:dev surge --help                      # the CLI
#
# Kubernetes manifests (deploy/k8s) set `args:` only, so tini stays PID 1.
# NATS is not in here: it runs as its own pod (official nats image).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its pinned dependencies into a venv ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/surge
WORKDIR /src
# README.md* : pyproject.toml names README.md as the readme; copy it when present.
COPY pyproject.toml README.md* ./
COPY schemas ./schemas
COPY services ./services
RUN /opt/surge/bin/pip install .

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# tini as PID 1: forwards SIGTERM to the service (which then drains NATS and
# exits 0) and reaps children; a bare `surge run` as PID 1 would ignore SIGTERM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric id, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 surge \
 && useradd --system --uid 10001 --gid surge --home-dir /home/surge --create-home \
            --shell /usr/sbin/nologin surge
COPY --from=build /opt/surge /opt/surge
COPY plans /usr/local/share/surge/plans
ENV PATH=/opt/surge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/surge
# 4222 is NATS (elsewhere); the UI listens on 8089, the demo target on 8080.
EXPOSE 8089 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["surge-service", "coordinator"]
