"""A real two-node Slurm cluster for the tests: Debian's ``munged``, ``slurmctld`` and one ``slurmd`` per
node (Slurm 22.05 on Debian 12) started as children of the test session, everything in one temporary folder.

Each node is a separate host (tests/netns_hosts.py): its own network namespace, address and hostname
(``n1``, ``n2``), so a job's ranks on two nodes meet over TCP between hosts, as on a cluster. The controller
stays on this machine (its own hostname ``slurmctl``, reached at the bridge's address); munge's socket is a
file, which every namespace sees. The nodes share this machine's filesystem, as cluster nodes share one.

Nothing system-wide is read or written beyond the namespaces' ``/etc/netns/<name>/hosts``: ``slurm.conf`` is
given through ``SLURM_CONF`` (the daemons and the client commands read it), munge has its own key and socket
(``AuthInfo=socket=...``), state, spool, logs and pid files live in the folder too. Each node declares
``CPUs=2``; no accounting storage (``sacct`` answers "accounting storage is disabled", and the launcher
follows the jobs with ``squeue``). Measured in ../shared/FIELD-NOTES.md. As the browser test does with
Chromium: when the Debian packages are missing the tests are skipped with the command that installs them
(``.ci/run`` does, as root); when they are there but the cluster does not come up, that is an error with the
daemons' logs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: netns_hosts
import netns_hosts  # noqa: E402

INSTALL_HINT = "apt-get install -y slurmctld slurmd slurm-client munge iproute2"
DAEMONS = ("munged", "slurmctld", "slurmd")
NODES = ("n1", "n2")
CONTROLLER = "slurmctl"
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "sinfo", "scontrol", "sacct")
PARTITION = "debug"
CPUS = 2
_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])


def find_slurm() -> Optional[Dict[str, str]]:
    """{program: path} for the daemons and client commands, or None when one is missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), _SBIN])
    found = {name: shutil.which(name, path=search) for name in (*DAEMONS, *CLIENTS)}
    return None if not all(found.values()) else {k: str(v) for k, v in found.items()}


def missing_reason() -> Optional[str]:
    """Why no cluster can be started here (None: it can)."""
    if find_slurm() is None:
        search = os.pathsep.join([os.environ.get("PATH", ""), _SBIN])
        missing = [n for n in (*DAEMONS, *CLIENTS) if not shutil.which(n, path=search)]
        return f"Slurm not installed ({', '.join(missing)} not found; install: {INSTALL_HINT})"
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd starts jobs as their user)"
    return netns_hosts.missing_reason()


def _die_with_parent() -> None:
    """In a daemon's process before exec (Linux): SIGTERM it when the test session dies without its
    teardown."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_ports(count: int) -> List[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _memory_mb() -> int:
    """RealMemory for the node: 90 % of this machine's (slurmd drains a node that has less than that)."""
    return max(1, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9))


