"""``fedsov health``: a real coordinator process answers SERVING (exit 0); nothing
listening, or a server in graceful shutdown, is exit 1; a config it cannot probe is 2.

Servers listen on 127.0.0.1 port 0 only; a process a test starts is killed by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedsov.cli.health import NodeRole, check, read_probe
from fedsov.cli.main import app
from fedsov.config import write_toml
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.transport.server import RunningServer, start_server

FEDERATION = "probe-fed"
MODEL = {"factory": "fedsov.simulation.models:mlp", "kwargs": {"in_features": 8, "hidden": 4}}
runner = CliRunner()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("coordinator",)),
        NodeSpec("agg-eu", Role.aggregator, "EU", ("agg-eu",)),
        NodeSpec("paris", Role.site, "EU"),
    ]
    return build_pki(tmp_path_factory.mktemp("pki"), federation=FEDERATION, nodes=nodes)


def tls(paths: NodePaths) -> dict[str, str]:
    return {"cert": str(paths.cert), "key": str(paths.key), "ca": str(paths.ca)}


def coordinator_toml(path: Path, pki: dict[str, NodePaths], server: dict[str, Any]) -> Path:
    return write_toml(
        path,
        {
            "federation": {"name": FEDERATION},
            "server": {**server, **tls(pki["coordinator"])},
            "model": MODEL,
            "rounds": {"num_rounds": 1, "min_sites": 1, "start_timeout_s": 120.0},
            "output": {"dir": str(path.parent / "coordinator-out")},
        },
    )


def aggregator_toml(path: Path, pki: dict[str, NodePaths], address: str) -> Path:
    return write_toml(
        path,
        {
            "aggregator": {"name": "agg-eu"},
            "federation": {"name": FEDERATION},
            "server": {"address": address, **tls(pki["agg-eu"])},
            "upstream": {"address": "coordinator:50051", **tls(pki["agg-eu"])},
            "model": MODEL,
        },
    )


def free_port() -> int:
    """A port nothing listens on (bound on loopback, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["health", *args])
    return result.exit_code, result.output


