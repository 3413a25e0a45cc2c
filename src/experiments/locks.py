"""One command at a time per folder: a run dir, a sweep dir, a report folder.

``hold(folder, what)`` takes the lock before anything else is written to ``folder`` (it creates the folder
when missing, and :func:`release` removes what it created if it is still empty); a second command gets
:class:`Busy`, one line naming the folder, the holder's pid and host and what to do. Every lock this process
holds is released at exit (normal end, ``sys.exit``, an exception, SIGINT/SIGTERM through
:mod:`experiments.interrupts`); a holder killed outright (SIGKILL, a lost node) leaves its lock behind.

The lock is filelock's ``SoftFileLock``: an exclusive-create marker file holding the holder's pid, host and
process start time. filelock itself takes over a marker whose holder no longer runs on this host (the start
time tells a reused pid apart). A plain ``flock`` would not do: some cluster filesystems lack it (Lustre
mounted without ``-o flock``, some FUSE mounts), and a forked child (a data-loading worker) would keep it
after its parent died. Beside the marker, ``.lock.owner`` records who holds it (pid, host, start, sweep job, Slurm job), for
the message and for the rule filelock cannot know: a job that its launcher runs again (a Ray task retried
after its node died, a Slurm job requeued: same ``SLURM_JOB_ID``, higher ``SLURM_RESTART_COUNT``) takes
over the lock its earlier attempt left on another node, where no pid can be checked.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from filelock import SoftFileLock, Timeout

from experiments.errors import ExperimentError

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"
SUMMARY_LOCK = ".lock.summary"  # held for the moment a sweep's summary is rebuilt and written


def is_lock_file(name: str) -> bool:
    """The lock's own files (marker, owner record, filelock's transient ``.lock.break.*``)."""
    return name == LOCK_NAME or name.startswith(LOCK_NAME + ".")


class Busy(ExperimentError):
    """Another command holds the folder (exit 2)."""


class _Held:
    def __init__(self, lock: SoftFileLock, owner: Path, created: List[Path]) -> None:
        self.lock, self.owner, self.created = lock, owner, created
        self.pid, self.count = os.getpid(), 1


_HELD: Dict[str, _Held] = {}


def me(job: Optional[str] = None) -> Dict[str, object]:
    """The owner record of this process (``job``: the sweep job it runs, see :func:`hold`)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "job": job, "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}


def _owner(folder: Path, name: str) -> Optional[Dict[str, object]]:
    """The owner record beside the lock ``name`` (a holder removes it before it lets the lock go)."""
    with suppress(OSError, ValueError):
        record = json.loads((folder / f"{name}.owner").read_text())
        if isinstance(record, dict) and "pid" in record:
            return record
    return None


def holder(folder: Path, name: str = LOCK_NAME) -> Optional[Dict[str, object]]:
    """Who holds (or held) the lock ``name`` of ``folder``: pid and host from filelock's marker, with the owner
    record when it is the same process's (a record left by an earlier holder is not taken for the current one)."""
    folder = Path(folder)
    marker: Optional[Dict[str, object]] = None
    for _ in range(40):  # filelock creates its marker, then writes pid and host into it: a moment in between
        with suppress(OSError, ValueError, IndexError):
            lines = (folder / name).read_text().splitlines()
            marker = {"pid": int(lines[0]), "host": lines[1] if len(lines) > 1 else "?"}
        if marker is not None or not (folder / name).exists():
            break
        time.sleep(0.025)
    record = _owner(folder, name)
    if record and (marker is None or record.get("pid") == marker["pid"]):
        return record
    return marker


