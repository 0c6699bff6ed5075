#!/usr/bin/env bash
# tools/sandbox.sh -- the real-Asterisk sandbox for callsec-ari.
#
#   tools/sandbox.sh up       build (or reuse) the Asterisk root, start A and B, wait for ARI
#   tools/sandbox.sh down     stop both instances, unmount /proc
#   tools/sandbox.sh restart  down + up (e.g. after changing CALLSEC_SANDBOX_DTMF_MODE)
#   tools/sandbox.sh reload   re-render the running instances' configs and apply them without a
#                             restart (dialplan reload, module reload res_ari.so): calls go on
#   tools/sandbox.sh stop a|b stop one instance (`up` starts it again)
#   tools/sandbox.sh clear-logs empty both instances' logs (Asterisk appends; files stay open)
#   tools/sandbox.sh status   show both instances; exit 0 when both answer, 3 otherwise
#   tools/sandbox.sh paths    print KEY=VALUE lines: root, log and spool dirs of A and B
#
# Two Asterisk 22 instances run in one chroot (a debootstrap of Debian sid, cached outside the
# repo): A is the PBX under test, B plays the carrier and the agents' phones. Their configs are
# rendered from config/sandbox/{a,b}/ into $ROOT/srv/callsec/{a,b}/etc; A also gets the product
# dialplan (dialplan/extensions_callsec.conf) unchanged. Everything listens on 127.0.0.1.
#
# Environment (defaults from CONTRACT.md):
#   CALLSEC_ASTERISK_ROOT        /var/cache/callsec/asterisk-root
#   CALLSEC_SANDBOX_A_ARI_PORT   18088     CALLSEC_SANDBOX_B_ARI_PORT  18089
#   CALLSEC_SANDBOX_A_AMI_PORT   15038
#   CALLSEC_SANDBOX_A_SIP_PORT   15060     CALLSEC_SANDBOX_B_SIP_PORT  15070
#   CALLSEC_SANDBOX_A_RTP        20000-20999   CALLSEC_SANDBOX_B_RTP  21000-21999
#                                (talk-through captures take two RTP ports each on A)
#   CALLSEC_SANDBOX_AGI_PORT     4573 (FastAGI target of the numbers 3000/4000)
#   CALLSEC_SANDBOX_DTMF_MODE    rfc4733 (A's trunk and agents)
#   CALLSEC_SANDBOX_B_DTMF_MODE  same as CALLSEC_SANDBOX_DTMF_MODE (B's trunk)
#   CALLSEC_SANDBOX_TRUNK_DTMF_MODE  A's trunk `pstn`: `auto` when CALLSEC_SANDBOX_DTMF_MODE is
#                                rfc4733 (what `callsec doctor` recommends; same digits), else
#                                CALLSEC_SANDBOX_DTMF_MODE
#   CALLSEC_SANDBOX_PLANT_LEAKS  1: append config/sandbox/plant/a/*.conf to A's config (digit
#                                leaks `callsec doctor` must report) and leave var/sandbox alone.
#                                Use it only with a separate root and other ports (tests do).
#   CALLSEC_SANDBOX_LINK_REPO    1 (0 with PLANT_LEAKS): point the repo's var/sandbox here
#   CALLSEC_ASTERISK_ROOT_SEED   a working root to copy (without its instances) when
#                                CALLSEC_ASTERISK_ROOT has none, instead of running debootstrap
#   CALLSEC_SANDBOX_START_TIMEOUT 60 (seconds to wait for both ARI endpoints)
#   CALLSEC_DEBIAN_MIRROR        read from /etc/apt/sources.list.d/debian.sources when unset
# `up` re-renders the configs; when a running instance's rendered config differs, it is
# restarted, so `CALLSEC_SANDBOX_DTMF_MODE=inband tools/sandbox.sh up` switches modes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/close-inherited-fds.sh
source "$REPO/tools/close-inherited-fds.sh"
ROOT=${CALLSEC_ASTERISK_ROOT:-/var/cache/callsec/asterisk-root}
ROOT=${ROOT%/}
SRV_IN=/srv/callsec              # the same directory, seen from inside the chroot
SRV=$ROOT$SRV_IN
LOCK=$ROOT.lock