@contextlib.contextmanager
def fedsov_server(
    paths: NodePaths | None,
) -> Iterator[tuple[RunningServer, asyncio.AbstractEventLoop]]:
    """fedsov's own server (health, reflection, a bare Federation servicer), mTLS on
    127.0.0.1 port 0 (plaintext without ``paths``), on an event loop in its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    material = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca) if paths else None
    started = start_server(pb_grpc.FederationServicer(), address="127.0.0.1:0", tls=material)
    server = asyncio.run_coroutine_threadsafe(started, loop).result(30)
    try:
        yield server, loop
    finally:
        asyncio.run_coroutine_threadsafe(server.server.stop(0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@pytest.mark.e2e
def test_a_real_coordinator_is_serving(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    port_file = tmp_path / "coordinator.port"
    config = coordinator_toml(
        tmp_path / "coordinator.toml",
        pki,
        {"address": "127.0.0.1:0", "port_file": str(port_file)},
    )
    log = (tmp_path / "coordinator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsov", "coordinator", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            assert proc.poll() is None, (tmp_path / "coordinator.log").read_text()
            assert time.monotonic() < deadline, "the coordinator wrote no port file"
            time.sleep(0.05)
        # The command as a container runs it; -X importtime lists every module it loads.
        probe = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "fedsov", "health", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
    port = int(port_file.read_text())
    assert probe.returncode == 0, probe.stdout + probe.stderr[-3000:]
    assert probe.stdout == f"coordinator coordinator at 127.0.0.1:{port}: SERVING\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in probe.stderr.splitlines()}
    assert "torch" not in imported  # a probe run every few seconds stays light
    assert not any(m.startswith("fedsov.coordinator") for m in imported)


def test_nothing_listening_is_exit_1(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    port = free_port()
    config = coordinator_toml(tmp_path / "c.toml", pki, {"address": f"127.0.0.1:{port}"})
    code, output = health("--config", str(config), "--timeout", "5")
    assert code == 1
    assert output.startswith(f"coordinator coordinator at 127.0.0.1:{port}: UNAVAILABLE")
    assert output.count("\n") == 1


def test_a_node_that_has_not_bound_its_port_yet_is_exit_1(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    port_file = tmp_path / "coordinator.port"  # written once the node listens
    config = coordinator_toml(
        tmp_path / "c.toml", pki, {"address": "127.0.0.1:0", "port_file": str(port_file)}
    )
    code, output = health("--config", str(config))
    assert code == 1
    assert (
        output == f"{config}: NOT_LISTENING: no {port_file} yet: the node has not bound its port\n"
    )


def test_an_aggregator_is_serving_until_it_shuts_down(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    with fedsov_server(pki["agg-eu"]) as (server, loop):
        config = aggregator_toml(tmp_path / "agg.toml", pki, f"127.0.0.1:{server.port}")
        assert health("-c", str(config)) == (
            0,
            f"aggregator agg-eu at 127.0.0.1:{server.port}: SERVING\n",
        )
        asyncio.run_coroutine_threadsafe(server.health.enter_graceful_shutdown(), loop).result(30)
        serving, line = check(read_probe(config), timeout=5.0)
        assert not serving
        assert line == f"aggregator agg-eu at 127.0.0.1:{server.port}: NOT_SERVING"
        assert health("-c", str(config))[0] == 1


def test_a_server_certificate_without_the_expected_name_is_exit_1(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    with fedsov_server(pki["agg-eu"]) as (server, _):
        config = aggregator_toml(tmp_path / "agg.toml", pki, f"127.0.0.1:{server.port}")
        code, output = health("-c", str(config), "--server-name", "elsewhere.example.org")
    assert code == 1
    assert "UNAVAILABLE" in output


def test_an_insecure_development_node_is_probed_in_plaintext(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    with fedsov_server(None) as (server, _):
        config = aggregator_toml(tmp_path / "agg.toml", pki, f"127.0.0.1:{server.port}")
        doc = tomllib.loads(config.read_text())
        doc["server"] = {"address": f"127.0.0.1:{server.port}", "insecure": True}
        write_toml(config, doc)
        code, output = health("-c", str(config))
    assert (code, output) == (0, f"aggregator agg-eu at 127.0.0.1:{server.port}: SERVING\n")


def test_a_wildcard_bind_is_dialled_on_loopback(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    for bound, dialled in [("0.0.0.0:50051", "127.0.0.1:50051"), ("[::]:7000", "[::1]:7000")]:
        probe = read_probe(coordinator_toml(tmp_path / "c.toml", pki, {"address": bound}))
        assert (probe.role, probe.name, probe.address) == (
            NodeRole.coordinator,
            "coordinator",
            dialled,
        )
        assert probe.server_name == "coordinator"
    port_file = tmp_path / "port"
    port_file.write_text("40123\n")
    config = coordinator_toml(
        tmp_path / "c.toml", pki, {"address": "0.0.0.0:0", "port_file": str(port_file)}
    )
    assert read_probe(config).address == "127.0.0.1:40123"
    agg = aggregator_toml(tmp_path / "agg.toml", pki, "0.0.0.0:50052")
    assert read_probe(agg, role=NodeRole.aggregator).name == "agg-eu"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot read config file"),
        ("site", "a site only dials out"),
        ("port-0", "without server.port_file"),
        ("typo", "unknown key 'adress'"),
        ("no-key", "private key"),
    ],
)
def test_a_config_it_cannot_probe_is_exit_2(
    tmp_path: Path, pki: dict[str, NodePaths], case: str, message: str
) -> None:
    path = tmp_path / "node.toml"
    if case == "site":
        write_toml(path, {"site": {"name": "paris"}, "upstream": {"address": "agg-eu:1"}})
    elif case == "port-0":
        coordinator_toml(path, pki, {"address": "0.0.0.0:0"})
    elif case == "typo":
        coordinator_toml(path, pki, {"address": "0.0.0.0:1", "adress": "x"})
    elif case == "no-key":
        coordinator_toml(path, pki, {"address": "0.0.0.0:1"})
        text = path.read_text().replace(str(pki["coordinator"].key), str(tmp_path / "gone.key"))
        path.write_text(text)
    code, output = health("--config", str(path))
    assert code == 2
    assert output.startswith("error: ")
    assert message in output
