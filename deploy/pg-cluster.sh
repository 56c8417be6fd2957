#!/usr/bin/env bash
# pg-cluster.sh - a private PostgreSQL cluster for tokshift and its tests.
#
#   pg-cluster.sh start    DATADIR [--port N]   initdb if needed, start, create
#                                               database "tokshift", print the
#                                               libpq connection string
#   pg-cluster.sh stop     DATADIR [smart|fast|immediate]   (default: fast)
#   pg-cluster.sh status   DATADIR              exit 0 if running, 3 if not
#   pg-cluster.sh conninfo DATADIR              print the connection string
#
# The cluster listens on 127.0.0.1 only (trust authentication, loopback only),
# on a free port chosen at first start and kept in DATADIR; its Unix socket
# and its log (DATADIR/postgresql.log) live in DATADIR too.  `start` prints
# exactly one line on stdout:
#   host=127.0.0.1 port=N dbname=tokshift user=USER
# and is idempotent: on a running cluster it only prints that line.
#
# Run as root, the server runs as an unprivileged system user (tokshift-pg,
# created if missing; `nobody` if it cannot be), since PostgreSQL refuses
# root; an initialised DATADIR keeps running as the user that owns it.
#
# Environment: TOKSHIFT_PG_BINDIR (folder holding initdb, pg_ctl, postgres),
# TOKSHIFT_PG_USER (the system user to run the server as, when root),
# TOKSHIFT_PG_TIMEOUT (seconds to wait for start/stop, default 60).
set -euo pipefail
umask 022

PROG=pg-cluster.sh
TIMEOUT=${TOKSHIFT_PG_TIMEOUT:-60}
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "$0: TOKSHIFT_PG_TIMEOUT must be a number of seconds, not '$TIMEOUT'" >&2; exit 2; }
DB_NAME=tokshift
CONF_FILE=tokshift.conf          # our settings, included from postgresql.conf
CONNINFO_FILE=tokshift.conninfo  # the line `start` prints

