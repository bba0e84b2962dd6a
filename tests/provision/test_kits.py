"""``fedsov provision``'s kits, file by file: relative paths that stay inside the kit,
no private key outside the CA, configs the roles' own loaders accept once the
certificates exist, and the refusals that protect keys and policy."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedsov.aggregator.config import load as load_aggregator
from fedsov.cli.pki import app as pki_app
from fedsov.config import OperatorFile, load_toml
from fedsov.coordinator.config import load as load_coordinator
from fedsov.exceptions import ConfigError, PKIError, PolicyViolation
from fedsov.pki.ca import init_ca
from fedsov.pki.csr import make_csr
from fedsov.pki.identity import Role
from fedsov.pki.tls import load_tls_material
from fedsov.policy.plan import load_plan
from fedsov.provision import Network, layout, provision
from fedsov.simulation.hierarchy import write_plan_data
from fedsov.site.config import load as load_site

runner = CliRunner()
LOADERS = {"coordinator": load_coordinator, "aggregator": load_aggregator, "site": load_site}
PATH_KEYS = {"cert", "key", "ca", "plan", "dir", "port_file", "path"}


def manifest(kits: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((kits / layout.MANIFEST).read_text())
    return data


def config_paths(table: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, value) of a parsed config that names a file."""
    if isinstance(table, dict):
        for key, value in table.items():
            if isinstance(value, dict):
                yield from config_paths(value, f"{where}{key}.")
            elif key in PATH_KEYS and isinstance(value, str):
                yield f"{where}{key}", value


def private_keys(root: Path) -> list[str]:
    """Every file under ``root`` that holds a private key, relative to it."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and (p.suffix == ".key" or b"PRIVATE KEY" in p.read_bytes())
    )


def in_kit(kit: Path, action: list[str], app: Any = pki_app) -> None:
    """Run a kit's ``fedsov pki ...`` command in-process, with ``kit`` as the cwd."""
    cwd = Path.cwd()
    os.chdir(kit)
    try:
        result = runner.invoke(app, action[2:])  # after "fedsov pki"
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output


def issue_every_certificate(kits: Path) -> None:
    """Each kit's CSR command in its kit, then the operator's signing command."""
    for kit in manifest(kits)["kits"].values():
        in_kit(kits / kit["folder"], kit["csr_command"])
        in_kit(kits, kit["sign_command"])


def test_each_kit_holds_its_files_and_names_them_relative_to_itself(
    plan_file: Path, tmp_path: Path
) -> None:
    kits = tmp_path / "kits"
    plan = load_plan(plan_file)
    provision(plan, kits, network=Network(), demo_data=write_plan_data)
    info = manifest(kits)
    assert info["plan_sha256"] == hashlib.sha256(plan_file.read_bytes()).hexdigest()
    assert info["start_order"] == [
        "coordinator", "agg-eu", "agg-in", "paris", "berlin", "mumbai", "delhi"
    ]  # fmt: skip
    assert set(info["kits"]) == {*info["start_order"], "operator"}
    ca_pem = (kits / "ca" / "ca.pem").read_bytes()
    for name, kit in info["kits"].items():
        folder = kits / kit["folder"]
        assert (folder / layout.PLAN).read_bytes() == plan_file.read_bytes()
        assert (folder / layout.CA_CERT).read_bytes() == ca_pem
        assert os.access(folder / layout.SCRIPT, os.X_OK)
        assert f"`{name}`" in (folder / layout.README).read_text()
        config = folder / (layout.OPERATOR_CONFIG if name == "operator" else layout.CONFIG)
        named = dict(config_paths(tomllib.loads(config.read_text())))
        assert named, name
        for key, value in named.items():
            assert not Path(value).is_absolute(), (name, key, value)
            assert (folder / value).resolve().is_relative_to(folder.resolve()), (name, key)
    for site in ("paris", "berlin", "mumbai", "delhi"):
        config = tomllib.loads((kits / site / layout.CONFIG).read_text())
        assert config["data"]["path"] == f"data/{site}.npz"
        assert (kits / site / "data" / f"{site}.npz").is_file()
    for server in ("coordinator", "agg-eu", "agg-in"):
        config = tomllib.loads((kits / server / layout.CONFIG).read_text())
        assert config["evaluation"]["kwargs"]["path"] == layout.TEST_DATA
        assert (kits / server / layout.TEST_DATA).is_file()
        assert config["output"]["dir"] == layout.OUTPUT_DIR
    assert not list(kits.glob(".demo-data-*"))  # the staging folder is gone


