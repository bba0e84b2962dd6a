"""``compliance_report``: what a federation's ledgers show, per run folder, for a regulator.

Reads a run folder: every node's audit ledger (each one verified), the privacy
ledgers and the plan. Reports every update that crossed a border, whether the
plan allowed it and whether it was a secure aggregate, each node's secure
aggregation rounds, ε per site, region and jurisdiction, every refusal, and every
published model version. Under the run folder DIR it looks for:

- audit ledgers: ``**/<site>.audit.jsonl`` (sites), ``**/audit/ledger.jsonl``
  (coordinator, regional aggregators);
- privacy ledgers: ``**/*.privacy-ledger.jsonl`` (sites), ``**/site-level-ledger.jsonl``
  (regions);
- the plan: ``DIR/plan.toml``, unless one is given;
- certificates: ``DIR/pki/<node>/<node>.pem``, unless a folder is given. A ledger
  with a certificate is authenticated against it, one without only for integrity.

An ``update-received`` whose detail holds the sender's ``audit_head`` (``seq``,
``sha256``) is a checkpoint held elsewhere: the sender's ledger must still contain it.

A crossing was a secure aggregate when the sending aggregator's ledger records a
completed ``secure-aggregate`` of that round (for a site's own update: its upstream's
ledger, with the site among the survivors). Where the plan's
``[policy.secure_aggregation]`` binds a node, each aggregate it sent (or, the
coordinator, published) must have been one, of at least the plan's threshold.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsov.audit._chain import parse_line
from fedsov.audit._lines import read_lines
from fedsov.audit.checkpoint import Checkpoint
from fedsov.audit.record import AuditEvent, AuditRecord
from fedsov.audit.signing import load_certificates
from fedsov.audit.verify import recheck_with_checkpoints, verify_ledger
from fedsov.exceptions import AuditError
from fedsov.policy._compliance_markdown import render_markdown
from fedsov.policy.audit_check import at_least, crossing_rule, judge_crossing
from fedsov.policy.plan import Plan, Tier, load_plan
from fedsov.policy.rules.secure_aggregation import RULE as SECURE_RULE
from fedsov.policy.rules.secure_aggregation import SecureCrossing
from fedsov.privacy.report import privacy_report
from fedsov.randomness import REPRODUCIBLE_ENV

__all__ = [
    "REPORT_FORMAT",
    "compliance_report",
    "find_ledgers",
    "render_json",
    "render_markdown",
]

REPORT_FORMAT = 1

_REFUSALS = (AuditEvent.task_declined, AuditEvent.policy_refused)


def find_ledgers(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """The audit ledgers and the privacy ledgers under ``run_dir``, each sorted."""
    audit = {*run_dir.rglob("*.audit.jsonl")}
    audit.update(p for p in run_dir.rglob("ledger.jsonl") if p.parent.name == "audit")
    privacy = {*run_dir.rglob("*.privacy-ledger.jsonl"), *run_dir.rglob("site-level-ledger.jsonl")}
    return sorted(p for p in audit if p.is_file()), sorted(p for p in privacy if p.is_file())


def compliance_report(
    run_dir: Path, *, plan: Path | None = None, pki: Path | None = None
) -> dict[str, Any]:
    """The compliance report of the federation run in ``run_dir``, as JSON-ready data.

    ``report["ok"]`` is true when every ledger verifies, every node ran the same plan
    (the given one, if any) and every border crossing respects that plan's residency
    and export rules. AuditError (ConfigError, PKIError, DataError) for bad input: no
    such folder, no audit ledger in it, an unreadable plan, certificate or privacy ledger.
    """
    if not run_dir.is_dir():
        raise AuditError(f"{run_dir}: not a directory")
    audit_paths, privacy_paths = find_ledgers(run_dir)
    if not audit_paths:
        raise AuditError(
            f"{run_dir}: no audit ledgers found "
            "(looked for **/*.audit.jsonl and **/audit/ledger.jsonl)"
        )
    plan_path = plan if plan is not None else run_dir / "plan.toml"
    the_plan = load_plan(plan_path) if plan is not None or plan_path.is_file() else None
    cert_dir = pki if pki is not None else run_dir / "pki"

    records = {path: _read_records(path) for path in audit_paths}
    ledgers = _verify(run_dir, records, cert_dir)
    by_node: dict[str, list[AuditRecord]] = {}
    for rs in records.values():
        for r in rs:
            by_node.setdefault(r.node, []).append(r)
    jurisdiction_of = {n.name: n.jurisdiction for n in the_plan.nodes} if the_plan else {}
    jurisdiction_of.update({node: rs[0].jurisdiction for node, rs in by_node.items()})

    problems = [f"ledger {e['ledger']}: {e['finding']}" for e in ledgers if not e["ok"]]
    plan_info, plan_problems = _plan_section(the_plan, by_node)
    problems += plan_problems
    insecure = _insecure_nodes(by_node)
    problems += [
        f"{node} ran in the insecure reproducible mode ({REPRODUCIBLE_ENV}=1): its DP "
        "randomness came from public seeds, so its privacy guarantee does not hold"
        for node in insecure
    ]
    secured = _Secured.of(by_node, the_plan)
    crossings = _crossings(by_node, jurisdiction_of, the_plan, secured)
    for c in crossings:
        problems += [f"round {c['round']} {c['from']} -> {c['to']}: {v}" for v in c["violations"]]
    secure, secure_problems = _secure_aggregation(
        by_node, jurisdiction_of, the_plan, secured, crossings
    )
    problems += secure_problems
    privacy = _privacy(privacy_paths, the_plan, run_dir)
    everything = [r for rs in by_node.values() for r in rs]
    federations = sorted({row["federation"] for row in privacy["sites"] + privacy["regions"]})
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "run_dir": str(run_dir),
        "federation": the_plan.federation if the_plan else _only(federations),
        "federation_source": "plan" if the_plan else ("privacy ledgers" if federations else None),
        "plan": plan_info,
        "ok": not problems,
        "problems": problems,
        "summary": _summary(ledgers, crossings, the_plan),
        "plan_nodes_without_ledger": sorted(
            n.name for n in (the_plan.nodes if the_plan else ()) if n.name not in by_node
        ),
        "nodes": {n: jurisdiction_of[n] for n in sorted(by_node)},
        "insecure_reproducible_nodes": insecure,
        "ledgers": ledgers,
        "crossings": crossings,
        "secure_aggregation": secure,
        "privacy": privacy,
        "refusals": _by_round(_refusal(r) for r in everything if r.event in _REFUSALS),
        "models": _by_round(_model(r) for r in everything if r.event == AuditEvent.model_published),
    }
    safe: dict[str, Any] = _json_safe(report)
    return safe


def render_json(report: Mapping[str, Any]) -> str:
    """The report as indented JSON (what ``--json`` prints)."""
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)


def _read_records(path: Path) -> list[AuditRecord]:
    """The records that parse; verification reports the ones that do not."""
    lines, _ = read_lines(path, what="audit ledger")
    return [r for r in map(parse_line, lines) if isinstance(r, AuditRecord)]


def _held_checkpoints(records: Iterable[AuditRecord]) -> list[Checkpoint]:
    """The senders' ledger heads that receivers recorded with their updates."""
    held = []
    for r in records:
        head = r.detail.get("audit_head")
        if r.event == AuditEvent.update_received and r.peer and isinstance(head, dict):
            try:
                held.append(Checkpoint.from_dict({"node": r.peer, **head}))
            except ValueError:
                continue
    return held


