#!/usr/bin/env bash
# A single-node Slurm cluster for the tests, in one directory: `cluster.sh start DIR` writes
# munge's key, slurm.conf and cgroup.conf there, starts munged (as the munge user), slurmctld
# and slurmd on loopback ports, and waits until the node takes jobs; `cluster.sh stop DIR`
# stops them (its jobs first). Needs root (slurmd runs jobs as their users) and Debian's
# slurm-wlm and munge. A watchdog stops the cluster after RUNWATCH_SLURM_LIFETIME seconds
# (default 1800) even if the tests that started it were killed.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}

stop() {
  if [ -s "$dir/slurmctld.pid" ] && [ -f "$dir/slurm.conf" ]; then
    SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
  fi
  # The watchdog leads its own process group (setsid): its sleep goes with it.
  # (Unless this is the watchdog, at the end of its sleep.)
  if [ -s "$dir/watchdog.pid" ] && [ "$(cat "$dir/watchdog.pid")" != "$$" ]; then
    kill -- "-$(cat "$dir/watchdog.pid")" 2>/dev/null || true
  fi
  rm -f "$dir/watchdog.pid"
  for p in slurmd slurmctld munged; do
    if [ -s "$dir/$p.pid" ]; then
      pid=$(cat "$dir/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi

mkdir -p "$dir"
chmod 755 "$dir"
mkdir -p "$dir/munge" "$dir/munge/run" "$dir/state" "$dir/spool" "$dir/jobs"
chown -R munge:munge "$dir/munge"
# munged wants its key private and its socket's directory open to every user.
chmod 711 "$dir/munge"
chmod 755 "$dir/munge/run"
chmod 1777 "$dir/jobs"
runuser -u munge -- mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null || runuser -u munge -- mungekey -c -k "$dir/munge/munge.key"
runuser -u munge -- munged --socket="$dir/munge/run/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/run/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
cp "$dir/munge/run/munged.pid" "$dir/munged.pid"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
node=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024/2)}' /proc/meminfo)

cat > "$dir/slurm.conf" <<CONF
ClusterName=runwatch
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/run/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/cgroup
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1

MinJobAge=600
DefMemPerCPU=100
KillWait=2
OverTimeLimit=0
InactiveLimit=0
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
# A job in 'urgent' (a higher tier) that needs a debug job's resources takes them: the
# debug job ends PREEMPTED.
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4 PriorityTier=1
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10
CONF
cat > "$dir/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainRAMSpace=yes
CgroupMountpoint=/sys/fs/cgroup
CONF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -i -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
setsid bash -c "sleep ${RUNWATCH_SLURM_LIFETIME:-1800}; exec '$(readlink -f "$0")' stop '$dir'" </dev/null >/dev/null 2>&1 &
echo $! > "$dir/watchdog.pid"
for _ in $(seq 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "$dir/slurm.conf"
    exit 0
  fi
  sleep 0.2
done
echo "the Slurm node did not become idle; sinfo says: $(sinfo 2>&1)" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
stop
exit 1
