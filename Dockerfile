# callsec-ari -- the application image (`callsec run`), on Debian 12 (bookworm) and its Python 3.11.
#
# Build (the base is a build argument; the default is Debian's image pinned by digest):
#   podman build -t callsec .                  (or docker build; CI: tools/container-check.sh
#                                               builds on a local debootstrap image,
#                                               --build-arg BASE=localhost/base:bookworm)
# First start, once per new state volume and database: create the schema and the keys
#   MOUNTS="-v callsec-data:/var/lib/callsec -v ./callsec.conf:/etc/callsec/callsec.conf:ro"
#   podman run --rm $MOUNTS callsec db upgrade
#   podman run --rm $MOUNTS callsec keys init
# Run:
#   podman run -d --init --network host $MOUNTS callsec
#
# Keys are created only by `callsec keys init` (idempotent; it refuses a database that expects
# other keys); `run` refuses a missing or different key ring with exit 2, so a lost volume never
# silently gets new keys.
# Configuration: /etc/callsec/callsec.conf (container defaults from docker/callsec.conf; mount
# your own over it) and environment variables CALLSEC_<SECTION>__<KEY>, which win over the
# file; secrets as files: CALLSEC_<SECTION>__<KEY>_FILE=/run/secrets/... . State (SQLite
# database, key ring, development outbox) lives in the volume /var/lib/callsec.
# docker-compose.yml runs it next to Asterisk and PostgreSQL.
#
# Pinned: the base image (by digest), the Debian release (bookworm) and its Python packages, and
# every Python package installed (constraints.txt, pip -c).

ARG BASE=debian:bookworm-20250520-slim@sha256:90522eeb7e5923ee2b871c639059537b30521272f10ca86fdbbbb2b75a8c40cd

# Stage 1: the wheel, as `python -m build` makes it: setup.py's build hook converts the master
# prompts with sox (and the G722 wheel) into callsec_ari/data/. Only the wheel leaves this stage.
FROM ${BASE} AS wheel

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3=3.11.2-1+b1 \
       python3-venv=3.11.2-1+b1 \
       sox=14.4.2+git20190427-3.5 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY constraints.txt setup.py setup.cfg pyproject.toml MANIFEST.in README.md LICENSE ./
COPY callsec_ari ./callsec_ari
COPY sounds ./sounds
COPY dialplan ./dialplan
COPY config ./config
# PIP_CONSTRAINT pins the isolated build environment too (setuptools, wheel, G722).
RUN python3 -m venv /opt/build \
    && PIP_CONSTRAINT=/src/constraints.txt \
       /opt/build/bin/pip wheel --no-deps -c constraints.txt -w /wheels .

# Stage 2: the image.
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8 \
    PATH=/opt/callsec/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Python 3.11 from Debian bookworm, pinned (these versions stay for bookworm's whole life; what
# they depend on follows bookworm's security updates). ca-certificates (HTTPS to SMS and e-mail
# backends) is deliberately not pinned: a removed CA is a security update, and bookworm's point
# releases replace the version. tests/unit/test_docker_files.py keeps every other package pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3=3.11.2-1+b1 \
       python3-venv=3.11.2-1+b1 \
       ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns nothing but the state directory.
RUN groupadd --system --gid 10001 callsec \
    && useradd --system --uid 10001 --gid callsec --home-dir /var/lib/callsec \
       --shell /usr/sbin/nologin callsec \
    && mkdir -p /var/lib/callsec /etc/callsec \
    && chown callsec:callsec /var/lib/callsec \
    && chmod 0700 /var/lib/callsec

WORKDIR /opt/callsec
COPY constraints.txt ./
COPY --from=wheel /wheels /opt/callsec/wheels
RUN python3 -m venv /opt/callsec/venv \
    && pip install -c constraints.txt /opt/callsec/wheels/*.whl \
    && rm -rf /opt/callsec/wheels

COPY docker/callsec.conf /etc/callsec/callsec.conf
COPY config/callsec.conf.sample /etc/callsec/callsec.conf.sample

USER 10001:10001
WORKDIR /var/lib/callsec
VOLUME ["/var/lib/callsec"]

# 8080: HTTP API, agent desk, /healthz, /metrics; 4573: FastAGI (reach it from Asterisk only).
EXPOSE 8080 4573

# /healthz answers 200 when the database and every ARI connection are up, 503 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["callsec", "-c", "/etc/callsec/callsec.conf"]
CMD ["run"]
