"""Opening a client, a site agent or the command line imports neither torch nor a serving role.

Each case imports in a fresh interpreter (this one has torch loaded by other tests) and
reports what it loaded and its peak RSS; .importlinter holds the same rule statically.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "opacus", "fedsov.node", "fedsov.strategy", "fedsov.coordinator")

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec from the parent.
PROBE = """
import json, re, sys
for name in sys.argv[1:]:
    __import__(name)
with open("/proc/self/status") as status:
    peak_mb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1]) / 1024
print(json.dumps({"modules": sorted(sys.modules), "peak_mb": peak_mb}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize(
    "modules",
    [
        ("fedsov.participant", "fedsov.transport.client"),
        ("fedsov.site.agent",),
        ("fedsov.cli.main",),
    ],
    ids=["client", "site-agent", "cli"],
)
def test_light_modules_import_no_torch_and_no_serving_side(modules: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout)
    print(f"{' + '.join(modules)}: peak RSS {seen['peak_mb']:.0f} MB")
    assert [m for m in HEAVY if m in seen["modules"]] == []
    assert seen["peak_mb"] < 150  # issue 14: a site that trains nothing stays under 150 MB
