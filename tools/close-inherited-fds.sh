# Sourced by tools/sandbox.sh and tools/pg.sh.
#
# close_inherited_fds: close every descriptor above 2 of the current (sub)shell, before it
# starts a long-lived server. `flock var/sandbox.lock make ...` hands its lock down as fd 3,
# and a server (Asterisk, PostgreSQL) that inherited it would hold the lock, blocking every
# later `flock`, until it stops. Call it in the subshell that starts the server.
close_inherited_fds() {
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
    done
}
