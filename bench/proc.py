"""Run a child process and measure it: wall time, exit code and peak RSS.

Peak RSS comes from GNU time (``/usr/bin/time -f %M``), i.e. from ``wait4()`` on the
measured process, including the descendants it waited for (fetchmail's procmail, getmail's
delivery child). Why a trampoline: Linux carries the high-water RSS of the *old* address
space across ``execve()``, and a child forked (or vforked) by this benchmark's own process,
which holds the corpus in memory, would report this process's size instead of its own.
GNU time is a ~1 MB process, so what it reports is the measured program's own peak.
``RUSAGE_CHILDREN`` is no alternative: it is a maximum over every child ever reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"  # Debian package "time"


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    timed_out: bool = False


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    user: int | None = None,
    group: int | None = None,
    timeout: float = 900.0,
    log_dir: Path,
    name: str,
) -> Measured:
    """Run ``argv`` to completion (killed after ``timeout``); stdout/stderr go to log_dir."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o777)  # GNU time, running as the measured user, writes its report here
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    rss_path = log_dir / f"{name}.rss"
    rss_path.unlink(missing_ok=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", str(rss_path), "--", *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            start_new_session=True,  # a timeout kills the whole group, not just GNU time
        )
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    del usage  # GNU time's own rusage: inflated by this process's size (see above)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    try:
        rss_kb = int(rss_path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        rss_kb = -1024  # killed before GNU time could report: shown as -1
    return Measured(
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss_mb=rss_kb / 1024,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=timed_out.is_set(),
    )