die() {  # die MESSAGE [HINT]
  echo "$PROG: error: $1" >&2
  if [ $# -gt 1 ] && [ -n "$2" ]; then echo "$PROG: hint: $2" >&2; fi
  exit 1
}
note() { echo "$PROG: $*" >&2; }
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

# libpq and the server read PG* variables (PGPORT, PGDATA, PGOPTIONS, ...);
# everything here is explicit, so none of them may change what we do.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)

# ---------------------------------------------------------------- binaries
# The newest installation that has the server programs.  `pg_config --bindir`
# often names the client-only /usr/bin, so look where distributions put the
# server: Debian /usr/lib/postgresql/V/bin, RHEL /usr/pgsql-V/bin, source
# builds /usr/local/pgsql/bin, Homebrew/others on PATH.
has_server_bins() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }
find_bindir() {  # find_bindir [MAJOR_VERSION]
  local want=${1:-} d v cands=()
  if [ -n "${TOKSHIFT_PG_BINDIR:-}" ]; then
    has_server_bins "$TOKSHIFT_PG_BINDIR" || die "TOKSHIFT_PG_BINDIR=$TOKSHIFT_PG_BINDIR lacks initdb, pg_ctl or postgres"
    echo "$TOKSHIFT_PG_BINDIR"; return
  fi
  for d in /usr/lib/postgresql/*/bin /usr/pgsql-*/bin /usr/local/pgsql/bin /opt/homebrew/opt/postgresql*/bin /usr/local/opt/postgresql*/bin; do
    has_server_bins "$d" && cands+=("$d")
  done
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$d" ] && has_server_bins "$d" && cands+=("$d")
  fi
  if command -v initdb >/dev/null 2>&1; then
    d=$(dirname "$(command -v initdb)")
    has_server_bins "$d" && cands+=("$d")
  fi
  [ ${#cands[@]} -gt 0 ] || die "PostgreSQL server programs (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/local/pgsql/bin or PATH" \
    "install them (Debian: apt-get install postgresql; or run deploy/install-deps.sh), or set TOKSHIFT_PG_BINDIR"
  # Tag each with its major version, newest first.
  local best="" bestv=""
  while IFS=$'\t' read -r v d; do
    if [ -n "$want" ]; then
      [ "$v" = "$want" ] && { echo "$d"; return; }
    elif [ -z "$best" ]; then best=$d; bestv=$v
    fi
  done < <(for d in "${cands[@]}"; do
             v=$("$d/pg_ctl" --version 2>/dev/null | awk 'NR == 1 { split($3, a, "."); print a[1] }')
             printf '%s\t%s\n' "${v:-0}" "$d"
           done | sort -t$'\t' -k1,1nr -s)
  if [ -n "$want" ]; then
    die "DATADIR holds a PostgreSQL $want cluster, but PostgreSQL $want's server programs are not installed (found: ${cands[*]})" \
      "install PostgreSQL $want's server, set TOKSHIFT_PG_BINDIR, or use a new DATADIR"
  fi
  : "$bestv"
  echo "$best"
}

# ------------------------------------------------------- the server's user
RUN_USER="" RUN_UID="" RUN_GID=""
choose_user() {
  if [ "$(id -u)" -ne 0 ]; then
    RUN_USER=$(id -un); RUN_UID=$(id -u); RUN_GID=$(id -g); return
  fi
  local u=${TOKSHIFT_PG_USER:-}
  if [ -z "$u" ] && [ -f "$DATADIR/PG_VERSION" ]; then
    # An initialised cluster keeps running as its owner.
    local owner; owner=$(stat -c %U "$DATADIR")
    [ "$owner" != root ] && [ "$owner" != UNKNOWN ] && u=$owner
  fi
  if [ -z "$u" ]; then
    u=tokshift-pg
    if ! id -u "$u" >/dev/null 2>&1; then
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
              --shell /usr/sbin/nologin --comment "tokshift private PostgreSQL" "$u" >/dev/null 2>&1 || true
      # (a concurrent start may have created it meanwhile)
      id -u "$u" >/dev/null 2>&1 || { note "could not create user tokshift-pg; running the server as nobody"; u=nobody; }
    fi
  fi
  id -u "$u" >/dev/null 2>&1 || die "user $u does not exist" "unset TOKSHIFT_PG_USER or create the user"
  RUN_USER=$u; RUN_UID=$(id -u "$u"); RUN_GID=$(id -g "$u")
  [ "$RUN_UID" -ne 0 ] || die "PostgreSQL cannot run as root (TOKSHIFT_PG_USER=$u)" "name an unprivileged user"
}

# as_pg CMD...: run CMD as the server's user, from /, with a clean environment.
as_pg() {
  local envv=(env -i "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C" "LC_ALL=C" "HOME=/" "USER=$RUN_USER" "LOGNAME=$RUN_USER")
  if [ "$(id -u)" -ne 0 ]; then
    (cd / && "${envv[@]}" "$@")
  elif command -v setpriv >/dev/null 2>&1; then
    (cd / && "${envv[@]}" setpriv --reuid="$RUN_UID" --regid="$RUN_GID" --init-groups -- "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && "${envv[@]}" runuser -u "$RUN_USER" -- "$@")
  else
    die "neither setpriv nor runuser is available to drop root privileges" "install util-linux, or run this script as an unprivileged user"
  fi
}

# close_fds: close every descriptor above 2 (in a subshell that then starts
# a daemon).
close_fds() {
  local f n
  for f in /proc/"$BASHPID"/fd/*; do
    n=${f##*/}
    if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
  done
}

# The server's user must be able to reach DATADIR: every folder above it
# needs search (x) permission for that user.
check_parents() {
  local p=$DATADIR parents=()
  while [ "$p" != / ]; do p=$(dirname "$p"); parents=("$p" "${parents[@]}"); done
  for p in "${parents[@]}"; do   # from / down: name the first one that stops it
    if ! as_pg test -x "$p" 2>/dev/null; then
      [ -z "${CREATED:-}" ] || rmdir "$DATADIR" 2>/dev/null || true
      die "the server's user '$RUN_USER' cannot reach $DATADIR: it has no search permission on $p ($(stat -c '%A %U:%G' "$p"))" \
        "give the cluster a folder of its own that it can reach (e.g. DATADIR=\$(mktemp -d), or one under /var/lib/tokshift or /srv), or grant search permission: chmod o+x $p (or run as a non-root user)"
    fi
  done
}
check_reachable() {
  check_parents
  as_pg test -w "$DATADIR" 2>/dev/null || die "the server's user '$RUN_USER' cannot write to $DATADIR" \
    "check its owner and mode: $(stat -c '%A %U:%G' "$DATADIR")"
}

# ------------------------------------------------------------------ ports
# Ports with any socket on them (any state, IPv4 or IPv6), from /proc/net.
used_ports() {
  local f
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    awk 'NR > 1 { split($2, a, ":"); print a[2] }' "$f"
  done | sort -u | while read -r h; do echo $((16#$h)); done
}
pick_port() {
  local used lo hi p i
  used=" $(used_ports | tr '\n' ' ') "
  read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768; hi=60999; }
  for i in $(seq 1 500); do
    p=$((15000 + (RANDOM * 32768 + RANDOM) % 45000))
    [ "$p" -ge "$lo" ] && [ "$p" -le "$hi" ] && continue   # ephemeral: clients use these
    case "$used" in *" $p "*) continue ;; esac
    echo "$p"; return
  done
  die "found no free TCP port" "pass --port N"
}

# ------------------------------------------------------------- settings
stored_port() { [ -f "$DATADIR/$CONF_FILE" ] && sed -n 's/^port = \([0-9][0-9]*\).*/\1/p' "$DATADIR/$CONF_FILE" | tail -1; }
stored_conninfo() { [ -f "$DATADIR/$CONNINFO_FILE" ] && cat "$DATADIR/$CONNINFO_FILE"; }

# write_settings PORT SUPERUSER: our settings file and the connection string.
write_settings() {
  local port=$1 su=$2 sock
  sock="'${DATADIR//\'/\'\'}'"
  # A Unix socket path is limited to 107 bytes (DATADIR/.s.PGSQL.PORT).
  if [ $(( ${#DATADIR} + 15 + ${#port} )) -gt 107 ]; then
    note "DATADIR's path is too long for a Unix socket; the cluster is reachable over TCP only"
    sock="''"
  fi
  as_pg sh -c 'cat > "$1.tmp" && mv -f "$1.tmp" "$1"' sh "$DATADIR/$CONF_FILE" <<EOF
# Written by tokshift's deploy/pg-cluster.sh (rewritten on each start).
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $sock
unix_socket_permissions = 0700
max_connections = 256
log_destination = 'stderr'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  echo "host=127.0.0.1 port=$port dbname=$DB_NAME user=$su" | as_pg sh -c 'cat > "$1.tmp" && mv -f "$1.tmp" "$1"' sh "$DATADIR/$CONNINFO_FILE"
}

new_log() { tail -c +$(($1 + 1)) "$DATADIR/postgresql.log" 2>/dev/null || true; }  # what the log gained after byte $1
# The postmaster's pid when postmaster.pid names a live (not zombie) process.
# A container whose init does not reap leaves a killed postmaster a zombie,
# which pg_ctl and the server itself would take for a running server.
postmaster_pid() { lockfile_pid "$DATADIR/postmaster.pid"; }
lockfile_pid() {  # the pid on FILE's first line, if that process is alive
  local pid st
  pid=$(head -1 "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null) || st=""
  case "$st" in "" | Z | X) return 1 ;; esac
  echo "$pid"
}
is_running() { postmaster_pid >/dev/null && as_pg "$BINDIR/pg_ctl" status -D "$DATADIR" >/dev/null 2>&1; }

log_tail() {
  [ -f "$DATADIR/postgresql.log" ] || return 0
  echo "---- last lines of $DATADIR/postgresql.log ----" >&2
  tail -n 15 "$DATADIR/postgresql.log" >&2
  echo "----" >&2
}

# ------------------------------------------------------------------ start
cmd_start() {
  local want_port=$1 port su conninfo

  if [ -e "$DATADIR" ] && [ ! -d "$DATADIR" ]; then die "$DATADIR exists and is not a directory"; fi
  CREATED=""; [ -e "$DATADIR" ] || CREATED=1
  mkdir -p "$DATADIR"
  DATADIR=$(cd "$DATADIR" && pwd -P)
  # One start/stop at a time per DATADIR (fd 9 must not reach the server).
  exec 9<"$DATADIR"
  flock -w "$TIMEOUT" 9 || die "another pg-cluster.sh holds $DATADIR's lock for more than ${TIMEOUT}s"

  if [ -f "$DATADIR/PG_VERSION" ]; then
    BINDIR=$(find_bindir "$(cat "$DATADIR/PG_VERSION")")
  else
    [ -z "$(ls -A "$DATADIR")" ] || die "$DATADIR is not empty and is not a PostgreSQL data directory" \
      "give an empty or new folder for the cluster"
    BINDIR=$(find_bindir)
  fi
  choose_user

  if [ ! -f "$DATADIR/PG_VERSION" ]; then
    check_parents
    [ "$(id -u)" -ne 0 ] || chown "$RUN_UID:$RUN_GID" "$DATADIR"
    chmod 700 "$DATADIR"
    check_reachable
    su=$(id -un)   # the superuser: the invoking user's name, libpq's default
    note "initialising a PostgreSQL $("$BINDIR/pg_ctl" --version | awk 'NR == 1 { print $3 }') cluster in $DATADIR (server runs as $RUN_USER)"
    # (initdb wants DATADIR empty: its output goes there only afterwards)
    local out
    if ! out=$(as_pg "$BINDIR/initdb" -D "$DATADIR" --username="$su" --encoding=UTF8 --locale=C \
                 --auth-local=trust --auth-host=trust 2>&1 9<&-); then
      echo "$out" | tail -n 15 >&2
      die "initdb failed in $DATADIR" "fix the cause above; $DATADIR must be empty (or absent) for a new cluster"
    fi
    echo "$out" | as_pg sh -c 'cat > "$1"' sh "$DATADIR/initdb.log"
    # Loopback only, trust.  The socket folder is DATADIR (mode 0700).
    as_pg sh -c 'cat > "$1"' sh "$DATADIR/pg_hba.conf" <<'EOF'
# tokshift private cluster: trust, loopback only.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
EOF
    echo "include_if_exists = '$CONF_FILE'" | as_pg sh -c 'cat >> "$1"' sh "$DATADIR/postgresql.conf"
    as_pg touch "$DATADIR/postgresql.log"
    write_settings "${want_port:-$(pick_port)}" "$su"
  else
    check_reachable
  fi
  conninfo=$(stored_conninfo || true)
  [ -n "$conninfo" ] || die "$DATADIR is a PostgreSQL data directory that pg-cluster.sh did not create (no $CONNINFO_FILE)" \
    "use pg_ctl directly for it, or give a new folder (if a first start of pg-cluster.sh was interrupted, empty $DATADIR and start again)"
  su=${conninfo##*user=}
  port=$(stored_port)

  if is_running; then
    if [ -n "$want_port" ] && [ "$want_port" != "$port" ]; then
      die "the cluster in $DATADIR is already running on port $port, not $want_port" "stop it first: $0 stop $DATADIR"
    fi
  else
    if [ -d /proc/self ]; then
      local lf
      for lf in "$DATADIR/postmaster.pid" "$DATADIR"/.s.PGSQL.*.lock; do
        [ -f "$lf" ] && ! lockfile_pid "$lf" >/dev/null || continue
        note "removing $(basename "$lf"), left by a server that is gone"
        rm -f "$lf"
      done
    fi
    if [ -n "$want_port" ] && [ "$want_port" != "$port" ]; then
      write_settings "$want_port" "$su"; port=$want_port
    fi
    local tries=0 logsize
    while :; do
      tries=$((tries + 1))
      logsize=$(stat -c %s "$DATADIR/postgresql.log" 2>/dev/null || echo 0)
      # The server keeps no descriptor of ours (our lock, a caller's pipe).
      if (close_fds; as_pg "$BINDIR/pg_ctl" start -D "$DATADIR" -l "$DATADIR/postgresql.log" -w -t "$TIMEOUT" -s) \
             >> "$DATADIR/postgresql.log" 2>&1 < /dev/null; then
        break
      fi
      # The port chosen for us was taken meanwhile: choose another (the
      # port is ours to change only when the user did not give one).
      if [ -z "$want_port" ] && [ $tries -lt 5 ] && new_log "$logsize" | grep 'could not bind\|could not create any TCP/IP sockets' >/dev/null; then
        port=$(pick_port); note "port taken; retrying on $port"
        write_settings "$port" "$su"
        continue
      fi
      log_tail
      if new_log "$logsize" | grep 'could not bind\|could not create any TCP/IP sockets' >/dev/null; then
        die "the server could not listen on 127.0.0.1:$port (in use?)" "pass another --port, or stop what uses it"
      fi
      die "the server in $DATADIR did not start (log: $DATADIR/postgresql.log)" "see the log lines above"
    done
  fi

  # Accepting connections, and the database exists.
  local i isready=$BINDIR/pg_isready psql=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$su")
  [ -x "$BINDIR/psql" ] || psql[0]=psql
  [ -x "$isready" ] || isready=pg_isready
  for i in $(seq 1 $((TIMEOUT * 10))); do
    if "$isready" -q -h 127.0.0.1 -p "$port" -d postgres -U "$su" 2>/dev/null; then break; fi
    [ "$i" -lt $((TIMEOUT * 10)) ] || { log_tail; die "the server on port $port did not accept connections within ${TIMEOUT}s"; }
    if [ $((i % 10)) -eq 0 ] && ! is_running; then log_tail; die "the server in $DATADIR stopped while starting (log: $DATADIR/postgresql.log)"; fi
    sleep 0.1
  done
  if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 9<&-)" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE $DB_NAME" 9<&- >&2 || die "could not create database $DB_NAME"
  fi
  stored_conninfo
}

# ------------------------------------------------------------------ other
need_cluster() {
  [ -d "$DATADIR" ] || die "$DATADIR does not exist" "create a cluster with: $0 start $DATADIR"
  DATADIR=$(cd "$DATADIR" && pwd -P)
  [ -f "$DATADIR/PG_VERSION" ] || die "$DATADIR is not a PostgreSQL data directory" "create one with: $0 start $DATADIR"
  BINDIR=$(find_bindir "$(cat "$DATADIR/PG_VERSION")")
  choose_user
}

cmd_stop() {
  local mode=$1
  need_cluster
  exec 9<"$DATADIR"
  flock -w "$TIMEOUT" 9 || die "another pg-cluster.sh holds $DATADIR's lock for more than ${TIMEOUT}s"
  if ! is_running; then note "the cluster in $DATADIR is not running"; return 0; fi
  as_pg "$BINDIR/pg_ctl" stop -D "$DATADIR" -m "$mode" -w -t "$TIMEOUT" -s 9<&- >&2 \
    || { log_tail; die "could not stop the server in $DATADIR" "try: $0 stop $DATADIR immediate"; }
}

cmd_status() {
  need_cluster
  if is_running; then
    echo "running (pid $(postmaster_pid)): $(stored_conninfo)"
  else
    echo "not running"; exit 3
  fi
}

cmd_conninfo() {
  need_cluster
  stored_conninfo || die "$DATADIR has no $CONNINFO_FILE: it was not created by pg-cluster.sh"
}

# ------------------------------------------------------------------- main
case "${1:-}" in
  -h|--help|help) usage; exit 0 ;;
  start|stop|status|conninfo) ;;
  "") usage >&2; exit 2 ;;
  *) echo "$PROG: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
CMD=$1; shift
[ $# -ge 1 ] && [ -n "$1" ] || { echo "$PROG: $CMD needs DATADIR" >&2; exit 2; }
DATADIR=$1; shift
case "$DATADIR" in /*) ;; *) DATADIR=$PWD/$DATADIR ;; esac
BINDIR=""

case "$CMD" in
  start)
    PORT=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --port) [ $# -ge 2 ] || { echo "$PROG: --port needs a value" >&2; exit 2; }; PORT=$2; shift 2 ;;
        --port=*) PORT=${1#--port=}; shift ;;
        *) echo "$PROG: start: unknown argument '$1'" >&2; exit 2 ;;
      esac
    done
    if [ -n "$PORT" ]; then
      [[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || { echo "$PROG: --port must be 1..65535, not '$PORT'" >&2; exit 2; }
    fi
    cmd_start "$PORT" ;;
  stop)
    MODE=${1:-fast}
    case "$MODE" in smart|fast|immediate) ;; *) echo "$PROG: stop mode must be smart, fast or immediate, not '$MODE'" >&2; exit 2 ;; esac
    [ $# -le 1 ] || { echo "$PROG: stop: too many arguments" >&2; exit 2; }
    cmd_stop "$MODE" ;;
  status)   [ $# -eq 0 ] || { echo "$PROG: status: too many arguments" >&2; exit 2; }; cmd_status ;;
  conninfo) [ $# -eq 0 ] || { echo "$PROG: conninfo: too many arguments" >&2; exit 2; }; cmd_conninfo ;;
esac