def _verify(
    run_dir: Path, records: Mapping[Path, list[AuditRecord]], cert_dir: Path
) -> list[dict[str, Any]]:
    """Verify every ledger, against its certificate when there is one; a ledger that
    verifies alone is checked again with the checkpoints held by the other intact ledgers."""
    results = {}
    for path, rs in records.items():
        certs = _certificates(cert_dir, rs[0].node) if rs else []
        results[path] = verify_ledger(path, certificate=certs)
    held: dict[str | None, list[Checkpoint]] = {}
    for c in _held_checkpoints(r for path, rs in records.items() if results[path].ok for r in rs):
        held.setdefault(c.node, []).append(c)
    entries = []
    for path, alone in results.items():
        # the same bytes' signatures are not checked twice: only their hashes are needed
        result = recheck_with_checkpoints(alone, held.get(alone.node, ()))
        entries.append(
            {
                "ledger": _relative(path, run_dir),
                "node": result.node,
                "jurisdiction": result.jurisdiction,
                "records": result.records,
                "ok": result.ok,
                "authenticated": result.authenticated,
                "checkpoints_checked": result.checkpoints_checked,
                "finding": None if result.finding is None else str(result.finding),
                "notes": list(result.notes),
            }
        )
    return entries


def _certificates(cert_dir: Path, node: str | None) -> list[Any]:
    if node is None:
        return []
    for candidate in (cert_dir / node / f"{node}.pem", cert_dir / f"{node}.pem"):
        if candidate.is_file():
            return list(load_certificates(candidate))
    return []