def slurm_conf(root: Path, hosts: "netns_hosts.Hosts", ports: List[int]) -> str:
    """The cluster's slurm.conf: nodes n1 and n2 (``CPUs=2`` each) at their namespaces' addresses, one
    partition, the controller at the bridge's address, paths in ``root``."""
    nodes = [f"NodeName={h.name} NodeAddr={h.address} NodeHostname={h.name} CPUs={CPUS} RealMemory={_memory_mb()} "
             "State=UNKNOWN" for h in hosts.hosts.values()]
    return "\n".join([
        f"ClusterName=pytest{ports[0]}",
        f"SlurmctldHost={CONTROLLER}({hosts.gateway})",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",  # CPUs are what jobs take; memory is not a consumable here
        "SlurmdParameters=config_overrides",  # CPUs=2 whatever this machine has
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2",
        "JobRequeue=1",
        "KillWait=30",  # scancel: SIGTERM, SIGKILL 30 s later (Slurm's default): a run stops at its next step
        "MinJobAge=600",  # squeue still knows a job 10 min after its end (the evidence the tests read)
        "SlurmdTimeout=30",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}/%n",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd-%n.log'}",
        *nodes,
        f"PartitionName={PARTITION} Nodes={','.join(hosts.hosts)} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    hosts: "netns_hosts.Hosts"
    partition: str = PARTITION
    procs: Dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> Dict[str, str]:
        """The environment the client commands (and so submitit, and the jobs) need: ``SLURM_CONF``."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A client command (``squeue``, ``scancel``, ...) against this cluster."""
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    @property
    def node_names(self) -> List[str]:
        return list(self.hosts.hosts)

    def node_states(self) -> Dict[str, str]:
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N|%T", check=False).stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def jobs(self) -> Dict[str, str]:
        """{job id: state} of every job the controller knows, finished ones included (``MinJobAge``)."""
        out = self.run("squeue", "--states=all", "--array", "--noheader", "--format=%i|%T").stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def ended(self, job_ids: List[str], timeout: float = 60) -> List[Optional[str]]:
        """The final states of these jobs, once none is pending, running or completing any more (a job's
        result is written before its processes exit: the sweep can be done before Slurm is)."""
        deadline = time.time() + timeout
        while True:
            states = [self.jobs().get(i) for i in job_ids]
            busy = set(states) & {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}
            if not busy or time.time() > deadline:
                return states
            time.sleep(0.5)

    def logs(self) -> str:
        """The tails of the daemons' logs, for error messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)


def _wait_for(check, what: str, cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} while waiting for {what}\n"
                                   f"{cluster.logs()}")
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.logs()}")


def start_cluster(root: Optional[Path] = None, timeout: float = 60) -> SlurmCluster:
    """munged, slurmctld and a slurmd on each node as children of this process, in ``root`` (a new temporary
    folder by default); returns once both nodes are idle in the partition."""
    tools = find_slurm()
    if tools is None:
        raise RuntimeError(f"Slurm not installed: {INSTALL_HINT}")
    # munged wants every folder up to its socket to be searchable by all (a pytest tmp dir is 0700).
    root = Path(root or tempfile.mkdtemp(prefix="pytest-slurm-"))
    for sub in ("munge", "state", "spool", "log", "run", *(f"spool/{n}" for n in NODES)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "munge").chmod(0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    hosts = netns_hosts.Hosts(NODES)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, hosts, _free_ports(2)))
    cluster = SlurmCluster(root=root, conf=conf, hosts=hosts)
    log_dir = root / "log"
    commands = {
        "munged": [tools["munged"], "--foreground", f"--key-file={key}",
                   f"--socket={root / 'munge' / 'munge.socket'}",
                   f"--pid-file={root / 'run' / 'munged.pid'}", f"--log-file={log_dir / 'munged.log'}",
                   f"--seed-file={root / 'munge' / 'munged.seed'}"],
        # its own hostname (the one slurm.conf names), on this machine's network
        "slurmctld": ["unshare", "--uts", "sh", "-c", f"hostname {CONTROLLER} && exec \"$@\"", "sh",
                      tools["slurmctld"], "-D", "-i"],
        **{f"slurmd-{name}": hosts.command(name, [tools["slurmd"], "-D", "-N", name]) for name in NODES},
    }
    try:
        hosts.start(extra_names={CONTROLLER: hosts.gateway})
        for name, command in commands.items():
            with (log_dir / f"{name}.console").open("wb") as console:
                cluster.procs[name] = subprocess.Popen(command, env=cluster.env, stdout=console,
                                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                       start_new_session=True, preexec_fn=_die_with_parent)
            if name == "munged":
                _wait_for((root / "munge" / "munge.socket").exists, "munged's socket", cluster, timeout)
            elif name == "slurmctld":
                _wait_for(lambda: cluster.run("sinfo", check=False).returncode == 0, "slurmctld", cluster,
                          timeout)

        def nodes_idle() -> bool:
            return sorted(cluster.node_states().items()) == [(n, "idle") for n in NODES]

        _wait_for(nodes_idle, f"nodes {', '.join(NODES)} to be idle", cluster, timeout)
    except BaseException:
        stop_cluster(cluster, remove=False)
        raise
    return cluster


def stop_cluster(cluster: SlurmCluster, remove: bool = True, timeout: float = 30) -> None:
    """Cancel the cluster's jobs (their steps outlive slurmd), stop the daemons, remove the folder."""
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        try:
            cluster.run("scancel", f"--partition={cluster.partition}", check=False)
            deadline = time.time() + timeout
            while time.time() < deadline and any(s in ("RUNNING", "COMPLETING", "PENDING")
                                                 for s in cluster.jobs().values()):
                time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):
            pass
    for name in reversed(list(cluster.procs)):
        proc = cluster.procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    cluster.hosts.stop()
    if remove:
        shutil.rmtree(cluster.root, ignore_errors=True)