A_ARI_PORT=${CALLSEC_SANDBOX_A_ARI_PORT:-18088}
A_AMI_PORT=${CALLSEC_SANDBOX_A_AMI_PORT:-15038}
A_SIP_PORT=${CALLSEC_SANDBOX_A_SIP_PORT:-15060}
B_ARI_PORT=${CALLSEC_SANDBOX_B_ARI_PORT:-18089}
B_SIP_PORT=${CALLSEC_SANDBOX_B_SIP_PORT:-15070}
A_RTP=${CALLSEC_SANDBOX_A_RTP:-20000-20999}
B_RTP=${CALLSEC_SANDBOX_B_RTP:-21000-21999}
AGI_PORT=${CALLSEC_SANDBOX_AGI_PORT:-4573}
DTMF_MODE=${CALLSEC_SANDBOX_DTMF_MODE:-rfc4733}
B_DTMF_MODE=${CALLSEC_SANDBOX_B_DTMF_MODE:-$DTMF_MODE}
if [ "$DTMF_MODE" = rfc4733 ]; then TRUNK_DTMF_DEFAULT=auto; else TRUNK_DTMF_DEFAULT=$DTMF_MODE; fi
TRUNK_DTMF_MODE=${CALLSEC_SANDBOX_TRUNK_DTMF_MODE:-$TRUNK_DTMF_DEFAULT}
PLANT_LEAKS=${CALLSEC_SANDBOX_PLANT_LEAKS:-0}
if [ "$PLANT_LEAKS" = 1 ]; then LINK_DEFAULT=0; else LINK_DEFAULT=1; fi
LINK_REPO=${CALLSEC_SANDBOX_LINK_REPO:-$LINK_DEFAULT}
ROOT_SEED=${CALLSEC_ASTERISK_ROOT_SEED:-}
ROOT_SEED=${ROOT_SEED%/}
START_TIMEOUT=${CALLSEC_SANDBOX_START_TIMEOUT:-60}

# Copied unchanged from the root's stock /etc/asterisk into each instance.
STOCK_CONFS="pjproject.conf features.conf acl.conf udptl.conf indications.conf cdr.conf cel.conf
ccss.conf musiconhold.conf"

say() { echo "sandbox: $*"; }
die() { echo "sandbox: error: $*" >&2; exit 1; }

ari_user() { if [ "$1" = a ]; then echo callsec:callsec; else echo carrier:carrier; fi; }
ari_port() { if [ "$1" = a ]; then echo "$A_ARI_PORT"; else echo "$B_ARI_PORT"; fi; }
conf_in() { echo "$SRV_IN/$1/etc/asterisk.conf"; }

validate_env() {
    local p
    for p in "$A_ARI_PORT" "$A_AMI_PORT" "$A_SIP_PORT" "$B_ARI_PORT" "$B_SIP_PORT" "$AGI_PORT"; do
        if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "invalid port '$p'"; fi
    done
    for p in "$A_RTP" "$B_RTP"; do
        [[ $p =~ ^[0-9]+-[0-9]+$ ]] || die "invalid RTP range '$p' (want START-END)"
    done
    for p in "$DTMF_MODE" "$B_DTMF_MODE" "$TRUNK_DTMF_MODE"; do
        case $p in rfc4733 | inband | info | auto | auto_info) ;;
        *) die "invalid DTMF mode '$p' (rfc4733, inband, info, auto, auto_info)" ;;
        esac
    done
    case $PLANT_LEAKS in 0 | 1) ;; *) die "CALLSEC_SANDBOX_PLANT_LEAKS must be 0 or 1" ;; esac
}

require_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (chroot and mount need it); try: sudo $0 $*"; }

root_ok() { [ -x "$ROOT/usr/sbin/asterisk" ] && chroot "$ROOT" asterisk -V >/dev/null 2>&1; }

debian_mirror() {
    if [ -n "${CALLSEC_DEBIAN_MIRROR:-}" ]; then echo "$CALLSEC_DEBIAN_MIRROR"; return; fi
    local m=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    [ -n "$m" ] || die "cannot read a Debian mirror from /etc/apt/sources.list.d/debian.sources; set CALLSEC_DEBIAN_MIRROR"
    echo "$m"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return
    say "installing debootstrap"
    if ! apt-get install -y debootstrap >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        apt-get install -y debootstrap >/dev/null 2>&1 ||
            die "debootstrap is missing and 'apt-get install -y debootstrap' failed"
    fi
}

