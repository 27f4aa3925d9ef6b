#!/bin/sh
# A real Slurm cluster on loopback for the Slurm integration tests: Debian's slurmctld + slurmd
# (22.05 on bookworm) with munge, three GPU nodes of 8 GPUs each, all state under one directory.
#
#   sh tests/integrations/slurm/ensure_slurm.sh           install when missing, start (idempotent)
#   sh tests/integrations/slurm/ensure_slurm.sh stop      stop what it started
#   sh tests/integrations/slurm/ensure_slurm.sh status    exit 0 when the controller answers
#
# State lives in $TESTBED_SLURM_DIR (default /tmp/testbed-slurm): munge key and socket, slurm.conf,
# gres.conf, spool, logs, pid files. Clients use it with SLURM_CONF=$TESTBED_SLURM_DIR/slurm.conf.
# The three nodes (tb-gpu01..03) are three slurmd processes on 127.0.0.1 with their own ports
# (`slurmd -N <name>`); their GPUs are count-only gres (no device files: there are no GPUs here).
# Where Slurm cannot be installed (not root, no apt-get), it says so in one loud line and exits 0:
# the tests then skip, except under CI where they fail (tests/integrations/slurm/conftest.py).
set -u
DIR="${TESTBED_SLURM_DIR:-/tmp/testbed-slurm}"
CTLD_PORT="${TESTBED_SLURM_PORT:-16817}"
NODES="tb-gpu01 tb-gpu02 tb-gpu03"
CONF="$DIR/slurm.conf"
SBIN=/usr/sbin
export SLURM_CONF="$CONF"

say() { echo "slurm: $*"; }

controller_up() {
  [ -f "$CONF" ] && command -v scontrol >/dev/null 2>&1 && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"
}

stop_pidfile() {
  if [ -f "$1" ]; then
    pid=$(cat "$1" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    rm -f "$1"
  fi
}

case "${1:-start}" in
  stop)
    for node in $NODES; do stop_pidfile "$DIR/run/slurmd.$node.pid"; done
    stop_pidfile "$DIR/run/slurmctld.pid"
    stop_pidfile "$DIR/run/munged.pid"
    exit 0
    ;;
  stop-controller)
    # The tests' "Slurm is down" case: only the controller, so scontrol fails to connect.
    stop_pidfile "$DIR/run/slurmctld.pid"
    exit 0
    ;;
  status)
    controller_up
    exit $?
    ;;
  start) ;;
  *)
    echo "usage: $0 [start|stop|stop-controller|status]" >&2
    exit 2
    ;;
esac

