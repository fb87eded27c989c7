"""What ties the multi-process service's children to their supervisor: they die with it, and
its run directory (the model's socket, the metrics files) is named after it.

A child that outlives its supervisor keeps serving under PID 1: it holds the port (a restart
fails with `Address already in use`), answers readiness 200 and sums into nobody's metrics.
So each child asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), which no
state of the supervisor (`kill -9`, a crash, the OOM killer) can skip. A supervisor killed
outright cannot remove its run directory; the next one removes every run directory whose
owner is dead (`remove_stale_run_dirs`).

Knows nothing of HTTP, models or settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

log = logging.getLogger("emodistill.service")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RUN_DIR_PREFIX = "emodistill-"


def die_with_parent(parent_pid: int) -> None:
    """The first thing a child does: SIGKILL from the kernel when `parent_pid` dies. A parent
    that died before this call (the child is re-parented already) ends the child at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as err:  # not Linux: the supervisor's own cleanup only
        log.warning("cannot tie this process to its supervisor's life: %s", err)
    if os.getppid() != parent_pid:
        os._exit(1)  # the supervisor is already gone: nothing to serve for


def make_run_dir() -> Path:
    """A private (0700) directory named after this process: emodistill-<pid>-<random>."""
    return Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-"))


def remove_stale_run_dirs(root: Path | None = None) -> list[Path]:
    """Removes the run directories of supervisors that are dead (killed before their own
    cleanup); those of live processes, another user's, or unknown names are left. Returns
    what it removed."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*-*"):
        owner = path.name.removeprefix(RUN_DIR_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            if not owner.isascii() or not owner.isdigit() or path.stat().st_uid != os.getuid():
                continue
            if _alive(int(owner)):
                continue
            shutil.rmtree(path)
            removed.append(path)
    if removed:
        log.info("removed %d run directories left by dead supervisors", len(removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
