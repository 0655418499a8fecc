# omnicore's container image (README "Containers").
#
#   docker build -t omnicore .                               # the host, an empty app
#   docker build -t omnicore:demo --target demo .            # + the example plugins, warm
#
# The demo target takes the example plugins plugins/demo.yaml names from build/plugins, which
# `scripts/dev setup` builds from their source with the toolchains (Rust, Go, Node,
# componentize-py): an image build has no business installing compilers, browsers or database
# servers. Every stage runs from BASE,
# an image with Python 3.11 and apt (a public python:3.11-slim-bookworm by default; the tests
# build from a Debian bookworm base they make with mmdebstrap, with no registry at hand).
#
# requirements  the host's Python requirements, read from pyproject.toml.
# build    installs those into /opt/omnicore, then compiles the host there (its C call path
#          is required: a missing compiler fails the build instead of shipping the slow path).
# runtime  Python, /opt/omnicore and a non-root user; nothing else. The default app is empty:
#          no plugin, no grant, no connector.
# demo     the runtime plus the example plugins, their grants (plugins/demo.yaml) and their
#          compiled modules baked into the image (with their own key), so a pod starts warm.

ARG BASE=python:3.11-slim-bookworm

# omnicore's requirements (and its postgres and connectors extras') from pyproject.toml.
FROM ${BASE} AS requirements
COPY pyproject.toml deploy/image/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml postgres connectors > /requirements.txt

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# Extra CA certificates of the build machine (a TLS-inspecting proxy): deploy/ca/*.crt, put
# there by the build script only when the machine has some; none by default.
COPY deploy/ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
    && headers="$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")')" \
    && apt-get install -y -qq --no-install-recommends ca-certificates g++ python3-venv $headers \
    && update-ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer of their own: a change to the host's code (or to the
# tool settings in pyproject.toml) rebuilds only the step below, not hnswlib from its sdist
# (no x86-64 wheel) and forty downloads. The layer is keyed by the requirements' text alone,
# so it keeps the releases pip chose when it was built; REFRESHED (`scripts/image --refresh`
# sets it to the time) makes a new one, with the newest releases the requirements allow.
# HNSWLIB_NO_NATIVE: hnswlib's build adds -march=native, code for the build machine's CPU alone
# (AVX-512 on one that has it): the image would die of SIGILL on the first vector search on any
# other x86-64 machine. Without it the index is built for the architecture's baseline.
COPY --from=requirements /requirements.txt /tmp/requirements.txt
ARG REFRESHED=
RUN echo "dependencies: ${REFRESHED:-first build}" && python3 -m venv /opt/omnicore \
    && HNSWLIB_NO_NATIVE=1 /opt/omnicore/bin/pip install -q --no-compile -r /tmp/requirements.txt
COPY pyproject.toml setup.py README.md ./
COPY host/ host/
COPY sdk/ sdk/
COPY web/ web/
# pip check: the layer above holds everything this omnicore requires, or the build fails.
RUN /opt/omnicore/bin/pip install -q --no-compile --no-deps ".[postgres,connectors]" \
    && /opt/omnicore/bin/pip check \
    && OMNICORE_CALLPATH=native PYTHONDONTWRITEBYTECODE=1 /opt/omnicore/bin/python -c "import omnicore.sandbox.fastcall, omnicore.sandbox.logring" \
    && find /opt/omnicore -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PATH=/opt/omnicore/bin:$PATH \
    OMNICORE_ENVIRONMENT=container OMNICORE_LOG__FORMAT=json \
    OMNICORE_DATA_DIR=/var/lib/omnicore \
    OMNICORE_CONSOLE__HOST=0.0.0.0 OMNICORE_CONSOLE__PORT=8470
COPY --from=build /opt/omnicore /opt/omnicore
COPY deploy/image/omnicore.yaml /app/omnicore.yaml
RUN groupadd --system --gid 10001 omnicore \
    && useradd --system --uid 10001 --gid omnicore --home-dir /app --shell /usr/sbin/nologin omnicore \
    && mkdir -p /app/plugins /var/lib/omnicore \
    && chown -R omnicore:omnicore /app /var/lib/omnicore && chmod 0700 /var/lib/omnicore
USER 10001:10001
WORKDIR /app
EXPOSE 8470
VOLUME ["/var/lib/omnicore"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8470/readyz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["omnicore", "run", "/app"]

FROM runtime AS demo
COPY --chown=omnicore:omnicore plugins/demo.yaml /app/omnicore.yaml
# The plugins the demo's config names, each NAME.wasm with its sidecar or manifest, taken from
# PLUGINS (a folder in the build context) through a bind mount: whatever else lies there (a
# scratch build) never reaches a layer. A plugin the config names and PLUGINS lacks fails the
# build. RUN --mount needs BuildKit (Docker 23 and later) or buildah; buildah reuses this step
# from its cache whatever the mounted files hold, so scripts/image passes PLUGINS_DIGEST (their
# content's digest), which is part of the step's cache key.
ARG PLUGINS=build/plugins
ARG PLUGINS_DIGEST=
RUN --mount=type=bind,source=${PLUGINS},target=/tmp/built \
    echo "plugins ${PLUGINS_DIGEST:-from ${PLUGINS}}" \
    && for name in $(python3 -c 'import yaml; print(*yaml.safe_load(open("omnicore.yaml"))["plugins"])'); do \
         [ -f "/tmp/built/$name.wasm" ] || { echo "no $name.wasm in ${PLUGINS} (plugins/demo.yaml names it): scripts/dev setup builds it" >&2; exit 1; }; \
         for file in "/tmp/built/$name".wasm "/tmp/built/$name".toml "/tmp/built/$name".yaml "/tmp/built/$name".yml "/tmp/built/$name".json; do \
           [ ! -f "$file" ] || cp "$file" plugins/; \
         done; \
       done
# The example plugins compiled, baked into the image: /opt/omnicore/modules, root's and
# read-only, outside the module cache, with the key this build made for them beside it
# (modules.key, in this layer alone: it authenticates that folder's entries and nothing else,
# the image being what the operator built). A host tries them first (sandbox.baked_dir), so a
# new pod (an empty volume, no key given) starts warm; its module cache (/app/cache, a volume
# a cluster may share) keeps the hosts' own key (OMNICORE_MODULE_KEY, else the secret store's:
# specs/security.md "Compiled code"), and a baked entry is never copied there.
# MODULES (scripts/image --modules): a folder in PLUGINS holding what another module cache
# (a CI's, the tests') compiled with the same settings; precompile takes those entries,
# checked with the key they were made with (the build secret omnicore_module_key,
# scripts/image --module-key, never in a layer; MODULE_KEY_ID, its public id, is in the step's
# cache key), instead of compiling them again (a minute of CPU for the examples).
ARG MODULES=
ARG MODULE_KEY_ID=
USER 0:0
RUN --mount=type=bind,source=${PLUGINS},target=/tmp/built \
    --mount=type=secret,id=omnicore_module_key \
    echo "modules from ${MODULES:-nowhere}, checked with key ${MODULE_KEY_ID:-none}" \
    && python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())' \
       > /opt/omnicore/modules.key \
    && OMNICORE_MODULE_KEY="$(cat /opt/omnicore/modules.key)" \
       OMNICORE_SANDBOX__CACHE_DIR=/opt/omnicore/modules OMNICORE_DATA_DIR=/tmp/precompile \
       omnicore precompile /app ${MODULES:+--from "/tmp/built/$MODULES"} \
         ${MODULES:+--from-key /run/secrets/omnicore_module_key} \
    && rm -rf /tmp/precompile \
    && chmod 0755 /opt/omnicore/modules && chmod 0644 /opt/omnicore/modules/* /opt/omnicore/modules.key \
    && install -d -m 0700 -o 10001 -g 10001 /app/cache
USER 10001:10001
ENV OMNICORE_SANDBOX__CACHE_DIR=/app/cache OMNICORE_SANDBOX__BAKED_DIR=/opt/omnicore/modules