def _plan_section(
    plan: Plan | None, by_node: Mapping[str, Sequence[AuditRecord]]
) -> tuple[dict[str, Any], list[str]]:
    used: dict[str, set[str]] = {}
    for node, rs in by_node.items():
        for r in rs:
            if r.plan_sha256 is not None:
                used.setdefault(r.plan_sha256, set()).add(node)
    info: dict[str, Any] = {
        "path": None if plan is None else str(plan.source),
        "sha256": plan.sha256 if plan else _only(sorted(used)),
        "recorded_by_nodes": {sha: sorted(nodes) for sha, nodes in sorted(used.items())},
    }
    problems = []
    if plan is not None:
        for sha, nodes in sorted(used.items()):
            if sha != plan.sha256:
                problems.append(
                    f"{', '.join(sorted(nodes))} ran plan {sha}, not {plan.source} ({plan.sha256})"
                )
    elif len(used) > 1:
        problems.append(f"the ledgers record {len(used)} different plans")
    return info, problems


def _insecure_nodes(by_node: Mapping[str, Sequence[AuditRecord]]) -> list[str]:
    """Nodes whose ledger records a start in the insecure reproducible mode."""
    return sorted(
        node
        for node, rs in by_node.items()
        if any(r.event == AuditEvent.insecure_reproducible_mode for r in rs)
    )


def _sites(detail: Mapping[str, Any]) -> tuple[int | None, list[str]]:
    """How many sites an update aggregates, and which ones when the detail lists them."""
    raw = detail.get("contributors")
    contributors = [str(c) for c in raw] if isinstance(raw, list) else []
    sites = detail.get("sites")
    if isinstance(sites, int) and not isinstance(sites, bool):
        return sites, contributors
    return (len(set(contributors)) if contributors else None), contributors