# Copy a working seed root (without its instances under srv/callsec): seconds instead of a
# debootstrap, for a second sandbox on other ports (e.g. the doctor's planted-leak instance).
clone_root() {
    local tmp=$ROOT.clone.$$
    say "copying the Asterisk root from $ROOT_SEED"
    mkdir -p "$tmp"
    tar -C "$ROOT_SEED" --one-file-system --exclude=./srv/callsec --exclude=./proc/* -cf - . |
        tar -C "$tmp" -xf - || { rm -rf --one-file-system "$tmp"; die "copying $ROOT_SEED failed"; }
    mv "$tmp" "$ROOT"
    root_ok || die "the copy at $ROOT has no working asterisk"
}

build_root() {
    if [ -n "$ROOT_SEED" ] && [ "$ROOT_SEED" != "$ROOT" ] && [ ! -e "$ROOT" ] &&
        [ -x "$ROOT_SEED/usr/sbin/asterisk" ]; then
        clone_root
        return
    fi
    if [ -e "$ROOT" ]; then
        mountpoint -q "$ROOT/proc" && umount "$ROOT/proc"
        [ -e "$ROOT/etc/debian_version" ] ||
            die "$ROOT exists but is not a Debian root; remove it or set CALLSEC_ASTERISK_ROOT"
        say "$ROOT has no working Asterisk; rebuilding it"
        rm -rf --one-file-system "$ROOT"
    fi
    ensure_debootstrap
    local mirror tmp t0=$SECONDS
    mirror=$(debian_mirror)
    tmp=$ROOT.build.$$
    mkdir -p "$(dirname "$ROOT")"
    say "building the Asterisk root with debootstrap (sid, about a minute)"
    if ! debootstrap --variant=minbase --include=asterisk,asterisk-core-sounds-en \
        sid "$tmp" "$mirror" >"$tmp.log" 2>&1; then
        tail -n 20 "$tmp.log" >&2
        die "debootstrap failed (full log: $tmp.log)"
    fi
    mv "$tmp" "$ROOT"
    rm -f "$tmp.log"
    root_ok || die "the new root at $ROOT has no working asterisk"
    say "root built in $((SECONDS - t0)) s"
}

# The sandbox needs no DNS: with no nameserver line glibc falls back to 127.0.0.1, so no query
# leaves the host. (pjproject's DNS client still binds two ephemeral UDP sockets to the
# wildcard address; Asterisk has no option against it.) localhost resolves via /etc/hosts.
prepare_root() {
    [ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$ROOT/etc/hosts"
    if grep -q '^nameserver' "$ROOT/etc/resolv.conf" 2>/dev/null; then
        rm -f "$ROOT/etc/resolv.conf"
        echo "# callsec sandbox: no DNS, everything is on 127.0.0.1" >"$ROOT/etc/resolv.conf"
    fi
}

mount_proc() { mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"; }
umount_proc() { if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc" || umount -l "$ROOT/proc"; fi; }

# PID of a running instance, or nothing. Trusts a PID only when it is an asterisk process.
instance_pid() {
    local f pid
    for f in "$SRV/$1/sandbox.pid" "$SRV/$1/run/asterisk.pid"; do
        [ -r "$f" ] || continue
        pid=$(tr -dc 0-9 <"$f")
        [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = asterisk ] &&
            { echo "$pid"; return; }
    done
    return 0
}

ari_ok() {
    curl -sf -m 2 -o /dev/null -u "$(ari_user "$1")" \
        "http://127.0.0.1:$(ari_port "$1")/ari/asterisk/info"
}

render_file() { # render_file INSTANCE MODDIR SOURCE  (to stdout)
    sed -e "s|@INST@|$SRV_IN/$1|g" -e "s|@NAME@|$1|g" -e "s|@MODDIR@|$2|g" \
        -e "s|@A_ARI_PORT@|$A_ARI_PORT|g" -e "s|@A_AMI_PORT@|$A_AMI_PORT|g" \
        -e "s|@A_SIP_PORT@|$A_SIP_PORT|g" -e "s|@B_ARI_PORT@|$B_ARI_PORT|g" \
        -e "s|@B_SIP_PORT@|$B_SIP_PORT|g" -e "s|@AGI_PORT@|$AGI_PORT|g" \
        -e "s|@A_RTP_START@|${A_RTP%-*}|g" -e "s|@A_RTP_END@|${A_RTP#*-}|g" \
        -e "s|@B_RTP_START@|${B_RTP%-*}|g" -e "s|@B_RTP_END@|${B_RTP#*-}|g" \
        -e "s|@DTMF_MODE@|$DTMF_MODE|g" -e "s|@B_DTMF_MODE@|$B_DTMF_MODE|g" \
        -e "s|@TRUNK_DTMF_MODE@|$TRUNK_DTMF_MODE|g" "$3"
}

render() { # render INSTANCE DEST_DIR
    local inst=$1 dest=$2 moddir f
    moddir=$(awk -F'=> *' '/^astmoddir/{print $2; exit}' "$ROOT/etc/asterisk/asterisk.conf")
    [ -n "$moddir" ] || die "cannot read astmoddir from $ROOT/etc/asterisk/asterisk.conf"
    rm -rf "$dest"
    mkdir -p "$dest"
    for f in $STOCK_CONFS; do cp "$ROOT/etc/asterisk/$f" "$dest/$f"; done
    for f in "$REPO/config/sandbox/$inst"/*.conf; do
        render_file "$inst" "$moddir" "$f" >"$dest/$(basename "$f")"
    done
    if [ "$PLANT_LEAKS" = 1 ] && [ -d "$REPO/config/sandbox/plant/$inst" ]; then
        for f in "$REPO/config/sandbox/plant/$inst"/*.conf; do
            render_file "$inst" "$moddir" "$f" >>"$dest/$(basename "$f")"
        done
    fi
    if grep -n '@[A-Z_]*@' "$dest"/*.conf >&2; then die "unrendered placeholder in config/sandbox/$inst"; fi
    if [ "$inst" = a ]; then
        [ -r "$REPO/dialplan/extensions_callsec.conf" ] || die "missing dialplan/extensions_callsec.conf"
        cp "$REPO/dialplan/extensions_callsec.conf" "$dest/extensions_callsec.conf"
    fi
}

make_dirs() {
    local d
    for d in etc run lib lib/keys log log/cdr-csv log/cdr-custom cache spool/recording spool/monitor spool/tmp spool/outgoing; do
        mkdir -p "$SRV/$1/$d"
    done
}

# Copy the repo's prompts (sounds/<lang>/callsec/) into the shared data dir of the root.
install_sounds() {
    local dir lang target
    for dir in "$REPO"/sounds/*/callsec; do
        [ -d "$dir" ] || continue
        lang=$(basename "$(dirname "$dir")")
        # sounds/en is an absolute symlink inside the root: resolve it there.
        target=$(chroot "$ROOT" readlink -f "/usr/share/asterisk/sounds/$lang")
        mkdir -p "$ROOT$target"
        rm -rf "${ROOT:?}$target/callsec"
        cp -r "$dir" "$ROOT$target/callsec"
    done
}