def test_no_private_key_is_written_but_the_ca_it_made(plan_file: Path, tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    done = provision(load_plan(plan_file), kits, network=Network(), demo_data=write_plan_data)
    assert done.ca.created and done.ca_in_kits
    assert private_keys(kits) == ["ca/ca.key"]
    index = (kits / layout.INDEX).read_text()
    assert "`ca/` is not a kit" in index and "never ship it" in index


def test_an_existing_ca_stays_where_it_is(plan_file: Path, tmp_path: Path) -> None:
    ca_dir = tmp_path / "operator-ca"
    init_ca(ca_dir, federation="consortium")
    kits = tmp_path / "kits"
    done = provision(load_plan(plan_file), kits, network=Network(), ca_dir=ca_dir)
    assert not done.ca.created and not done.ca_in_kits
    assert not (kits / "ca").exists()
    assert private_keys(kits) == []
    assert (kits / "paris" / layout.CA_CERT).read_bytes() == (ca_dir / "ca.pem").read_bytes()
    sign = manifest(kits)["kits"]["paris"]["sign_command"]
    assert sign[sign.index("--ca-dir") + 1] == str(ca_dir.resolve())
    other = tmp_path / "other-ca"
    init_ca(other, federation="elsewhere")
    with pytest.raises(PKIError, match="serves federation 'elsewhere'"):
        provision(load_plan(plan_file), tmp_path / "k2", network=Network(), ca_dir=other)


def test_configs_load_with_the_roles_loaders_once_certificates_exist(
    plan_file: Path, tmp_path: Path
) -> None:
    kits = tmp_path / "kits"
    provision(load_plan(plan_file), kits, network=Network(), demo_data=write_plan_data)
    issue_every_certificate(kits)
    keys = private_keys(kits)
    every = manifest(kits)["kits"]
    assert keys == sorted(["ca/ca.key", *(f"{n}/{n}.key" for n in every)])
    for name, kit in every.items():
        folder = kits / kit["folder"]
        if name == "operator":
            table = load_toml(OperatorFile, folder / layout.OPERATOR_CONFIG).operator
            tls = load_tls_material(cert=table.cert, key=table.key, ca=table.ca)
            assert tls.identity.role is Role.operator
            assert table.address == "coordinator:7443"
            continue
        config = LOADERS[kit["role"]](folder / layout.CONFIG)
        endpoint = config.upstream if kit["role"] == "site" else config.server  # type: ignore[attr-defined]
        assert endpoint.tls is not None
        tls = load_tls_material(cert=endpoint.tls.cert, key=endpoint.tls.key, ca=endpoint.tls.ca)
        assert (tls.identity.name, tls.identity.role.value) == (name, kit["role"])
        assert tls.identity.jurisdiction == kit["jurisdiction"]
        assert config.plan == (folder / layout.PLAN).resolve()  # type: ignore[attr-defined]


def test_ports_and_hosts_follow_the_options(plan_file: Path, tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    network = Network(
        listen="10.0.0.5",
        base_port=9000,
        ports={"agg-in": 9100},
        hosts={"coordinator": "coord.example.org"},
    )
    provision(load_plan(plan_file), kits, network=network)
    every = manifest(kits)["kits"]
    assert every["coordinator"]["listen"] == "10.0.0.5:9000"
    assert every["agg-eu"]["listen"] == "10.0.0.5:9001"
    assert every["agg-in"]["listen"] == "10.0.0.5:9100"
    assert every["agg-eu"]["dials"] == "coord.example.org:9000"
    assert every["paris"]["dials"] == "agg-eu:9001"  # no host given: the node name
    assert every["mumbai"]["dials"] == "agg-in:9100"
    assert every["operator"]["dials"] == "coord.example.org:9000"
    csr = every["coordinator"]["csr_command"]
    assert [csr[i + 1] for i, a in enumerate(csr) if a == "--host"] == [
        "coord.example.org",
        "coordinator",
    ]
    assert "--host" not in every["paris"]["csr_command"]  # sites never listen
    script = (kits / "coordinator" / layout.SCRIPT).read_text()
    assert "--host coord.example.org --host coordinator --out-dir ." in script
    agg = tomllib.loads((kits / "agg-eu" / layout.CONFIG).read_text())
    assert agg["upstream"] | {"cert": "", "key": "", "ca": ""} == {
        "address": "coord.example.org:9000",
        "server_name": "coordinator",
        "cert": "",
        "key": "",
        "ca": "",
    }
    assert "port_file" not in agg["server"]


def test_base_port_zero_binds_free_ports_and_writes_port_files(
    plan_file: Path, tmp_path: Path
) -> None:
    kits = tmp_path / "kits"
    provision(load_plan(plan_file), kits, network=Network(listen="127.0.0.1", base_port=0))
    agg = tomllib.loads((kits / "agg-eu" / layout.CONFIG).read_text())
    assert agg["server"]["address"] == "127.0.0.1:0"
    assert agg["server"]["port_file"] == layout.PORT_FILE
    assert agg["upstream"]["address"] == "coordinator:0"  # to be filled in: loaders refuse :0
    assert "Port 0" in (kits / "paris" / layout.README).read_text()


def test_without_demo_data_a_site_gets_a_placeholder_and_no_one_evaluates(
    plan_file: Path, tmp_path: Path
) -> None:
    kits = tmp_path / "kits"
    provision(load_plan(plan_file), kits, network=Network())
    site = tomllib.loads((kits / "paris" / layout.CONFIG).read_text())
    assert site["data"]["path"] == "data/paris.npz"
    assert list((kits / "paris" / "data").iterdir()) == []
    assert "a placeholder" in (kits / "paris" / layout.README).read_text()
    coordinator = tomllib.loads((kits / "coordinator" / layout.CONFIG).read_text())
    assert "evaluation" not in coordinator


def test_a_plan_that_breaks_its_policy_is_refused_before_anything_is_written(
    plan_file: Path, tmp_path: Path
) -> None:
    text = plan_file.read_text().replace("min_sites = 2", "min_sites = 3")  # IN's k: 3 > 2 sites
    plan_file.write_text(text)
    kits = tmp_path / "kits"
    with pytest.raises(PolicyViolation, match=r"export-k-unreachable.*fedsov policy check"):
        provision(load_plan(plan_file), kits, network=Network())
    assert not kits.exists()


def test_a_kit_holding_a_key_is_never_overwritten(plan_file: Path, tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    plan = load_plan(plan_file)
    provision(plan, kits, network=Network())
    in_kit(kits / "paris", manifest(kits)["kits"]["paris"]["csr_command"])
    key = (kits / "paris" / "paris.key").read_bytes()
    ca_key = (kits / "ca" / "ca.key").read_bytes()
    (kits / "paris" / layout.CONFIG).write_text("edited")
    with pytest.raises(ConfigError, match=r"paris/paris\.key.*--force"):
        provision(plan, kits, network=Network())
    assert (kits / "paris" / layout.CONFIG).read_text() == "edited"
    done = provision(plan, kits, network=Network(base_port=8000), force=True)
    assert not done.ca.created  # the CA it made before, kept
    assert (kits / "paris" / "paris.key").read_bytes() == key
    assert (kits / "paris" / "paris.csr.pem").is_file()
    assert (kits / "ca" / "ca.key").read_bytes() == ca_key
    assert "agg-eu:8001" in (kits / "paris" / layout.CONFIG).read_text()


def test_options_that_cannot_work_are_refused(plan_file: Path, tmp_path: Path) -> None:
    plan = load_plan(plan_file)
    kits = tmp_path / "kits"
    with pytest.raises(ConfigError, match="'paris' is an edge site, and sites never listen"):
        provision(plan, kits, network=Network(hosts={"paris": "10.0.0.1"}))
    with pytest.raises(ConfigError, match="no node 'nowhere'"):
        provision(plan, kits, network=Network(ports={"nowhere": 1}))
    with pytest.raises(ConfigError, match="would listen on port 65536"):
        provision(plan, kits, network=Network(base_port=65535))
    with pytest.raises(ConfigError, match="share a folder with a plan node"):
        provision(plan, kits, network=Network(), operator="paris")
    assert not kits.exists()


def test_the_layout_names_the_files_pki_writes(tmp_path: Path) -> None:
    key, csr = make_csr(
        tmp_path, name="paris", role=Role.site, jurisdiction="EU", federation="consortium"
    )
    assert (key.name, csr.name) == (layout.key_file("paris"), layout.csr_file("paris"))
    ca = tmp_path / "ca"
    init_ca(ca, federation="consortium")
    result = runner.invoke(pki_app, ["sign", "--ca-dir", str(ca), "--csr", str(csr)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / layout.cert_file("paris")).is_file()  # sign's default --out
