"""The ``pki`` typer app, driven through CliRunner."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedsov.cli.pki import app
from fedsov.pki import NodeIdentity, Role, load_tls_material

runner = CliRunner()


def _init(ca_dir: Path, *extra: str) -> str:
    result = runner.invoke(app, ["init", "--dir", str(ca_dir), "--federation", "fed", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _csr(out: Path, *extra: str) -> None:
    result = runner.invoke(
        app,
        [
            "csr", "--name", "coord", "--role", "coordinator", "--jurisdiction", "EU",
            "--federation", "fed", "--host", "localhost", "--host", "127.0.0.1",
            "--out-dir", str(out), *extra,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_cli_full_flow(tmp_path: Path) -> None:
    ca_dir, node_dir = tmp_path / "ca", tmp_path / "node"
    _init(ca_dir, "--days", "30")
    _csr(node_dir)
    csr = node_dir / "coord.csr.pem"
    result = runner.invoke(app, ["sign", "--ca-dir", str(ca_dir), "--csr", str(csr)])
    assert result.exit_code == 0, result.output
    assert "issued coord" in result.output
    cert = node_dir / "coord.pem"
    tls = load_tls_material(cert=cert, key=node_dir / "coord.key", ca=ca_dir / "ca.pem")
    assert tls.identity == NodeIdentity("coord", Role.coordinator, "EU", "fed")

    shown = runner.invoke(app, ["show", str(cert)])
    assert shown.exit_code == 0, shown.output
    for expected in (
        "name:         coord",
        "role:         coordinator",
        "jurisdiction: EU",
        "federation:   fed",
        "localhost",
        "127.0.0.1",
        "urn:fedsov:fed:coordinator:EU:coord",
        "CN=fedsov CA fed,O=fed",
        "valid until:",
    ):
        assert expected in shown.output


def test_cli_sign_with_explicit_out_and_days(tmp_path: Path) -> None:
    _init(tmp_path / "ca")
    _csr(tmp_path)
    out = tmp_path / "issued" / "x.pem"
    result = runner.invoke(
        app,
        ["sign", "--ca-dir", str(tmp_path / "ca"), "--csr", str(tmp_path / "coord.csr.pem"),
         "--out", str(out), "--days", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.exists() and not (tmp_path / "coord.pem").exists()


def test_cli_init_refuses_overwrite_with_exit_2(tmp_path: Path) -> None:
    _init(tmp_path)
    result = runner.invoke(app, ["init", "--dir", str(tmp_path), "--federation", "fed"])
    assert result.exit_code == 2
    assert "error:" in result.output and "already exists" in result.output
    _init(tmp_path, "--force")


def test_cli_bad_jurisdiction_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["csr", "--name", "s", "--role", "site", "--jurisdiction", "eu", "--federation", "fed",
         "--out-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "invalid jurisdiction 'eu'" in result.output
    assert not (tmp_path / "s.key").exists()


def test_cli_bad_role_rejected_by_typer(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["csr", "--name", "s", "--role", "king", "--jurisdiction", "EU", "--federation", "fed",
         "--out-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert not (tmp_path / "s.key").exists()


def test_cli_sign_other_federation_exit_2(tmp_path: Path) -> None:
    _init(tmp_path / "ca")
    result = runner.invoke(
        app,
        ["csr", "--name", "s", "--role", "site", "--jurisdiction", "EU", "--federation", "rival",
         "--out-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    csr = tmp_path / "s.csr.pem"
    result = runner.invoke(app, ["sign", "--ca-dir", str(tmp_path / "ca"), "--csr", str(csr)])
    assert result.exit_code == 2
    assert f"CSR {csr}" in result.output and "federation 'rival'" in result.output
    assert not (tmp_path / "s.pem").exists()


def test_cli_show_missing_and_truncated(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = runner.invoke(app, ["show", str(missing)])
    assert result.exit_code == 2
    assert f"{missing}: file not found" in result.output
    _init(tmp_path)
    truncated = tmp_path / "half.pem"
    truncated.write_bytes((tmp_path / "ca.pem").read_bytes()[:100])
    result = runner.invoke(app, ["show", str(truncated)])
    assert result.exit_code == 2
    assert "not a valid PEM certificate" in result.output


def test_cli_show_ca_certificate_has_no_node_identity(tmp_path: Path) -> None:
    _init(tmp_path)
    result = runner.invoke(app, ["show", str(tmp_path / "ca.pem")])
    assert result.exit_code == 0, result.output
    assert "identity:     none" in result.output
    assert "subject:      CN=fedsov CA fed,O=fed" in result.output


def test_cli_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "csr", "sign", "show"):
        assert command in result.output


def test_cli_error_text_is_not_eaten_as_markup(tmp_path: Path) -> None:
    missing = tmp_path / "[red]x.pem"
    result = runner.invoke(app, ["show", str(missing)])
    assert result.exit_code == 2
    assert "[red]x.pem: file not found" in result.output


def test_cli_csr_refuses_a_host_for_a_site(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "csr", "--name", "s", "--role", "site", "--jurisdiction", "EU",
            "--federation", "fed", "--host", "localhost", "--out-dir", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "sites never listen" in result.output
    assert list(tmp_path.iterdir()) == []  # refused before any key was made
