#!/bin/sh
# client_reconfig_script: points HAProxy at the new Redis master after a failover.
#
# Called as: <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# It rewrites the line `<master-name> <to-ip>:<to-port>` in an HAProxy map file (atomically:
# a temp file in the same directory, then rename), and, if HAPROXY_SOCKET is set, tells a
# running HAProxy through its runtime API so no reload is needed.
#
# Scripts run with an empty environment, so settings come from a file beside this script,
# `haproxy-map-reconfig.conf` (shell syntax), e.g.:
#   MAP_FILE=/etc/haproxy/redis-masters.map
#   HAPROXY_SOCKET=/run/haproxy/admin.sock
#   LOG_FILE=/var/log/raft-sentinel/reconfig.log
#
# Every node runs it once per switch (role `leader` on the node that ran the failover,
# `observer` elsewhere); the map file ends up the same on each, so this is safe when each
# node manages its own HAProxy, or when they share one.
# Exit 1 asks for a retry (later, with backoff); any other non-zero exit is final.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

MAP_FILE=/etc/haproxy/redis-masters.map
HAPROXY_SOCKET=
LOG_FILE=
conf="$(dirname "$0")/haproxy-map-reconfig.conf"
# shellcheck source=/dev/null
[ -r "$conf" ] && . "$conf"

if [ "$#" -ne 7 ]; then
    echo "usage: $0 <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>" >&2
    exit 2
fi
name=$1 role=$2 state=$3 to_ip=$6 to_port=$7
case "$to_ip" in *:*) to="[$to_ip]:$to_port" ;; *) to="$to_ip:$to_port" ;; esac

dir=$(dirname "$MAP_FILE")
tmp=$(mktemp "$dir/.map.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
if [ -f "$MAP_FILE" ]; then
    # Every other master's line is kept.
    awk -v n="$name" '$1 != n' "$MAP_FILE" >"$tmp" || exit 1
fi
printf '%s %s\n' "$name" "$to" >>"$tmp"
chmod 0644 "$tmp"
sync "$tmp" 2>/dev/null || true
mv -f "$tmp" "$MAP_FILE" || exit 1
trap - EXIT

if [ -n "$HAPROXY_SOCKET" ]; then
    # HAProxy 2.x runtime API; a failure here is retried (the file is already right).
    printf 'set map %s %s %s\n' "$MAP_FILE" "$name" "$to" | socat stdio "UNIX-CONNECT:$HAPROXY_SOCKET" >/dev/null || exit 1
fi
if [ -n "$LOG_FILE" ]; then
    printf '%s %s %s %s %s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$role" "$state" "$4" "$5" "$to_ip" "$to_port" >>"$LOG_FILE"
fi
exit 0