def _mkdirs(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; return the ones created, innermost first."""
    missing = []
    path = folder
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _earlier_attempt(record: Optional[Dict[str, object]], job: Optional[str]) -> bool:
    """The lock was left by an earlier attempt of this very job, which a launcher starts again only once the
    earlier one is gone (possibly on another node, where its pid cannot be checked): the same sweep job
    ``job``, or the same Slurm job requeued (its ``SLURM_RESTART_COUNT`` is higher)."""
    if not record:
        return False
    if job and record.get("job") == job:
        return True
    slurm = os.environ.get("SLURM_JOB_ID")
    if not slurm or str(record.get("slurm_job_id")) != slurm:
        return False
    return int(record.get("slurm_restart") or 0) < int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def describe(record: Optional[Dict[str, object]]) -> str:
    if not record:
        return "another command"
    since = f", since {record['since']}" if record.get("since") else ""
    return f"pid {record.get('pid')} on host {record.get('host', '?')}{since}"


def busy_message(folder: Path, what: str, record: Optional[Dict[str, object]], name: str = LOCK_NAME) -> str:
    return (f"{what}={folder} is in use by another command ({describe(record)}): wait for it to end, or choose "
            f"another {what}; if that process no longer runs (on another host), delete {folder / name}")


def hold(folder: Path, what: str, name: str = LOCK_NAME, wait_s: float = 0, job: Optional[str] = None) -> None:
    """Take the lock ``name`` of ``folder`` for this process (again, if it holds it already), waiting up to
    ``wait_s`` seconds, or raise :class:`Busy`. ``what`` names the folder for the user (``hydra.run.dir``);
    ``job`` names the sweep job this process runs (an attempt of it may take over an earlier one's lock)."""
    folder = Path(folder).resolve()
    key = str(folder / name)
    if key in _HELD and _HELD[key].pid == os.getpid():
        _HELD[key].count += 1
        return
    lock = SoftFileLock(key, timeout=wait_s, thread_local=False)
    created: List[Path] = []
    for attempt in range(5):  # the folder can vanish in between: its maker let the lock go and removed it
        try:
            created += _mkdirs(folder)
        except OSError as exc:
            raise ExperimentError(f"{what}={folder} cannot be created ({exc.strerror or exc}): choose a folder "
                                  f"you can write to") from None
        try:
            if _acquire(lock, folder, (name, what, job), last=attempt == 4):
                break
        except BaseException:
            _remove_empty(created)
            raise
    _HELD[key] = _Held(lock, folder / f"{name}.owner", created)
    left = _owner(folder, name)  # still there: its holder never released (killed), and filelock took over
    _write_owner(folder / f"{name}.owner", job)
    if left and (left.get("pid"), left.get("host")) != (os.getpid(), socket.gethostname()):
        print(f"warning: took over the lock of {folder} left by {describe(left)}, which no longer runs",
              file=sys.stderr, flush=True)


def _acquire(lock: SoftFileLock, folder: Path, names: tuple, last: bool) -> bool:
    """Acquire (True), or take over the lock an earlier attempt of this job left; False when the folder was
    removed meanwhile (try again); else :class:`Busy`. ``names``: (lock name, what, job) as for :func:`hold`."""
    name, what, job = names
    try:
        lock.acquire()
        return True
    except Timeout:
        record = holder(folder, name)
    except FileNotFoundError:
        if not last:
            return False
        raise ExperimentError(f"cannot lock {folder}: it keeps being removed by another command") from None
    except OSError as exc:
        raise ExperimentError(f"cannot lock {folder} ({exc.strerror or exc}): choose a folder you can "
                              f"write to") from None
    if not _earlier_attempt(record, job):
        raise Busy(busy_message(folder, what, record, name))
    lock.break_lock()
    try:
        lock.acquire()
    except Timeout:  # another attempt of the same job took it first
        raise Busy(busy_message(folder, what, holder(folder, name), name)) from None
    return True


def _write_owner(path: Path, job: Optional[str]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with suppress(OSError):  # the record is for messages and takeovers; the marker is the lock
        tmp.write_text(json.dumps(me(job)) + "\n")
        os.replace(tmp, path)


def _remove_empty(created: List[Path]) -> None:
    """Remove the folders taking the lock created (innermost first) while they are empty."""
    for path in created:
        try:
            path.rmdir()
        except FileNotFoundError:  # removed already (a failed start removes its run dir)
            continue
        except OSError:  # not empty: something else was written there
            return


def release(folder: Path, name: str = LOCK_NAME) -> None:
    """Give the lock ``name`` of ``folder`` back (the last of nested holds): its files go, and so do the
    folders taking it created if nothing else was written to them. A forked child never releases its
    parent's lock."""
    key = str(Path(folder).resolve() / name)
    held = _HELD.get(key)
    if held is None or held.pid != os.getpid():
        return
    held.count -= 1
    if held.count > 0:
        return
    del _HELD[key]
    with suppress(OSError):
        held.owner.unlink()
    with suppress(OSError):  # the folder may be gone already (a failed start removes its run dir)
        held.lock.release(force=True)
    _remove_empty(held.created)


def release_all() -> None:
    """Every lock this process holds (at exit)."""
    for key in list(_HELD):
        while key in _HELD and _HELD[key].pid == os.getpid():
            release(Path(key).parent, Path(key).name)


def held(folder: Path, name: str = LOCK_NAME) -> bool:
    held_lock = _HELD.get(str(Path(folder).resolve() / name))
    return held_lock is not None and held_lock.pid == os.getpid()


@contextmanager
def holding(folder: Path, what: str, name: str = LOCK_NAME, wait_s: float = 0) -> Iterator[None]:
    """The lock ``name`` of ``folder`` for the ``with`` block (see :func:`hold`)."""
    hold(folder, what, name, wait_s)
    try:
        yield
    finally:
        release(folder, name)


atexit.register(release_all)
