"""``recheck_with_checkpoints``: an intact ledger checked against checkpoints held
elsewhere finds what ``verify_ledger(..., checkpoints=...)`` finds, without verifying
its signatures twice."""

from __future__ import annotations

from pathlib import Path

from fedsov.audit import AuditLedger, Checkpoint, verify_ledger
from fedsov.audit.signing import Signer
from fedsov.audit.verify import recheck_with_checkpoints
from fedsov.pki._keys import generate_key


def write_ledger(path: Path, node: str = "site-a", records: int = 5) -> list[Checkpoint]:
    """A ledger of ``records`` events; the checkpoint of each record, in order."""
    ledger = AuditLedger.open(path, signer=Signer(generate_key()), node=node, jurisdiction="EU")
    heads = []
    for i in range(records):
        ledger.append(event="model-received", round=i + 1, peer="hub", content_sha256="ab" * 32)
        heads.append(ledger.checkpoint())
    ledger.close()
    return heads


def same(a: object, b: object) -> None:
    fields = ("ok", "records", "head", "node", "checkpoints_checked", "finding", "notes")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


def test_matching_checkpoints_keep_the_ledger_intact(tmp_path: Path) -> None:
    path = tmp_path / "site-a.audit.jsonl"
    heads = write_ledger(path)
    held = [heads[1], heads[-1], Checkpoint("other", 99, "00" * 32)]  # another node's: ignored
    rechecked = recheck_with_checkpoints(verify_ledger(path), held)
    same(rechecked, verify_ledger(path, checkpoints=held))
    assert rechecked.ok and rechecked.checkpoints_checked == 2


def test_a_cut_off_tail_is_found(tmp_path: Path) -> None:
    path = tmp_path / "site-a.audit.jsonl"
    heads = write_ledger(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))
    rechecked = recheck_with_checkpoints(verify_ledger(path), [heads[-1]])
    same(rechecked, verify_ledger(path, checkpoints=[heads[-1]]))
    assert not rechecked.ok and "were cut off" in str(rechecked.finding)


def test_a_rewritten_ledger_is_found(tmp_path: Path) -> None:
    path = tmp_path / "site-a.audit.jsonl"
    old = write_ledger(path)
    path.unlink()
    write_ledger(path)  # the same events again, signed anew: other hashes
    rechecked = recheck_with_checkpoints(verify_ledger(path), [old[0]])
    same(rechecked, verify_ledger(path, checkpoints=[old[0]]))
    assert not rechecked.ok and "rewritten at or before seq" in str(rechecked.finding)


def test_a_tampered_ledger_stays_as_found(tmp_path: Path) -> None:
    path = tmp_path / "site-a.audit.jsonl"
    heads = write_ledger(path)
    path.write_bytes(path.read_bytes().replace(b'"round":2', b'"round":7', 1))
    alone = verify_ledger(path)
    assert not alone.ok
    assert recheck_with_checkpoints(alone, heads) is alone