@dataclass(frozen=True)
class _Secured:
    """The ``secure-aggregate`` records of every ledger, by node and round."""

    events: Mapping[str, Mapping[int, Sequence[AuditRecord]]]
    ledgers: frozenset[str]  # the nodes whose ledger is here
    sites: frozenset[str]  # the plan's edge sites

    @classmethod
    def of(cls, by_node: Mapping[str, Sequence[AuditRecord]], plan: Plan | None) -> _Secured:
        events: dict[str, dict[int, list[AuditRecord]]] = {}
        for node, rs in by_node.items():
            for r in rs:
                if r.event == AuditEvent.secure_aggregate and r.round is not None:
                    events.setdefault(node, {}).setdefault(r.round, []).append(r)
        sites = {n.name for n in plan.nodes if n.tier is Tier.EDGE} if plan else set()
        return cls(events, frozenset(by_node), frozenset(sites))

    def rounds(self, node: str) -> list[AuditRecord]:
        """``node``'s secure rounds, in round order."""
        return [r for _, rs in sorted(self.events.get(node, {}).items()) for r in rs]

    def update(self, sender: str, receiver: str, rnd: int | None) -> tuple[bool | None, int | None]:
        """Whether ``sender``'s round-``rnd`` update to ``receiver`` was a completed secure
        aggregate (None: the ledger that would say so is not here), and the smallest
        threshold it was completed with."""
        if rnd is None:
            done: list[AuditRecord] = []
        else:
            own = self.events.get(sender, {}).get(rnd, ())
            summed = [  # a site's own masked update, in its upstream's secure sum
                r
                for r in self.events.get(receiver, {}).get(rnd, ())
                if sender in _listed(r.detail.get("survivors"))
            ]
            done = [r for r in (*own, *summed) if r.detail.get("completed") is True]
        if done:
            thresholds = [r.detail["threshold"] for r in done if _is_int(r.detail.get("threshold"))]
            return True, min(thresholds) if thresholds else None
        recorder = receiver if sender in self.sites else sender
        return (False if recorder in self.ledgers else None), None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _crossings(
    by_node: Mapping[str, Sequence[AuditRecord]],
    jurisdiction_of: Mapping[str, str],
    plan: Plan | None,
    secured: _Secured,
) -> list[dict[str, Any]]:
    """Every update that left a jurisdiction, as its sender or its receiver recorded it."""
    received = [r for rs in by_node.values() for r in rs if r.event == AuditEvent.update_received]
    matched: set[int] = set()
    out = []
    for rs in by_node.values():
        for s in rs:
            if s.event != AuditEvent.update_sent or s.peer is None:
                continue
            to_j = s.peer_jurisdiction or jurisdiction_of.get(s.peer)
            if to_j == s.jurisdiction and s.detail.get("border") is not True:
                continue
            match = next(
                (
                    r
                    for r in received
                    if (r.node, r.peer, r.round, r.content_sha256)
                    == (s.peer, s.node, s.round, s.content_sha256)
                    and id(r) not in matched
                ),
                None,
            )
            if match is not None:
                matched.add(id(match))
            got: bool | None = match is not None if s.peer in by_node else None
            out.append(_crossing(s, s.node, s.jurisdiction, s.peer, to_j, True, got, plan, secured))
    for r in received:
        from_j = r.peer_jurisdiction or jurisdiction_of.get(r.peer or "")
        if id(r) in matched or r.peer is None or from_j == r.jurisdiction:
            continue
        out.append(_crossing(r, r.peer, from_j, r.node, r.jurisdiction, False, True, plan, secured))
    out.sort(key=lambda c: (c["round"] is None, c["round"] or 0, c["from"], c["to"]))
    return out


def _crossing(
    record: AuditRecord,
    sender: str,
    from_j: str | None,
    receiver: str,
    to_j: str | None,
    sent: bool,
    received: bool | None,
    plan: Plan | None,
    secured: _Secured,
) -> dict[str, Any]:
    n, contributors = _sites(record.detail)
    dp = record.detail.get("dp")
    secure, threshold = secured.update(sender, receiver, record.round)
    crossing: dict[str, Any] = {
        "round": record.round,
        "from": sender,
        "from_jurisdiction": from_j,
        "to": receiver,
        "to_jurisdiction": to_j,
        "content_sha256": record.content_sha256,
        "task_id": record.detail.get("task_id"),
        "sites": n,
        "contributors": contributors,
        "dp": dict(dp) if isinstance(dp, dict) else None,
        "epsilon": record.epsilon,
        "delta": record.delta,
        "sent_recorded": sent,
        "received_recorded": received,
        "secure_aggregate": secure,
        "rule": None,
        "respects_plan": None,
        "violations": [],
    }
    if plan is None:
        return crossing
    crossing["rule"] = crossing_rule(plan, from_j)
    crossing["violations"] = judge_crossing(
        plan,
        SecureCrossing(
            sender, from_j, receiver, to_j, n, contributors, crossing["dp"], secure, threshold
        ),
    )
    crossing["respects_plan"] = not crossing["violations"]
    return crossing


