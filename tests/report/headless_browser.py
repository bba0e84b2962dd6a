"""Headless Chromium for tests: find the binary, screenshot a page.

CI installs Chromium (``make browser``); elsewhere a test that needs it skips, naming
that target, unless ``CI`` is set, where a missing browser fails the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

BINARIES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
TIMEOUT_S = 90.0


def find_chromium() -> str | None:
    """The first Chromium on PATH (``FEDSOV_CHROMIUM`` names one elsewhere), or None."""
    given = os.environ.get("FEDSOV_CHROMIUM")
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    return next(filter(None, map(shutil.which, BINARIES)), None)


def require_chromium() -> str:
    """Chromium's path; a failure under CI, else a skip, when there is none."""
    found = find_chromium()
    if found is None:
        message = f"no headless Chromium ({', '.join(BINARIES)}) on PATH; install it: make browser"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def screenshot(binary: str, page: Path, out: Path, *, width: int, height: int) -> None:
    """Render ``page`` (a local file) into the PNG ``out`` at ``width`` x ``height``.

    ``--no-sandbox``: Chromium's sandbox refuses to run as root (as in CI containers).
    The browser starts its own process group, killed whatever happens.
    """
    profile = out.parent / f"{out.stem}-profile"  # never the user's own profile
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):  # its renderer and helpers too
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = output.decode(errors="replace")[-3000:]
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{text}"
    assert out.is_file(), f"chromium wrote no screenshot:\n{text}"
