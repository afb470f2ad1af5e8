#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests and measurements (root only):
#   scripts/cluster/slurm-local.sh install      # apt-get install slurm-wlm munge if missing
#   scripts/cluster/slurm-local.sh start DIR    # munged, slurmctld, slurmd; config in DIR
#   export SLURM_CONF=DIR/slurm.conf            # then sbatch, squeue, scancel, sinfo use it
#   scripts/cluster/slurm-local.sh stop DIR     # stops the three daemons by the pids start saved
# Everything (config, munge key and socket, state, spool, logs) lives in DIR; nothing in /etc is
# changed. Ports: FLARE_SLURM_PORT and FLARE_SLURM_PORT+1 [default 16817, 16818].
# Settings follow what a single machine needs: SlurmUser=root, proctrack/linuxproc, task/none,
# cons_tres by CPU (one task per CPU), no accounting; the node is `slurmd -C`'s own description.
set -euo pipefail

die() { echo "slurm-local.sh: $*" >&2; exit 1; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and this is not root (apt-get needs root)"
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (no network to Debian?)"
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || die "apt-get install slurm-wlm munge failed"
}

start() {
  local dir="$1"
  [ "$(id -u)" = 0 ] || die "start needs root (SlurmUser=root)"
  for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || die "$tool not found (run: $0 install)"
  done
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/slurmctld.pid" ] || die "$dir already holds a cluster (stop it first)"
  mkdir -p "$dir/munge-key" "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 700 "$dir/munge-key"
  chmod 755 "$dir" "$dir/munge"
  head -c 1024 /dev/urandom > "$dir/munge-key/munge.key"
  chmod 400 "$dir/munge-key/munge.key"
  local port="${FLARE_SLURM_PORT:-16817}"
  local node host
  node="$(slurmd -C | head -n 1)"
  host="$(echo "$node" | sed -n 's/^NodeName=\([^ ]*\).*/\1/p')"
  [ -n "$host" ] || die "slurmd -C did not describe this node: $node"
  cat > "$dir/slurm.conf" <<CONF
ClusterName=flarelocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/state/slurmctld.pid
SlurmdPidFile=$dir/spool/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"
  # Each daemon in the foreground as our child: its pid is the one we kill at stop.
  munged -F --force --key-file="$dir/munge-key/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/seed" \
    --log-file="$dir/log/munged.log" >"$dir/log/munged.out" 2>&1 &
  echo $! > "$dir/munged.pid"
  for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
  [ -S "$dir/munge/munge.socket" ] || { stop "$dir"; die "munged did not start: $(tail -n 3 "$dir/log/munged.out")"; }
  slurmctld -D -i >"$dir/log/slurmctld.out" 2>&1 &
  echo $! > "$dir/slurmctld.pid"
  slurmd -D >"$dir/log/slurmd.out" 2>&1 &
  echo $! > "$dir/slurmd.pid"
  for _ in $(seq 150); do
    if [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; then
      echo "slurm-local.sh: one-node cluster $host up; export SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.2
  done
  stop "$dir"
  die "the node did not come up in 30 s; logs in $dir/log"
}

stop() {
  local dir="$1" pid
  # Jobs still running (a test that failed half-way) end first, while the controller is up.
  if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF="$dir/slurm.conf" scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
      [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for daemon in slurmd slurmctld munged; do
    [ -f "$dir/$daemon.pid" ] || continue
    pid="$(cat "$dir/$daemon.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$daemon.pid"
  done
}

case "${1:-}" in
  install) install ;;
  start) [ $# = 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