def _secure_aggregation(
    by_node: Mapping[str, Sequence[AuditRecord]],
    jurisdiction_of: Mapping[str, str],
    plan: Plan | None,
    secured: _Secured,
    crossings: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each node that securely aggregated, or that the plan requires to: its rounds
    (protocol, threshold, how many survived; never a key), the rounds whose aggregate
    was not the secure one the plan requires, and the problems of those that crossed
    no border (a crossing is judged, and its problems listed, with the others)."""
    required: dict[str, int] = {}
    for entry in plan.nodes if plan else ():
        need = plan.secure_aggregation_for(entry.name) if plan else None
        if need is not None:
            required[entry.name] = need.threshold
    crossed = {(c["round"], c["from"], c["to"]) for c in crossings}
    rows, problems = [], []
    for node in sorted(set(secured.events) | set(required)):
        not_secure: list[int] = []
        if plan is not None and node in required:
            not_secure, found = _judge_aggregates(
                plan, node, by_node.get(node, ()), jurisdiction_of.get(node), secured, crossed
            )
            problems += found
        rows.append(
            {
                "node": node,
                "jurisdiction": jurisdiction_of.get(node),
                "required_threshold": required.get(node),
                "rounds": [_secure_round(r) for r in secured.rounds(node)],
                "rounds_not_secure": not_secure,
            }
        )
    return rows, problems


def _judge_aggregates(
    plan: Plan,
    node: str,
    records: Sequence[AuditRecord],
    jurisdiction: str | None,
    secured: _Secured,
    crossed: set[tuple[Any, Any, Any]],
) -> tuple[list[int], list[str]]:
    """The rounds whose aggregate ``node`` sent up (or, the coordinator, published) was
    not the secure aggregate the plan requires, and the problems of those that crossed
    no border."""
    not_secure, problems = set(), []
    for rnd, peer in _aggregates(records):
        receiver = peer or node
        secure, threshold = secured.update(node, receiver, rnd)
        crossing = SecureCrossing(
            node, jurisdiction, receiver, None, None, (), None, secure, threshold
        )
        findings = list(SECURE_RULE.judge(plan, crossing))
        if findings:
            not_secure.add(rnd)
        if (rnd, node, peer) not in crossed:
            where = f"{node} -> {peer}" if peer else node
            problems += [f"round {rnd} {where}: {f}" for f in findings]
    return sorted(not_secure), problems


def _aggregates(records: Iterable[AuditRecord]) -> list[tuple[int, str | None]]:
    """(round, upstream) of each aggregate a node sent up, or (the coordinator) published."""
    found: set[tuple[int, str | None]] = set()
    for r in records:
        if r.round is None:
            continue
        if r.event == AuditEvent.update_sent and r.peer is not None:
            found.add((r.round, r.peer))
        elif r.event == AuditEvent.model_published:
            found.add((r.round, None))
    return sorted(found, key=lambda x: (x[0], x[1] or ""))


def _secure_round(r: AuditRecord) -> dict[str, Any]:
    d = r.detail
    return {
        "round": r.round,
        "protocol": d.get("protocol"),
        "threshold": d.get("threshold"),
        "neighbours": d.get("neighbours"),
        "survivors": len(_listed(d.get("survivors"))),
        "dropped": len(_listed(d.get("dropped"))),
        "completed": d.get("completed") is True,
        "failure": d.get("failure") or None,
    }


def _summary(
    ledgers: Sequence[Mapping[str, Any]], crossings: Sequence[Mapping[str, Any]], plan: Plan | None
) -> dict[str, Any]:
    min_sites: dict[str, int | None] = {}
    for c in crossings:
        pair = f"{c['from_jurisdiction']}->{c['to_jurisdiction']}"
        n, seen = c["sites"], min_sites.get(pair)
        min_sites[pair] = n if seen is None else (seen if n is None else min(seen, n))
    only_k: bool | None = None
    if plan is not None:
        only_k = all(
            c["rule"] is not None and at_least(c["sites"], c["rule"]["min_sites"])
            for c in crossings
        )
    return {
        "ledgers": len(ledgers),
        "ledgers_ok": sum(1 for e in ledgers if e["ok"]),
        "ledgers_authenticated": sum(1 for e in ledgers if e["authenticated"]),
        "crossings": len(crossings),
        "crossings_respecting_plan": None
        if plan is None
        else sum(1 for c in crossings if c["respects_plan"]),
        "crossings_not_received": sum(1 for c in crossings if c["received_recorded"] is False),
        "crossings_not_sent": sum(1 for c in crossings if not c["sent_recorded"]),
        "only_aggregates_of_k_sites_crossed": only_k,
        "min_sites_per_jurisdiction_pair": dict(sorted(min_sites.items())),
    }


def _privacy(paths: Sequence[Path], plan: Plan | None, run_dir: Path) -> dict[str, Any]:
    """ε per site and region from the ledgers; with a plan, every edge site of it (one
    that released nothing, with ε 0 and no ledger)."""
    expected = {n.name: n.jurisdiction for n in plan.nodes if n.tier is Tier.EDGE} if plan else {}
    report = privacy_report(
        paths, expected_sites=expected, federation=plan.federation if plan else ""
    )
    budgets = plan.policy.budgets if plan is not None else None
    for row in report["sites"]:
        if row["ledger"] is not None:
            row["ledger"] = _relative(Path(row["ledger"]), run_dir)
        row["budget"] = budgets.site_epsilon if budgets else None
    for row in report["regions"]:
        row["ledger"] = _relative(Path(row["ledger"]), run_dir)
        row["budget"] = budgets.jurisdiction_epsilon.get(row["jurisdiction"]) if budgets else None
    for key in ("sites", "regions"):
        for row in report[key]:
            row["within_budget"] = (
                None if row["budget"] is None else row["epsilon"] <= row["budget"]
            )
    report["ledgers"] = [_relative(p, run_dir) for p in paths]
    return report


def _refusal(r: AuditRecord) -> dict[str, Any]:
    return {
        "node": r.node,
        "jurisdiction": r.jurisdiction,
        "event": r.event,
        "round": r.round,
        "peer": r.peer,
        "peer_jurisdiction": r.peer_jurisdiction,
        "code": r.decision,
        "reason": r.detail.get("reason"),
        "time": r.time,
    }


def _model(r: AuditRecord) -> dict[str, Any]:
    d = r.detail
    return {
        "node": r.node,
        "round": r.round,
        "sha256": r.content_sha256,
        "parent": d.get("parent"),
        "contributors": _listed(d.get("contributors")),
        "sites": d["sites"] if isinstance(d.get("sites"), int) else _listed(d.get("sites")),
        "regions": _listed(d.get("regions")),
        "metrics": dict(d["metrics"]) if isinstance(d.get("metrics"), dict) else {},
        "epsilon": r.epsilon,
        "plan_sha256": r.plan_sha256,
        "time": r.time,
    }


def _listed(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _by_round(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda x: (x["round"] is None, x["round"] or 0, x["node"]))


def _only(values: Sequence[str]) -> str | None:
    return values[0] if len(values) == 1 else None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _json_safe(value: Any) -> Any:
    """Lists for tuples, and "inf"/"nan" for floats JSON cannot hold (an unbounded ε)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
