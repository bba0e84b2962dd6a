"""The compliance report as Markdown: headings and tables a regulator can read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["render_markdown"]

_DP_KEYS = (
    ("noise_multiplier", "z"),
    ("clip", "clip"),
    ("max_grad_norm", "clip"),
    ("sample_rate", "q"),
    ("steps", "steps"),
    ("accountant", "accountant"),
)


def render_markdown(report: Mapping[str, Any]) -> str:
    """``compliance_report``'s result as a Markdown document."""
    out: list[str] = []
    _header(out, report)
    _summary(out, report)
    _ledgers(out, report["ledgers"])
    secure = report.get("secure_aggregation") or []
    _crossings(out, report["crossings"], secure=bool(secure))
    _secure_aggregation(out, secure)
    _privacy(out, report["privacy"])
    _refusals(out, report["refusals"])
    _models(out, report["models"])
    return "\n".join(out).rstrip() + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return " ".join(str(value).split()).replace("|", "\\|")


def _epsilon(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float | int) else _cell(value)


def _hash(value: str | None, *, full: bool = False) -> str:
    if not value:
        return "-"
    return f"`{value}`" if full else f"`{value[:16]}…`"


def _table(out: list[str], columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    out.append("| " + " | ".join(columns) + " |")
    out.append("|" + "|".join("---" for _ in columns) + "|")
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    out.append("")


def _header(out: list[str], report: Mapping[str, Any]) -> None:
    name = report["federation"] or "federation of unknown name"
    plan = report["plan"]
    out += [f"# Compliance report: {_cell(name)}", ""]
    where = f"{_cell(plan['path'])}, " if plan["path"] else "no plan file; as recorded, "
    verdict = "**COMPLIANT**" if report["ok"] else "**NOT COMPLIANT**"
    source = {"plan": "the plan", None: "neither plan nor privacy ledgers"}.get(
        report["federation_source"], report["federation_source"]
    )
    rows = [
        ("Federation", f"{_cell(name)} (from {source})"),
        ("Plan", where + (f"SHA-256 `{plan['sha256']}`" if plan["sha256"] else "SHA-256 unknown")),
        ("Run folder", _cell(report["run_dir"])),
        ("Figures", _figures(_cell(report["run_dir"]))),
        ("Generated", _cell(report["generated"])),
        ("Result", verdict),
    ]
    _table(out, ("", ""), rows)
    out += ["## Findings", ""]
    out += [f"- {_cell(p)}" for p in report["problems"]] or [
        "None: every ledger verifies, every node ran the plan, "
        "and every border crossing respects it."
    ]
    if report["plan"]["path"] is None:
        out.append("- No plan was found: crossings were not checked against export rules.")
    out.append("")


def _figures(run_dir: str) -> str:
    """Where the run's figures are (accuracy, ε vs budgets, participation, hierarchy)."""
    page = f"{run_dir.rstrip('/')}/report.html"
    return f"`{page}` (`fedsov report {run_dir} --html {page}`)"


def _summary(out: list[str], report: Mapping[str, Any]) -> None:
    s = report["summary"]
    out += [
        "## Summary",
        "",
        f"- Ledgers verified: {s['ledgers_ok']} of {s['ledgers']} "
        f"({s['ledgers_authenticated']} authenticated against the node's certificate)",
        f"- Border crossings: {s['crossings']}"
        + (
            ""
            if s["crossings_respecting_plan"] is None
            else f", {s['crossings_respecting_plan']} respecting the plan"
        )
        + f"; {s['crossings_not_received']} without a matching receipt, "
        f"{s['crossings_not_sent']} recorded only by the receiver",
        f"- Only aggregates of >= k sites crossed: "
        f"{_cell(s['only_aggregates_of_k_sites_crossed'])}",
    ]
    if report.get("secure_aggregation"):
        secure = sum(1 for c in report["crossings"] if c.get("secure_aggregate") is True)
        out.append(f"- Secure aggregates: {secure} of {s['crossings']} border crossings")
    if report["plan_nodes_without_ledger"]:
        out.append(
            f"- Nodes of the plan with no ledger here: {_cell(report['plan_nodes_without_ledger'])}"
        )
    out.append("")
    if s["min_sites_per_jurisdiction_pair"]:
        _table(
            out,
            ("from -> to", "smallest aggregate (sites)"),
            ((pair, _cell(n)) for pair, n in s["min_sites_per_jurisdiction_pair"].items()),
        )


def _ledgers(out: list[str], ledgers: Sequence[Mapping[str, Any]]) -> None:
    out += ["## Ledgers", ""]
    _table(
        out,
        ("node", "jurisdiction", "ledger", "records", "verified", "authenticated", "finding"),
        (
            (
                _cell(e["node"]),
                _cell(e["jurisdiction"]),
                f"`{_cell(e['ledger'])}`",
                str(e["records"]),
                _cell(e["ok"]),
                _cell(e["authenticated"]),
                _cell(e["finding"]),
            )
            for e in ledgers
        ),
    )


def _dp(dp: Mapping[str, Any] | None) -> str:
    if not dp:
        return "none recorded"
    params = [f"{label}={_cell(dp[key])}" for key, label in _DP_KEYS if key in dp]
    return f"{_cell(dp.get('level', '?'))}-level" + (f" ({', '.join(params)})" if params else "")


def _secure(value: bool | None) -> str:
    return "unknown" if value is None else _cell(value)


def _crossings(
    out: list[str], crossings: Sequence[Mapping[str, Any]], *, secure: bool = False
) -> None:
    """The crossings' table; with a "secure aggregate" column where a node securely
    aggregated or the plan requires one to."""
    out += ["## Border crossings", ""]
    if not crossings:
        out += ["No update left its jurisdiction.", ""]
        return
    rows = []
    for c in crossings:
        rule = c["rule"]
        rows.append(
            (
                _cell(c["round"]),
                f"{_cell(c['from'])} ({_cell(c['from_jurisdiction'])})",
                f"{_cell(c['to'])} ({_cell(c['to_jurisdiction'])})",
                _cell(c["sites"]),
                _cell(c["contributors"]),
                _dp(c["dp"]),
                _epsilon(c["epsilon"]),
                _cell(c["delta"]),
                _hash(c["content_sha256"]),
                "yes" if c["sent_recorded"] else "**no**",
                "unknown" if c["received_recorded"] is None else _cell(c["received_recorded"]),
                *((_secure(c.get("secure_aggregate")),) if secure else ()),
                "-"
                if rule is None
                else f">= {rule['min_sites']} sites"
                + (", site-level DP" if rule["site_dp"] else "")
                + ("" if rule["allow"] else ", export forbidden"),
                _cell(c["respects_plan"]),
            )
        )
    columns = (
        "round",
        "from",
        "to",
        "sites",
        "contributors",
        "DP",
        "ε",
        "δ",
        "content",
        "sent recorded",
        "received recorded",
        *(("secure aggregate",) if secure else ()),
        "plan rule",
        "respects plan",
    )
    _table(out, columns, rows)
    for c in crossings:
        for v in c["violations"]:
            out.append(f"- Round {_cell(c['round'])}, {c['from']} -> {c['to']}: {_cell(v)}")
    if any(c["violations"] for c in crossings):
        out.append("")


def _secure_rounds(rounds: Sequence[Mapping[str, Any]]) -> str:
    """One node's secure rounds in a line: survivors per round, never a key."""
    if not rounds:
        return "no secure aggregate recorded"
    protocols = ", ".join(sorted({_cell(r["protocol"]) for r in rounds}))
    given = {r["threshold"] for r in rounds if isinstance(r["threshold"], int)}
    thresholds = ", ".join(str(t) for t in sorted(given)) or "-"
    each = []
    for r in rounds:
        what = f"{r['survivors']} survivors" + (f", {r['dropped']} dropped" if r["dropped"] else "")
        if not r["completed"]:
            what = f"failed ({_cell(r['failure'])})"
        each.append(f"round {_cell(r['round'])}: {what}")
    return f"{protocols}, threshold {thresholds}; " + "; ".join(each)


def _secure_aggregation(out: list[str], nodes: Sequence[Mapping[str, Any]]) -> None:
    if not nodes:
        return
    out += ["## Secure aggregation", ""]
    for n in nodes:
        need = n["required_threshold"]
        line = f"- {_cell(n['node'])} ({_cell(n['jurisdiction'])}"
        line += f"; the plan requires threshold >= {need}): " if need is not None else "): "
        line += _secure_rounds(n["rounds"])
        if n["rounds_not_secure"]:
            line += f"; **not a secure aggregate** in round(s) {_cell(n['rounds_not_secure'])}"
        out.append(line)
    out.append("")


def _privacy(out: list[str], privacy: Mapping[str, Any]) -> None:
    out += ["## Privacy spent", ""]
    if not privacy["sites"] and not privacy["regions"]:
        out += ["No privacy ledger was found.", ""]
        return
    if privacy["sites"]:
        out += ["### Per site (its ledger: ε per record, or per dataset if update-level)", ""]
        _table(
            out,
            ("site", "jurisdiction", "rounds", "ε", "unit", "δ", "accountant", "budget", "within"),
            (
                (
                    _cell(r["site"]),
                    _cell(r["jurisdiction"]),
                    str(r["rounds"]),
                    _epsilon(r["epsilon"]),
                    _cell(r.get("unit", "record")),
                    _cell(r["delta"]),
                    _cell(r["accountant"]),
                    _cell(r["budget"]),
                    _cell(r["within_budget"]),
                )
                for r in privacy["sites"]
            ),
        )
    if privacy["regions"]:
        out += ["### Per region (site-level DP on what it exports)", ""]
        _table(
            out,
            ("region", "jurisdiction", "rounds", "ε", "δ", "budget", "within"),
            (
                (
                    _cell(r["region"]),
                    _cell(r["jurisdiction"]),
                    str(r["rounds"]),
                    _epsilon(r["epsilon"]),
                    _cell(r["delta"]),
                    _cell(r["budget"]),
                    _cell(r["within_budget"]),
                )
                for r in privacy["regions"]
            ),
        )
    out += ["### Per jurisdiction (the worst site and region)", ""]
    _table(
        out,
        ("jurisdiction", "sites", "max site ε", "regions", "max ε (site-level)"),
        (
            (
                _cell(j),
                str(g["sites"]),
                _epsilon(g["max_epsilon"]) if g["sites"] else "-",
                _cell(g.get("regions", 0)),
                _epsilon(g.get("max_site_level_epsilon")),
            )
            for j, g in privacy["jurisdictions"].items()
        ),
    )


def _refusals(out: list[str], refusals: Sequence[Mapping[str, Any]]) -> None:
    out += ["## Refusals", ""]
    if not refusals:
        out += ["No task was declined and no policy refusal was recorded.", ""]
        return
    _table(
        out,
        ("round", "recorded by", "event", "peer", "code", "reason"),
        (
            (
                _cell(r["round"]),
                f"{_cell(r['node'])} ({_cell(r['jurisdiction'])})",
                _cell(r["event"]),
                _cell(r["peer"]),
                _cell(r["code"]),
                _cell(r["reason"]),
            )
            for r in refusals
        ),
    )


def _models(out: list[str], models: Sequence[Mapping[str, Any]]) -> None:
    out += ["## Model versions", ""]
    if not models:
        out += ["No model version was published.", ""]
        return
    _table(
        out,
        ("round", "model", "parent", "contributors", "sites", "regions", "metrics"),
        (
            (
                _cell(m["round"]),
                _hash(m["sha256"], full=True),
                _hash(m["parent"], full=True),
                _cell(m["contributors"]),
                _cell(m["sites"]),
                _cell(m["regions"]),
                _cell(m["metrics"]),
            )
            for m in models
        ),
    )
