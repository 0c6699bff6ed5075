# callsec-ari -- the application image (`callsec run`).
#
#   docker build -t callsec .
#   MOUNTS="-v callsec-data:/var/lib/callsec -v ./callsec.conf:/etc/callsec/callsec.conf:ro"
#   docker run --rm $MOUNTS callsec keys init            # once: creates and records the keys
#   docker run --network host $MOUNTS callsec
#
# Keys are created only by `callsec keys init` (idempotent; it refuses a database that expects
# other keys); `run` refuses a missing or different key ring with exit 2.
# Configuration: /etc/callsec/callsec.conf (container defaults from docker/callsec.conf; mount
# your own over it) and environment variables CALLSEC_<SECTION>__<KEY>, which win over the
# file; secrets as files: CALLSEC_<SECTION>__<KEY>_FILE=/run/secrets/... . State (SQLite
# database, key ring, development outbox) lives in the volume /var/lib/callsec.
# docker-compose.yml runs it next to Asterisk and PostgreSQL.
#
# Kept correct by reading: no Docker engine runs on the project's build machines.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but the state directory.
RUN groupadd --system --gid 10001 callsec \
    && useradd --system --uid 10001 --gid callsec --home-dir /var/lib/callsec \
       --shell /usr/sbin/nologin callsec \
    && mkdir -p /var/lib/callsec /etc/callsec \
    && chown callsec:callsec /var/lib/callsec \
    && chmod 0700 /var/lib/callsec

WORKDIR /opt/callsec
COPY setup.cfg pyproject.toml README.md ./
COPY callsec_ari ./callsec_ari
RUN pip install . && rm -rf /opt/callsec/build

COPY docker/callsec.conf /etc/callsec/callsec.conf
COPY config/callsec.conf.sample /etc/callsec/callsec.conf.sample

USER callsec
WORKDIR /var/lib/callsec
VOLUME ["/var/lib/callsec"]

# 8080: HTTP API, agent desk, /healthz, /metrics; 4573: FastAGI (reach it from Asterisk only).
EXPOSE 8080 4573

# /healthz answers 200 when the database and every ARI connection are up, 503 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["callsec", "-c", "/etc/callsec/callsec.conf"]
CMD ["run"]
