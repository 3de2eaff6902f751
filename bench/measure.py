"""How the benchmarks measure a step: a fresh interpreter per step, its peak RSS, a cap.

Shared by every benchmark in `bench/`, so their figures are taken the same way: a step runs in
a newly spawned process (nothing inherited from the parent, so its peak RSS is its own), and a
step whose RSS passes a cap is stopped, since the machine is shared.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

RSS_MARKER = "rss_cap_exceeded"  # written by a child's watchdog before it exits


def proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM, VmRSS...) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak RSS of this process's address space, in MiB.

    VmHWM (Linux) is reset by exec, so a spawned child reports only its own peak; ru_maxrss can
    carry the parent's RSS at fork time over an exec, so it is only the fallback.
    """
    peak = proc_status_mib("VmHWM")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def current_rss_mib() -> float:
    current = proc_status_mib("VmRSS")
    return float("nan") if current is None else current


def _watch_rss(cap_mib: float) -> None:
    """Exit this process (a measured child) once its RSS passes ``cap_mib``, leaving the RSS
    it reached in ``RSS_MARKER`` in the working directory for the parent to report."""
    while True:
        rss = current_rss_mib()
        if rss > cap_mib:
            Path(RSS_MARKER).write_text(f"{rss:.0f}")
            os._exit(3)
        time.sleep(0.1)


def _start_child(workdir: str | None, rss_cap_mib: float | None) -> None:
    if workdir is not None:
        os.chdir(workdir)
    if rss_cap_mib:
        threading.Thread(target=_watch_rss, args=(rss_cap_mib,), daemon=True).start()


def in_fresh_process(func, *args, workdir: Path | None = None, rss_cap_mib: float | None = None):
    """Run ``func(*args)`` in a newly spawned interpreter (nothing inherited) and return its
    result; None when the child died (e.g. killed by the kernel's OOM killer).

    With ``workdir`` the child runs there: DuckDB spills to ``.tmp`` relative to the working
    directory, and the spill files belong with the benchmark's data, not in the repository. A
    child whose RSS passes ``rss_cap_mib`` is stopped: the result then says ``aborted``, with
    the wall time until then and the RSS it had reached (a cap needs a ``workdir``).
    """
    marker = None if workdir is None else Path(workdir) / RSS_MARKER
    if marker is not None:
        marker.unlink(missing_ok=True)
    assert rss_cap_mib is None or marker is not None, "an RSS cap needs a workdir"
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=_start_child,
        initargs=(None if workdir is None else str(workdir), rss_cap_mib),
    ) as pool:
        try:
            return pool.submit(func, *args).result()
        except BrokenProcessPool:
            if marker is None or not marker.is_file():
                return None
            return {
                "wall_s": time.perf_counter() - start,
                "peak_rss_mib": float(marker.read_text()),
                "rows": 0,
                "aborted": True,
            }


def dir_size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
