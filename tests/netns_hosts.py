"""Separate hosts on this machine for the tests: each host is a network namespace (``ip netns``) with its own
address on a bridge, its own hostname (``unshare --uts``) and, when asked, its own disk (a folder bind-mounted
in its own mount namespace). Every host resolves every other by name: a hosts file of the cluster is mounted
over ``/etc/hosts`` in each host's mount namespace (the machine's own ``/etc/hosts`` is not touched). The
bridge's address on this machine's side lets daemons that stay outside the namespaces (a Slurm controller)
reach the hosts. Commands enter a namespace with ``nsenter --net`` (``ip netns exec`` would remount ``/sys``
and hide the cgroup mounts that slurmd needs).

Traffic stays inside the namespaces this module created (a random ``10.77.x.0/24``); everything is removed
by :meth:`Hosts.stop`. Needs root, ``ip`` (iproute2), ``nsenter`` and ``unshare`` (util-linux); measured in
../shared/FIELD-NOTES.md ("Building clusters inside a test").
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def missing_reason() -> Optional[str]:
    """Why namespaced hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "separate hosts need root (network namespaces)"
    for tool in ("ip", "nsenter", "unshare"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"'{tool}' not found (install: apt-get install -y iproute2 util-linux)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str  # its hostname, resolvable from every host
    namespace: str
    address: str


class Hosts:
    """``names`` as separate hosts; ``hosts.command(name, argv)`` runs ``argv`` on one of them."""

    def __init__(self, names: Sequence[str], tag: Optional[str] = None) -> None:
        self.subnet = random.randint(2, 250)
        self.tag = tag or f"{os.getpid() % 10000}{self.subnet}"
        self.bridge = f"hb{self.tag}"[:15]
        self.gateway = f"10.77.{self.subnet}.254"  # this machine, on the bridge
        self.folder = Path(tempfile.mkdtemp(prefix="test-hosts-"))
        self.folder.chmod(0o755)
        self.hosts: Dict[str, Host] = {
            name: Host(name, f"h{self.tag}-{i}", f"10.77.{self.subnet}.{i + 1}") for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def hosts_file(self, extra: Optional[Dict[str, str]] = None) -> str:
        lines = ["127.0.0.1 localhost"] + [f"{h.address} {h.name}" for h in self.hosts.values()]
        lines += [f"{address} {name}" for name, address in (extra or {}).items()]
        return "\n".join(lines) + "\n"

    def start(self, extra_names: Optional[Dict[str, str]] = None) -> "Hosts":
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, host in enumerate(self.hosts.values()):
                outside, inside = f"v{self.tag}o{i}"[:15], f"v{self.tag}i{i}"[:15]
                _ip("netns", "add", host.namespace)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", host.namespace)
                _ip("link", "set", outside, "master", self.bridge, "up")
                for args in (("addr", "add", f"{host.address}/24", "dev", inside), ("link", "set", inside, "up"),
                             ("link", "set", "lo", "up")):
                    _ip("netns", "exec", host.namespace, "ip", *args)
            (self.folder / "hosts").write_text(self.hosts_file(extra_names))
            (self.folder / "hosts").chmod(0o644)
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, name: str, argv: Sequence[str], disks: Optional[Dict[str, str]] = None) -> List[str]:
        """``argv`` as run on host ``name``: its network, its hostname and, for each ``{path: folder}`` of
        ``disks``, its own folder mounted at ``path`` (that host's local disk)."""
        host = self.hosts[name]
        mounts = {"/etc/hosts": str(self.folder / "hosts"), **(disks or {})}
        binds = "".join(f"mount --bind {shlex.quote(src)} {shlex.quote(dst)} && " for dst, src in mounts.items())
        script = f"hostname {shlex.quote(host.name)} && {binds}exec \"$@\""
        return ["nsenter", f"--net=/run/netns/{host.namespace}", "unshare", "--uts", "--mount", "--propagation",
                "private", "sh", "-c", script, "sh", *argv]

    def stop(self) -> None:
        for host in self.hosts.values():
            pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout
            for pid in pids.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
