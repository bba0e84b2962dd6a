"""The report's figure data against the run records it is computed from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from synthetic_run import PLAN, SyntheticRun, write_flat_run, write_hierarchical_run

from fedsov.exceptions import FedsovError
from fedsov.node.state import RoundRow
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore
from fedsov.policy.plan import load_plan
from fedsov.policy.runtime import export_requirement
from fedsov.report.data import (
    Cell,
    epsilon_data,
    metrics_data,
    participants,
    participation_data,
)
from fedsov.report.hierarchy import hierarchy_data, tree_layout
from fedsov.report.overview import header_data, jurisdiction_rows
from fedsov.report.run import STATE_DB, load_run

STATUS = {"accepted": Cell.ACCEPTED, "declined": Cell.DECLINED, "late": Cell.LATE}
STATUS["rejected"] = Cell.REFUSED


@pytest.fixture
def hier(tmp_path: Path) -> SyntheticRun:
    return write_hierarchical_run(tmp_path / "run")


def cells(codes: str) -> tuple[Cell, ...]:
    """a accepted, d declined, l late, r refused, - absent."""
    code = {"a": Cell.ACCEPTED, "d": Cell.DECLINED, "l": Cell.LATE, "r": Cell.REFUSED}
    return tuple(code.get(c, Cell.ABSENT) for c in codes)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "rounds.jsonl").read_text().splitlines()]


def points(series: Any) -> list[tuple[int, float]]:
    return list(zip(series.rounds, series.values, strict=True))


def test_state_db_is_where_the_nodes_keep_their_state() -> None:
    assert STATE_DB.as_posix() == STATE_FILE


def test_global_and_regional_metrics_are_the_records_own(hier: SyntheticRun) -> None:
    data = metrics_data(load_run(hier.path))
    for metric, figure in (("accuracy", data.accuracy), ("loss", data.loss)):
        expected = [(r["round"], r["metrics"][metric]) for r in lines(hier.path) if r["completed"]]
        assert expected[2] == (3, {"accuracy": 0.5, "loss": 1.5}[metric])  # attempt 2 of round 3
        assert figure[0].label == "global (coordinator)"
        assert points(figure[0]) == expected
        by_label = {s.label: s for s in figure[1:]}
        assert list(by_label) == ["agg-eu (EU)", "agg-us (US)"]
        for name, reports in hier.regions.items():
            j = "EU" if name == "agg-eu" else "US"
            want = [(r["round"], r["metrics"][metric]) for r in reports if r["completed"]]
            assert points(by_label[f"{name} ({j})"]) == want
            assert by_label[f"{name} ({j})"].jurisdiction == j
    assert [n for n, _ in points(data.accuracy[2])] == [1, 2]  # agg-us exported only 2 rounds


def _reported(reports: list[dict[str, Any]], site: str) -> list[tuple[int, float]]:
    by_round: dict[int, float] = {}
    for r in reports:
        for s in r["sites"]:
            if s["site"] == site and s["epsilon"] is not None:
                by_round[r["round"]] = s["epsilon"]
    return sorted(by_round.items())


def test_site_epsilon_is_what_each_site_reported_at_its_tier(hier: SyntheticRun) -> None:
    data = epsilon_data(load_run(hier.path))
    got = {s.participant.name: s for s in data.sites}
    assert list(got) == ["paris", "berlin", "boston", "austin", "seattle", "lyon"]
    for name, site in got.items():
        upstream = site.participant.upstream
        records = lines(hier.path) if upstream == "coordinator" else hier.regions[upstream]
        assert points(site.series) == _reported(records, name), name
    assert points(got["lyon"].series) == [(1, 1.1), (2, 1.6), (3, 2.4), (4, 2.9)]  # last attempt
    assert points(got["boston"].series) == [(1, 5.0), (2, 8.0)]  # then it declined
    assert got["seattle"].series.rounds == (1, 3, 4)
    assert data.site_budget == 10.0


def test_jurisdiction_epsilon_worst_site_exports_and_budgets(hier: SyntheticRun) -> None:
    data = epsilon_data(load_run(hier.path))
    eu, us = data.jurisdictions
    assert (eu.jurisdiction, eu.budget, eu.export) == ("EU", 5.0, None)
    assert points(eu.worst_site) == [(1, 1.1), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert (us.jurisdiction, us.budget) == ("US", 50.0)
    assert us.export is not None
    assert points(us.export) == _reported(lines(hier.path), "agg-us") == [(1, 20.0), (2, 30.0)]
    assert points(us.worst_site) == [(1, 5.0), (2, 8.0), (3, 8.0), (4, 8.0)]  # ε never falls


def test_participation_is_each_status_at_the_participants_tier(hier: SyntheticRun) -> None:
    run = load_run(hier.path)
    data = participation_data(run)
    assert data.rounds == (1, 2, 3, 4)
    rows = {r.participant.label: r for r in data.rows}
    assert list(rows) == [
        *("paris", "berlin", "boston", "austin", "seattle"),
        *("agg-eu (region)", "agg-us (region)", "lyon"),
    ]
    assert rows["berlin"].cells == cells("alar")
    assert rows["seattle"].cells == cells("a-aa")
    assert rows["boston"].cells == rows["agg-us (region)"].cells == cells("aadd")
    assert rows["agg-eu (region)"].cells == cells("aaaa")  # late only in round 3's 1st attempt
    last = {r["round"]: r for r in lines(hier.path)}  # later attempts overwrite earlier
    for row in data.rows:
        upstream = row.participant.upstream
        held = (
            last if upstream == "coordinator" else {r["round"]: r for r in hier.regions[upstream]}
        )
        for n, cell in zip(data.rounds, row.cells, strict=True):
            status = [s["status"] for s in held[n]["sites"] if s["site"] == row.participant.name]
            assert cell == (STATUS[status[0]] if status else Cell.ABSENT)


def test_participants_follow_the_plan(hier: SyntheticRun) -> None:
    found = participants(load_run(hier.path))
    assert [(p.name, p.upstream, p.region, p.jurisdiction) for p in found] == [
        ("paris", "agg-eu", False, "EU"),
        ("berlin", "agg-eu", False, "EU"),
        ("boston", "agg-us", False, "US"),
        ("austin", "agg-us", False, "US"),
        ("seattle", "agg-us", False, "US"),
        ("agg-eu", "coordinator", True, "EU"),
        ("agg-us", "coordinator", True, "US"),
        ("lyon", "coordinator", False, "EU"),
    ]


def test_hierarchy_marks_each_crossing_with_its_k(hier: SyntheticRun) -> None:
    plan = load_plan(hier.path / "plan.toml")
    figure = hierarchy_data(plan)
    assert [n.name for n in figure.nodes] == [n.name for n in plan.nodes]
    assert len(figure.links) == len(plan.nodes) - 1
    [crossing] = figure.crossings
    assert (crossing.child, crossing.parent, crossing.route) == ("agg-us", "coordinator", "US → EU")
    assert crossing.k == export_requirement(plan, "agg-us").min_sites == 3
    assert crossing.site_dp and crossing.allowed
    assert all(link.k is None and link.allowed for link in figure.links if not link.crosses)
    place = tree_layout(figure)
    assert place["coordinator"] == (2.75, 0)
    assert [place[n] for n in ("agg-eu", "agg-us", "lyon")] == [(0.5, 1), (3.0, 1), (5.0, 1)]
    assert [place[n][0] for n in ("paris", "berlin", "boston", "austin", "seattle")] == [
        0.0,
        1.0,
        2.0,
        3.0,
        4.0,
    ]


def test_a_crossing_the_plan_forbids_is_marked(tmp_path: Path) -> None:
    text = PLAN.replace("US = { min_sites = 3, site_dp = true }", "")
    (tmp_path / "plan.toml").write_text(text)
    [crossing] = hierarchy_data(load_plan(tmp_path / "plan.toml")).crossings
    assert not crossing.allowed
    assert "nothing may leave US" in crossing.reason


def test_header_and_jurisdiction_table(hier: SyntheticRun) -> None:
    run = load_run(hier.path)
    h = header_data(run)
    assert (h.federation, h.status, h.rounds_completed, h.attempts) == (
        "synthetic",
        "completed",
        4,
        5,
    )
    assert (h.rounds_planned, h.final_accuracy) == (4, 0.58)
    assert h.plan_sha256 == hashlib.sha256((hier.path / "plan.toml").read_bytes()).hexdigest()
    eu, us = jurisdiction_rows(run, epsilon_data(run))
    assert (eu.aggregators, eu.sites) == (("coordinator", "agg-eu"), ("lyon", "paris", "berlin"))
    assert (eu.max_site_epsilon, eu.export_epsilon, eu.export_budget) == (4.0, None, 5.0)
    assert (eu.exports, eu.sends_to, eu.site_budget) == ("nothing", ("EU",), 10.0)
    assert (us.max_site_epsilon, us.export_epsilon, us.export_budget) == (8.0, 30.0, 50.0)
    assert us.exports == "aggregates of >= 3 site(s), with site-level DP"
    assert us.sends_to == ("EU", "US")


def test_a_flat_run_has_sites_and_no_jurisdictions(tmp_path: Path) -> None:
    flat = write_flat_run(tmp_path / "flat")
    run = load_run(flat.path)
    assert run.flat and not run.regions and not run.notes
    data = participation_data(run)
    assert [r.participant.label for r in data.rows] == ["site-1", "site-2", "site-3"]
    assert data.rows[2].cells == cells("-aa")
    eps = epsilon_data(run)
    assert (eps.site_budget, eps.jurisdictions) == (None, ())
    assert points(eps.sites[0].series) == _reported(flat.coordinator, "site-1")
    assert jurisdiction_rows(run, eps) == ()
    assert header_data(run).plan_sha256 is None
    assert [s.label for s in metrics_data(run).accuracy] == ["global (coordinator)"]


def test_a_region_without_its_state_falls_back_to_its_summary(hier: SyntheticRun) -> None:
    shutil.rmtree(hier.path / "nodes" / "agg-us" / "state")
    shutil.rmtree(hier.path / "nodes" / "agg-eu")
    run = load_run(hier.path)
    assert run.notes == (
        "no records of agg-eu (looked for nodes/agg-eu/state/fedsov.db)",
        "agg-us: only its summary's metrics (no state/fedsov.db)",
    )
    accuracy = {s.label: s for s in metrics_data(run).accuracy}
    assert points(accuracy["agg-us (US)"]) == [(1, 0.2), (2, 0.35)]
    rows = {r.participant.name: r.cells for r in participation_data(run).rows}
    assert rows["paris"] == rows["boston"] == cells("----")  # no records, still a row


def test_reading_a_run_changes_nothing_in_it(hier: SyntheticRun) -> None:
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in hier.path.rglob("*")}
    run = load_run(hier.path)
    participation_data(run)
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in hier.path.rglob("*")} == before


def test_a_live_node_is_read_with_what_its_write_ahead_log_holds(hier: SyntheticRun) -> None:
    store = SqliteStateStore(hier.path / "nodes" / "agg-eu" / STATE_FILE)  # a node running
    try:
        report = {**hier.regions["agg-eu"][-1], "round": 5}
        store.open_round(RoundRow(5, 1, "0" * 64, 1, {}, 0.0), [])
        store.close_round(5, 1, report=report, model=None, strategy_state={})
        wal = hier.path / "nodes" / "agg-eu" / (STATE_FILE + "-wal")
        assert wal.stat().st_size > 0
        eu = load_run(hier.path).regions["agg-eu"]
        assert [r.round for r in eu.rounds] == [1, 2, 3, 4, 5]
    finally:
        store.close()


def test_a_torn_last_line_is_skipped_and_left_alone(hier: SyntheticRun) -> None:
    rounds = hier.path / "rounds.jsonl"
    whole = rounds.read_bytes()
    rounds.write_bytes(whole + b'{"round": 5, "attem')
    run = load_run(hier.path)
    assert [r.round for r in run.coordinator.rounds] == [1, 2, 3, 3, 4]
    assert rounds.read_bytes().endswith(b'"attem')


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent", "no such folder"),
        (lambda p: p, "not a fedsov run folder (no rounds.jsonl)"),
    ],
    ids=["no-folder", "no-rounds"],
)
def test_not_a_run_folder_says_what_to_give(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(FedsovError, match=r"give") as caught:
        load_run(make(tmp_path))
    assert message in str(caught.value)


def test_a_bad_record_is_named_by_file_and_line(hier: SyntheticRun) -> None:
    rounds = hier.path / "rounds.jsonl"
    rounds.write_text(rounds.read_text() + '{"round": "x"}\n')
    with pytest.raises(FedsovError, match=r"rounds.jsonl line 6: not a round record"):
        load_run(hier.path)
    rounds.write_text("not json\n")
    with pytest.raises(FedsovError, match=r"rounds.jsonl line 1: not JSON"):
        load_run(hier.path)


def test_a_state_database_that_is_not_one_is_named(hier: SyntheticRun) -> None:
    db = hier.path / "nodes" / "agg-eu" / STATE_FILE
    db.write_bytes(b"not a database" * 100)
    os.utime(db)
    with pytest.raises(FedsovError, match=r"agg-eu/state/fedsov.db: cannot read its round"):
        load_run(hier.path)
