"""``experiments-dashboard`` (or ``python scripts/dashboard.py``): TensorBoard on 127.0.0.1 over the
runs of ``outputs/`` and ``multirun/``, with the hparams dashboard (table, parallel coordinates,
scatter) built from each run's ``config.yaml`` + ``metrics.json``. New and changed runs are
exported again every ``--reload`` seconds while it runs. No cloud account, nothing leaves the machine."""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from experiments import locks
from experiments.errors import ExperimentError
from experiments.report.tb_export import export

log = logging.getLogger("experiments.dashboard")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="experiments-dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", default=["outputs", "multirun"],
                        help="folders holding runs or sweeps (default: outputs multirun)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--export-dir", default=None,
                        help="where the event files go (default: a temporary folder removed at exit)")
    parser.add_argument("--reload", type=float, default=30.0,
                        help="seconds between scans for new runs (0: scan once)")
    return parser.parse_args(argv)


def tensorboard_command(logdir: Path, host: str, port: int) -> List[str]:
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port),
            "--reload_interval", "5", "--load_fast", "false"]


def _lock_export_dir(export_dir: Path) -> bool:
    """One dashboard at a time exports into a folder (two would remove each other's event files); the lock is
    released when this process ends."""
    try:
        locks.hold(export_dir, "--export-dir")
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    roots = [Path(r) for r in args.roots]
    missing = [str(r) for r in roots if not r.is_dir()]
    if len(missing) == len(roots):
        print(f"error: no run folder found ({', '.join(missing)}): run an experiment first or pass folders",
              file=sys.stderr)
        return 2
    temp = None
    if args.export_dir:
        export_dir = Path(args.export_dir)
        if not _lock_export_dir(export_dir):
            return 2
    else:
        temp = tempfile.TemporaryDirectory(prefix="experiments-dashboard-")
        export_dir = Path(temp.name)
    written = export(roots, export_dir)
    log.info("%d run(s) from %s -> %s", len(written), ", ".join(str(r) for r in roots), export_dir)
    for report in sorted(p for r in roots if r.is_dir() for p in r.rglob("report.html")):
        log.info("sweep report: %s", report)
    proc = subprocess.Popen(tensorboard_command(export_dir, args.host, args.port))
    print(f"dashboard: http://{args.host}:{args.port}/#hparams  (Ctrl+C to stop)", flush=True)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            try:
                return proc.wait(timeout=args.reload if args.reload > 0 else None)
            except subprocess.TimeoutExpired:
                runs_now = export(roots, export_dir)
                if runs_now:
                    log.info("new or changed runs: %s", ", ".join(runs_now))
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
