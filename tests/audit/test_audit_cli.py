"""``fedsov audit verify | reconcile | head``: exit codes 0/1/2, text and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import WriteLedger, digest, edit_byte, lines_of, write_lines
from typer.testing import CliRunner

from fedsov.audit import AuditLedger, Checkpoint, Signer, append_checkpoint
from fedsov.cli import app as fedsov_app
from fedsov.cli.audit import app
from fedsov.pki import NodePaths

runner = CliRunner()


@pytest.fixture
def ledger(tmp_path: Path, write_ledger: WriteLedger) -> Path:
    path = tmp_path / "site-1.audit.jsonl"
    write_ledger(path, 10, close=True)
    return path


def flat(output: str) -> str:
    return " ".join(output.split())


def test_verify_ok_exits_0(ledger: Path, pki: dict[str, NodePaths]) -> None:
    result = runner.invoke(app, ["verify", str(ledger), "--cert", str(pki["site-1"].cert)])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "ledger OK" in out and "of site-1 (EU): 11 records" in out
    assert "note:" not in out


def test_verify_is_registered_under_fedsov_audit(ledger: Path) -> None:
    result = runner.invoke(fedsov_app, ["audit", "verify", str(ledger)])
    assert result.exit_code == 0, result.output
    assert "no certificate vouched" in flat(result.output)


def test_verify_tampered_exits_1_naming_line_seq_and_reason(
    ledger: Path, pki: dict[str, NodePaths]
) -> None:
    lines = lines_of(ledger)
    lines[5] = edit_byte(lines[5], "content_sha256")
    write_lines(ledger, lines)
    result = runner.invoke(app, ["verify", str(ledger), "--cert", str(pki["site-1"].cert)])
    assert result.exit_code == 1
    assert "TAMPERED" in result.output and "line 6 (seq 5): edited:" in flat(result.output)
    as_json = runner.invoke(app, ["verify", str(ledger), "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["ok"] is False
    assert {k: report["finding"][k] for k in ("reason", "line", "seq")} == {
        "reason": "edited",
        "line": 6,
        "seq": 5,
    }


def test_verify_with_a_foreign_certificate_says_forged(
    ledger: Path, pki: dict[str, NodePaths]
) -> None:
    result = runner.invoke(app, ["verify", str(ledger), "--cert", str(pki["agg-eu"].cert)])
    assert result.exit_code == 1
    out = flat(result.output)
    assert "TAMPERED: " + str(ledger) + " of site-1 (EU): line 1 (seq 0): forged signature" in out
    assert "the certificate names agg-eu, but the ledger's node is site-1" in out


def test_head_then_truncation_is_caught_with_the_checkpoints_file(
    ledger: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["head", str(ledger)])
    assert result.exit_code == 0, result.output
    head = Checkpoint.from_json(result.output)
    assert (head.node, head.seq) == ("site-1", 10)
    held = tmp_path / "held.jsonl"
    append_checkpoint(held, head)
    ok = runner.invoke(app, ["verify", str(ledger), "--checkpoints", str(held), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["checkpoints_checked"] == 1
    write_lines(ledger, lines_of(ledger)[:7])
    cut = runner.invoke(app, ["verify", str(ledger), "--checkpoints", str(held)])
    assert cut.exit_code == 1
    assert "line 8 (seq 7): truncated: the ledger ends at seq 6" in flat(cut.output)
    assert runner.invoke(app, ["head", str(ledger)]).exit_code == 0  # intact, just shorter


def test_head_refuses_a_tampered_ledger(ledger: Path) -> None:
    lines = lines_of(ledger)
    del lines[2]
    write_lines(ledger, lines)
    result = runner.invoke(app, ["head", str(ledger)])
    assert result.exit_code == 1
    assert "removed" in result.output


@pytest.mark.parametrize("what", ["ledger", "cert", "checkpoints"])
def test_bad_input_exits_2(ledger: Path, tmp_path: Path, what: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    args = {
        "ledger": ["verify", str(tmp_path / "none.jsonl")],
        "cert": ["verify", str(ledger), "--cert", str(bad)],
        "checkpoints": ["verify", str(ledger), "--checkpoints", str(bad)],
    }[what]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "error:" in result.output and (
        "none.jsonl" in result.output or "bad.pem" in result.output
    )


def test_reconcile_exit_codes(
    tmp_path: Path, pki: dict[str, NodePaths], site_signer: Signer, write_ledger: WriteLedger
) -> None:
    site = tmp_path / "site-1.jsonl"
    write_ledger(site, 2)  # update-sent, rounds 0 and 1, to agg-eu
    agg = tmp_path / "agg-eu.jsonl"
    agg_signer = Signer.load(pki["agg-eu"].key)

    with AuditLedger.open(agg, signer=agg_signer, node="agg-eu", jurisdiction="EU") as ledger:
        for r in (0, 1):
            ledger.append(
                event="update-received",
                round=r,
                peer="site-1",
                content_sha256=digest(f"update {r}"),
            )
    ok = runner.invoke(app, ["reconcile", str(site), str(agg)])
    assert ok.exit_code == 0, ok.output
    assert "link site-1 <-> agg-eu: 2 transfer(s) match, no mismatch" in flat(ok.output)
    write_ledger(site, 1)  # round 2 sent, never received
    bad = runner.invoke(app, ["reconcile", str(site), str(agg)])
    assert bad.exit_code == 1
    assert "1 mismatch(es)" in flat(bad.output) and "not-received" in bad.output
    as_json = json.loads(runner.invoke(app, ["reconcile", str(site), str(agg), "--json"]).output)
    assert as_json["ok"] is False and as_json["matched"] == 2
    assert [m["kind"] for m in as_json["mismatches"]] == ["not-received"]
    assert as_json["mismatches"][0]["sent_sha256"] == digest("update 2")
    missing = runner.invoke(app, ["reconcile", str(site), str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2
