# syntax=docker/dockerfile:1
#
# One image for every OrderMesh service. The service is chosen by the command:
#
#   docker build -t ordermesh .
#   docker run ordermesh                                  # python -m services.order (default)
#   docker run ordermesh python -m services.billing       # any other service
#
# Configuration is environment only (OM_* variables, see README.md). Inside a container the
# API has to listen on all interfaces: set OM_<SERVICE>_HTTP_HOST=0.0.0.0 (docker-compose.yml
# and deploy/k8s do). Every service serves /health, /ready and /metrics on its HTTP port
# (order 8001, inventory 8002, production 8003, billing 8004, reporting 8005).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve the locked environment with uv ------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --root-user-action=ignore "uv==${UV_VERSION}"

# Use the image's interpreter (never download one), compile bytecode at build time so the
# runtime image can stay read-only, copy instead of hard-linking out of the cache mount.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /app

# Dependencies first (only pyproject.toml + uv.lock), so code changes reuse this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself (installed editable, pointing at /app; hatchling needs README.md).
COPY README.md ./
COPY libs ./libs
COPY services ./services
COPY tools ./tools
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && .venv/bin/python -m compileall -q libs services tools

# --- runtime: the environment and the code, no build tools, non-root ------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 ordermesh \
    && useradd --system --uid 10001 --gid ordermesh --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin ordermesh

# Same path as in the build stage: the venv's interpreter link and the editable install
# both point at /app. Files stay owned by root, so the service cannot modify its own code.
COPY --from=build /app /app

WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001

EXPOSE 8001 8002 8003 8004 8005
STOPSIGNAL SIGTERM

# No HEALTHCHECK here: the port differs per service, so docker-compose.yml and the
# Kubernetes probes check /ready and /health themselves.
CMD ["python", "-m", "services.order"]
