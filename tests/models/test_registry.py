"""ModelRegistry: versions, resolving a model by name, lineage, verified loads."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PLAN_SHA, Federation, write_federation

from fedsov.exceptions import ConfigError, StateError
from fedsov.models import ModelRegistry
from fedsov.node.state import ModelRow
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore


def test_versions_are_ordered_by_round_with_their_metadata(federation: Federation) -> None:
    versions = ModelRegistry.open(federation.out).versions()
    assert [(v.round, v.sha256, v.parent) for v in versions] == [
        (r, federation.sha(r), None if r == 0 else federation.sha(r - 1)) for r in range(4)
    ]
    third = versions[3]
    assert third.contributors == ("agg-eu", "site-us-1")
    assert third.sites == ("site-eu-1", "site-eu-2", "site-us-1")
    assert third.regions == ("agg-eu",)
    assert third.epsilon == {"site-eu-1": 1.5, "site-eu-2": 2.25, "site-us-1": 3.0}
    assert third.site_level_epsilon == {"agg-eu": 0.75}
    assert (third.plan_sha256, third.accuracy) == (PLAN_SHA, 0.83)
    assert third.file == f"blobs/{federation.sha(3)}.safetensors"


def test_keys_missing_from_an_older_row_read_as_empty(federation: Federation) -> None:
    older = ModelRegistry.open(federation.out).versions()[2]
    assert older.contributors == ("site-us-1",)
    assert (older.sites, older.regions, older.epsilon, older.site_level_epsilon) == ((), (), {}, {})
    assert (older.plan_sha256, older.created, older.extra) == (None, None, {})


@pytest.mark.parametrize(
    ("ref", "round"), [("latest", 3), ("LATEST", 3), ("0", 0), ("2", 2), (" 3 ", 3)]
)
def test_resolve_latest_and_round_numbers(federation: Federation, ref: str, round: int) -> None:
    assert ModelRegistry.open(federation.out).resolve(ref).sha256 == federation.sha(round)


@pytest.mark.parametrize("length", [6, 9, 64])
def test_resolve_a_sha256_prefix(federation: Federation, length: int) -> None:
    registry = ModelRegistry.open(federation.out)
    for r in range(4):
        assert registry.resolve(federation.sha(r)[:length]).round == r
        assert registry.resolve(federation.sha(r)[:length].upper()).round == r


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("7", "no round 7 (models of rounds 0 to 3)"),
        ("fffffffff", "no model whose SHA-256 starts with fffffffff"),
        ("abc", "'abc' names no model: give 'latest', a round number or at least 6 hex"),
        ("round-1", "'round-1' names no model"),
        ("-1", "'-1' names no model"),
        ("²", "'²' names no model"),
        ("", "'' names no model"),
    ],
)
def test_resolve_refuses_what_names_no_model(
    federation: Federation, ref: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ModelRegistry.open(federation.out).resolve(ref)


def fake_rows(out: Path, shas: list[str]) -> None:
    store = SqliteStateStore(out / STATE_FILE)
    store.bind("fake", "f" * 64)
    parent = None
    for number, sha in enumerate(shas):
        store.add_model(ModelRow(sha, number, parent, f"blobs/{sha}.safetensors", {}))
        parent = sha
    store.close()


def test_an_ambiguous_prefix_lists_every_candidate(tmp_path: Path) -> None:
    shas = ["abcdef01" + "0" * 56, "abcdef02" + "0" * 56, "123456" + "1" * 58]
    fake_rows(tmp_path, shas)
    registry = ModelRegistry.open(tmp_path)
    with pytest.raises(ConfigError) as caught:
        registry.resolve("abcdef")
    assert str(caught.value) == (
        "'abcdef' is ambiguous: it names abcdef0100000000 (round 0), abcdef0200000000 "
        "(round 1); give more hex digits"
    )
    assert registry.resolve("abcdef02").round == 1
    # all digits and 6 long: round 123456 and a SHA-256 prefix; only the prefix matches
    assert registry.resolve("123456").round == 2


def test_latest_of_an_empty_registry(tmp_path: Path) -> None:
    fake_rows(tmp_path, [])
    registry = ModelRegistry.open(tmp_path)
    assert registry.versions() == []
    with pytest.raises(ConfigError, match="no models yet"):
        registry.resolve("latest")


def test_lineage_walks_back_to_round_0(federation: Federation) -> None:
    registry = ModelRegistry.open(federation.out)
    assert [v.sha256 for v in registry.lineage(federation.sha(3))] == [
        federation.sha(r) for r in (3, 2, 1, 0)
    ]
    assert [v.round for v in registry.lineage(federation.sha(0))] == [0]


def test_lineage_names_a_missing_parent(tmp_path: Path) -> None:
    orphan = "c" * 64
    store = SqliteStateStore(tmp_path / STATE_FILE)
    store.add_model(ModelRow(orphan, 5, "d" * 64, f"blobs/{orphan}.safetensors", {}))
    store.close()
    with pytest.raises(StateError, match=r"model cccccccccccccccc \(round 5\) names parent dddd"):
        ModelRegistry.open(tmp_path).lineage(orphan)


def test_load_returns_the_arrays_in_state_dict_order(federation: Federation) -> None:
    registry = ModelRegistry.open(federation.out)
    for r, model in federation.models.items():
        arrays = registry.load(model.sha256)
        assert list(arrays) == list(model.manifest.names)
        assert list(arrays) == ["1.weight", "1.bias", "3.weight", "3.bias"]
        for name, expected in model.arrays().items():
            np.testing.assert_array_equal(arrays[name], expected, err_msg=f"round {r} {name}")


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tampered_blob_is_refused_naming_the_file(federation: Federation) -> None:
    flip_byte(federation.blob(2), -3)  # in the last tensor's data
    registry = ModelRegistry.open(federation.out)
    for read in (registry.load, registry.read_blob):
        with pytest.raises(StateError) as caught:
            read(federation.sha(2))
        assert str(caught.value).startswith(f"{federation.blob(2)}: damaged: its tensors hash to ")
        assert str(caught.value).endswith(f"not to {federation.sha(2)[:16]} (the model of round 2)")
    registry.load(federation.sha(1))  # the others are intact


def test_a_truncated_or_missing_blob_is_refused_naming_the_file(federation: Federation) -> None:
    federation.blob(1).write_bytes(federation.blob(1).read_bytes()[:100])
    federation.blob(3).unlink()
    registry = ModelRegistry.open(federation.out)
    with pytest.raises(
        StateError, match=f"^{re.escape(str(federation.blob(1)))}: damaged, cannot read"
    ):
        registry.load(federation.sha(1))
    with pytest.raises(
        StateError, match=f"^{re.escape(str(federation.blob(3)))}: cannot read the model of round 3"
    ):
        registry.load(federation.sha(3))


def test_a_row_naming_a_file_outside_models_is_refused(tmp_path: Path) -> None:
    sha = "e" * 64
    store = SqliteStateStore(tmp_path / STATE_FILE)
    store.add_model(ModelRow(sha, 0, None, "../state/fedsov.db", {}))
    store.close()
    with pytest.raises(
        StateError, match=re.escape("its file '../state/fedsov.db' is outside models/")
    ):
        ModelRegistry.open(tmp_path).load(sha)


def test_a_folder_without_state_is_not_an_output_folder(tmp_path: Path) -> None:
    with pytest.raises(
        StateError, match=f"^{re.escape(str(tmp_path))}: not a fedsov output folder"
    ):
        ModelRegistry.open(tmp_path)
    with pytest.raises(StateError, match="no such folder"):
        ModelRegistry.open(tmp_path / "missing")


def test_a_state_file_that_is_not_fedsov_state(tmp_path: Path) -> None:
    db = tmp_path / STATE_FILE
    db.parent.mkdir()
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError, match="cannot read the state database"):
        ModelRegistry.open(tmp_path)
    db.unlink()
    sqlite3.connect(db).close()
    with pytest.raises(StateError, match="not a fedsov state database"):
        ModelRegistry.open(tmp_path)


def test_bad_metadata_is_named(tmp_path: Path) -> None:
    sha = "f" * 64
    store = SqliteStateStore(tmp_path / STATE_FILE)
    store.add_model(ModelRow(sha, 0, None, "x", {"sites": "site-1"}))
    store.close()
    with pytest.raises(StateError, match=r"model ffffffffffffffff \(round 0\): metadata 'sites'"):
        ModelRegistry.open(tmp_path)


def test_opening_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    federation = write_federation(tmp_path / "out")
    db = federation.out / STATE_FILE
    before = db.read_bytes()
    (federation.out / "models").rename(tmp_path / "elsewhere")
    opened: list[tuple[str, dict[str, Any]]] = []
    connect = sqlite3.connect

    def recording_connect(database: str, **kwargs: Any) -> sqlite3.Connection:
        opened.append((database, kwargs))
        conn: sqlite3.Connection = connect(database, **kwargs)
        return conn

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    assert len(ModelRegistry.open(federation.out).versions()) == 4
    monkeypatch.undo()
    [(database, kwargs)] = opened
    assert database.endswith("?mode=ro") and kwargs == {"uri": True}
    conn = sqlite3.connect(database, uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM models")
    conn.close()
    assert db.read_bytes() == before
    assert not (federation.out / "models").exists()