check_ports() { # check_ports INSTANCE
    local spec port proto what busy
    if [ "$1" = a ]; then
        set -- "$A_ARI_PORT/tcp/A ARI-HTTP" "$A_AMI_PORT/tcp/A AMI" "$A_SIP_PORT/udp/A PJSIP"
    else
        set -- "$B_ARI_PORT/tcp/B ARI-HTTP" "$B_SIP_PORT/udp/B PJSIP"
    fi
    for spec in "$@"; do
        IFS=/ read -r port proto what <<<"$spec"
        if [ "$proto" = tcp ]; then busy=$(ss -Hltnp "sport = :$port"); else busy=$(ss -Hlunp "sport = :$port"); fi
        [ -z "$busy" ] || die "port $port/$proto ($what) is already in use: $busy"
    done
}

start_instance() {
    local inst=$1 pid
    rm -f "$SRV/$inst/run/asterisk.pid" "$SRV/$inst/sandbox.pid"
    echo "--- start $(date -Is)" >>"$SRV/$inst/log/console.out"
    # Asterisk must not inherit (and keep) the sandbox lock or any other descriptor above 2.
    (
        close_inherited_fds
        exec setsid chroot "$ROOT" /usr/sbin/asterisk -C "$(conf_in "$inst")" -f -n -q \
            </dev/null >>"$SRV/$inst/log/console.out" 2>&1
    ) &
    pid=$!
    # With job control the background job leads its group and setsid forks: prefer the PID
    # Asterisk writes itself.
    for _ in $(seq 50); do
        [ -s "$SRV/$inst/run/asterisk.pid" ] && { pid=$(tr -dc 0-9 <"$SRV/$inst/run/asterisk.pid"); break; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$pid" >"$SRV/$inst/sandbox.pid"
}

start_failed() { # start_failed INSTANCE REASON
    local inst=$1
    {
        echo "sandbox: instance $inst: $2"
        echo "--- tail of $SRV/$inst/log/console.out"
        tail -n 15 "$SRV/$inst/log/console.out" 2>/dev/null || true
        echo "--- tail of $SRV/$inst/log/messages"
        tail -n 12 "$SRV/$inst/log/messages" 2>/dev/null || true
    } >&2
}

stop_instance() {
    local inst=$1 pid
    pid=$(instance_pid "$inst")
    if [ -z "$pid" ]; then rm -f "$SRV/$inst/sandbox.pid"; stop_strays "$inst"; return; fi
    timeout 10 chroot "$ROOT" asterisk -C "$(conf_in "$inst")" -rx 'core stop now' >/dev/null 2>&1 || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$SRV/$inst/sandbox.pid"
    stop_strays "$inst"
    say "instance $inst stopped (pid $pid)"
}

# Asterisk processes of INSTANCE in this root that no pid file names (a start that raced a busy
# machine recorded the wrong pid; an instance started while an old one still held the ports).
stray_pids() {
    local p
    for p in $(pgrep -f "asterisk -C $(conf_in "$1")" || true); do
        [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$(readlink -f "$ROOT")" ] && echo "$p"
    done
    return 0
}

stop_strays() {
    local strays
    strays=$(stray_pids "$1")
    [ -z "$strays" ] && return 0
    say "instance $1: stopping stray Asterisk process(es) $(echo $strays)"
    kill -TERM $strays 2>/dev/null || true
    for _ in $(seq 25); do [ -z "$(stray_pids "$1")" ] && return 0; sleep 0.2; done
    kill -KILL $(stray_pids "$1") 2>/dev/null || true
}

wait_ready() { # wait_ready INSTANCE...
    local deadline=$((SECONDS + START_TIMEOUT)) inst pending pid
    while :; do
        pending=""
        for inst in "$@"; do
            ari_ok "$inst" && continue
            pid=$(instance_pid "$inst")
            if [ -z "$pid" ]; then
                start_failed "$inst" "Asterisk exited during start-up"
                return 1
            fi
            pending="$pending $inst"
        done
        [ -z "$pending" ] && return 0
        if ((SECONDS >= deadline)); then
            for inst in $pending; do
                start_failed "$inst" "ARI on port $(ari_port "$inst") did not answer within $START_TIMEOUT s"
            done
            return 1
        fi
        sleep 0.2
    done
}

link_repo() {
    [ "$LINK_REPO" = 1 ] || return 0  # e.g. a planted-leak sandbox is never "the" sandbox
    mkdir -p "$REPO/var"
    if [ -e "$REPO/var/sandbox" ] && [ ! -L "$REPO/var/sandbox" ]; then
        die "$REPO/var/sandbox exists and is not a symlink"
    fi
    ln -sfn "$SRV" "$REPO/var/sandbox"
}

cmd_up() {
    require_root up
    validate_env
    local t0=$SECONDS inst started="" to_start="" staged
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 300 9 || die "another tools/sandbox.sh holds $LOCK"
    root_ok || build_root
    prepare_root
    for inst in a b; do
        make_dirs "$inst"
        staged=$SRV/$inst/etc.new
        render "$inst" "$staged"
        if [ -n "$(instance_pid "$inst")" ]; then
            if diff -rq "$SRV/$inst/etc" "$staged" >/dev/null 2>&1; then
                rm -rf "$staged"
                continue
            fi
            say "instance $inst: configuration changed, restarting it"
            stop_instance "$inst"
        fi
        rm -rf "${SRV:?}/$inst/etc"
        mv "$staged" "$SRV/$inst/etc"
    done
    install_sounds
    link_repo
    for inst in a b; do [ -n "$(instance_pid "$inst")" ] || to_start="$to_start $inst"; done
    for inst in $to_start; do check_ports "$inst"; done
    mount_proc
    for inst in $to_start; do
        start_instance "$inst"
        started="$started $inst"
    done
    if ! wait_ready a b; then
        for inst in $started; do stop_instance "$inst"; done
        [ -n "$(instance_pid a)$(instance_pid b)" ] || umount_proc
        die "the sandbox did not start"
    fi
    if [ -z "$started" ]; then
        say "already running (A ARI :$A_ARI_PORT, B ARI :$B_ARI_PORT)"
    else
        say "started${started} in $((SECONDS - t0)) s (A ARI :$A_ARI_PORT, AMI :$A_AMI_PORT," \
            "SIP :$A_SIP_PORT; B ARI :$B_ARI_PORT, SIP :$B_SIP_PORT; DTMF $DTMF_MODE/$B_DTMF_MODE)"
    fi
}

cmd_down() {
    require_root down
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 300 9 || die "another tools/sandbox.sh holds $LOCK"
    local inst
    for inst in a b; do stop_instance "$inst"; done
    umount_proc
    say "down"
}

cmd_reload() { # new dialplan / ARI users or apps on the running instances, calls untouched
    require_root reload
    validate_env
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 300 9 || die "another tools/sandbox.sh holds $LOCK"
    local inst staged
    for inst in a b; do
        [ -n "$(instance_pid "$inst")" ] || die "instance $inst is not running (use up)"
        staged=$SRV/$inst/etc.new
        render "$inst" "$staged"
        if diff -rq "$SRV/$inst/etc" "$staged" >/dev/null 2>&1; then rm -rf "$staged"; continue; fi
        cp -a "$staged"/. "$SRV/$inst/etc/"
        rm -rf "$staged"
        for cmd in 'dialplan reload' 'module reload res_ari.so'; do
            timeout 10 chroot "$ROOT" asterisk -C "$(conf_in "$inst")" -rx "$cmd" >/dev/null ||
                die "instance $inst: '$cmd' failed"
        done
        say "instance $inst: configuration reloaded"
    done
}

cmd_status() {
    local inst pid rc=0 ver=""
    if root_ok; then ver=$(chroot "$ROOT" asterisk -V 2>/dev/null); fi
    echo "root: $ROOT (${ver:-no working Asterisk})"
    for inst in a b; do
        pid=$(instance_pid "$inst")
        if [ -z "$pid" ]; then
            echo "$inst: stopped"; rc=3
        elif ari_ok "$inst"; then
            echo "$inst: running, pid $pid, ARI http://127.0.0.1:$(ari_port "$inst")/ari answers"
        else
            echo "$inst: running, pid $pid, ARI http://127.0.0.1:$(ari_port "$inst")/ari NOT answering"; rc=3
        fi
    done
    echo "a: AMI 127.0.0.1:$A_AMI_PORT, PJSIP udp 127.0.0.1:$A_SIP_PORT, RTP $A_RTP, DTMF $(
        awk '/^dtmf_mode/{print $3; exit}' "$SRV/a/etc/pjsip.conf" 2>/dev/null || true)"
    echo "b: PJSIP udp 127.0.0.1:$B_SIP_PORT, RTP $B_RTP"
    return $rc
}

cmd_paths() {
    local inst up
    echo "ROOT=$ROOT"
    echo "SANDBOX=$SRV"
    for inst in a b; do
        up=${inst^^}
        echo "${up}_ETC=$SRV/$inst/etc"
        echo "${up}_LOG=$SRV/$inst/log"
        echo "${up}_SPOOL=$SRV/$inst/spool"
        echo "${up}_RECORDINGS=$SRV/$inst/spool/recording"
    done
    echo "A_MONITOR=$SRV/a/spool/monitor"
    echo "SOUNDS=$ROOT/usr/share/asterisk/sounds"
}

cmd_stop() { # stop one instance (e.g. to test that callsec survives an Asterisk restart)
    require_root stop
    case ${1:-} in a|b) ;; *) die "usage: $0 stop a|b" ;; esac
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 300 9 || die "another tools/sandbox.sh holds $LOCK"
    stop_instance "$1"
}

cmd_clear_logs() { # start a test run with empty Asterisk logs (the leak scan reads them)
    local inst f
    for inst in a b; do
        for f in full messages console.out queue_log; do
            [ -f "$SRV/$inst/log/$f" ] && : > "$SRV/$inst/log/$f"
        done
        rm -f "$SRV/$inst/log/"*.[0-9] 2>/dev/null || true
    done
    say "Asterisk logs cleared"
}

case ${1:-} in
up) cmd_up ;;
clear-logs) cmd_clear_logs ;;
down) cmd_down ;;
stop) cmd_stop "${2:-}" ;;
restart) cmd_down; cmd_up ;;
reload) cmd_reload ;;
status) cmd_status ;;
paths) cmd_paths ;;
*) echo "usage: $0 up|down|restart|stop a|b|clear-logs|status|paths" >&2; exit 2 ;;
esac
