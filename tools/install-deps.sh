#!/usr/bin/env bash
# Installs the Debian packages callsec's tests, demo and sandbox need, once.
# Idempotent: only missing packages are installed; `apt-get update` runs only when needed.
# Packages: debootstrap (the Asterisk sandbox root), espeak-ng + sox (prompt generation),
# postgresql (the PostgreSQL tier of the storage tests), chromium + chromium-driver (desk e2e),
# softhsm2 (the PKCS#11 token the `[crypto] backend = pkcs11` tests run against),
# systemd (`systemd-analyze verify` of config/systemd/callsec.service; it runs in a container).
set -euo pipefail

PACKAGES=(debootstrap espeak-ng sox postgresql chromium chromium-driver iproute2 procps softhsm2 systemd)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all system packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${missing[*]}; run as root (or install them yourself)" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