if ! [ -x $SBIN/slurmctld ] || ! [ -x $SBIN/slurmd ] || ! command -v scontrol >/dev/null 2>&1 \
  || ! [ -x $SBIN/munged ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's slurmctld, slurmd, slurm-client and munge"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null 2>&1) \
      || { echo "!!! slurm: could not install slurmctld slurmd slurm-client munge: Slurm tests will be skipped (or fail under CI) !!!"; exit 0; }
  else
    echo "!!! slurm: slurmctld/slurmd/munge are not installed and cannot be (needs root and apt-get): Slurm tests will be skipped (or fail under CI) !!!"
    exit 0
  fi
fi
if [ "$(id -u)" != "0" ]; then
  echo "!!! slurm: slurmd must run as root (it starts job steps as their users): Slurm tests will be skipped (or fail under CI) !!!"
  exit 0
fi

mkdir -p "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool" "$DIR/munge"
chmod 700 "$DIR/munge"

# munge: our own key, socket and daemon (the system's munged, if any, is left alone).
if ! [ -s "$DIR/munge/munge.key" ]; then
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
  chmod 400 "$DIR/munge/munge.key"
fi
MUNGE_SOCKET="$DIR/munge/munge.socket"
munge_up() { [ -S "$MUNGE_SOCKET" ] && munge -n --socket="$MUNGE_SOCKET" 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; }
if ! munge_up; then
  stop_pidfile "$DIR/run/munged.pid"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  $SBIN/munged --force --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" \
    || { echo "!!! slurm: munged did not start (see $DIR/log/munged.log) !!!"; exit 0; }
fi

HOST=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)  # `hostname` is not in every image
PORT=$((CTLD_PORT + 1))
{
  cat <<EOF
# Written by tests/integrations/slurm/ensure_slurm.sh: a loopback test cluster.
ClusterName=testbed
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Clients give up on an unreachable controller after ~MessageTimeout seconds (default 10).
MessageTimeout=3
EOF
  for node in $NODES; do
    echo "NodeName=$node NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$PORT CPUs=16 RealMemory=1000 Gres=gpu:8 State=UNKNOWN"
    PORT=$((PORT + 1))
  done
  echo "PartitionName=gpu Nodes=$(echo $NODES | tr ' ' ',') Default=YES MaxTime=INFINITE State=UP"
} >"$CONF.new"
# There are no GPUs here: slurmd drops a GPU gres without File= ("Removing file-less GPU"), so
# each GPU is a plain file standing in for /dev/nvidiaN (TaskPlugin=task/none never opens it).
mkdir -p "$DIR/dev"
for i in 0 1 2 3 4 5 6 7; do [ -e "$DIR/dev/nvidia$i" ] || : >"$DIR/dev/nvidia$i"; done
{
  echo "AutoDetect=off"
  for node in $NODES; do echo "NodeName=$node Name=gpu File=$DIR/dev/nvidia[0-7]"; done
} >"$DIR/gres.conf.new"
if ! cmp -s "$DIR/gres.conf.new" "$DIR/gres.conf"; then
  mv "$DIR/gres.conf.new" "$DIR/gres.conf"
  gres_changed=1
else
  rm -f "$DIR/gres.conf.new"
  gres_changed=0
fi
changed=$gres_changed
if ! cmp -s "$CONF.new" "$CONF"; then
  mv "$CONF.new" "$CONF"
  changed=1
else
  rm -f "$CONF.new"
fi

if [ "$changed" = 1 ] && controller_up; then
  say "configuration changed: restarting"
  sh "$0" stop
  rm -rf "$DIR/state" && mkdir -p "$DIR/state"
  sh "$0" start
  exit $?
fi

if ! controller_up; then
  stop_pidfile "$DIR/run/slurmctld.pid"
  # -i: ignore state that no longer matches the configuration (a test cluster, nothing to keep).
  $SBIN/slurmctld -i -f "$CONF" \
    || { echo "!!! slurm: slurmctld did not start (see $DIR/log/slurmctld.log) !!!"; exit 0; }
fi
for node in $NODES; do
  pidfile="$DIR/run/slurmd.$node.pid"
  if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
    mkdir -p "$DIR/spool/$node"
    $SBIN/slurmd -N "$node" -f "$CONF" \
      || echo "!!! slurm: slurmd $node did not start (see $DIR/log/slurmd.$node.log) !!!"
  fi
done

i=0
until controller_up; do
  i=$((i + 1))
  if [ $i -ge 50 ]; then
    echo "!!! slurm: the controller does not answer (see $DIR/log/slurmctld.log) !!!"
    exit 0
  fi
  sleep 0.2
done
i=0
# Ready: every node registered and usable (short states idle, mix, alloc, resv, maint — not
# down, drain, inval, unk, nor "*" = not responding).
ready() {
  sinfo -h -N -p gpu -o '%N %t' 2>/dev/null | sort -u \
    | awk '$2 ~ /^(idle|mix|alloc|resv|maint|plnd)$/ { n++ } END { exit !(n >= 3) }'
}
until ready; do
  i=$((i + 1))
  if [ $i -ge 50 ]; then
    echo "!!! slurm: the nodes did not come up (see $DIR/log/slurmd.*.log): $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ') !!!"
    exit 0
  fi
  sleep 0.2
done
exit 0
