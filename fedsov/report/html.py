"""The report page: one self-contained HTML file (figures inline as base64 PNG).

It references nothing outside itself (no script, stylesheet, font or image URL), so
it can be mailed, archived beside the run or opened offline. A figure that does not
apply to the run (no plan: no jurisdictions, no hierarchy) is replaced by a sentence
saying why.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from fedsov.fileio import write_atomic
from fedsov.report import figures
from fedsov.report.data import epsilon_data, metrics_data, participation_data
from fedsov.report.diagram import draw_hierarchy
from fedsov.report.hierarchy import hierarchy_data
from fedsov.report.overview import Header, JurisdictionRow, header_data, jurisdiction_rows
from fedsov.report.run import Run, load_run

__all__ = ["Section", "render_html", "sections", "write_report"]


@dataclass(frozen=True)
class Section:
    """One figure of the page: its PNG, or why there is none."""

    title: str
    caption: str
    png: bytes | None
    missing: str = ""  # said instead of the figure when png is None


def sections(run: Run) -> list[Section]:
    """The four figures of ``run``, in page order."""
    metrics = metrics_data(run)
    epsilon = epsilon_data(run)
    participation = participation_data(run)
    drawn = bool(participation.rows and participation.rounds)
    regions = " and each region's own model (dashed)" if len(metrics.accuracy) > 1 else ""
    if run.flat:
        privacy = (
            "The ε each site reported to the coordinator, round by round (its running "
            "total). A flat run has no plan, so no jurisdictions or budgets to draw."
        )
    else:
        privacy = (
            "Left: the ε each site reported to the node it sends to, round by round (its "
            "running total), against the plan's site budget. Right: per jurisdiction, the "
            "site-level ε its regions exported (solid) against its export budget (dashed), "
            "and its worst site's ε (dotted), which the site budget binds."
        )
    return [
        Section(
            "Accuracy and loss per round",
            f"The global model (black){regions}, each evaluated by its node on the held-out "
            "data it was given (in a simulation, the same central test set), for every "
            "completed round.",
            figures.draw_metrics(metrics) if metrics.accuracy or metrics.loss else None,
            "No completed round recorded an accuracy or a loss.",
        ),
        Section(
            "Privacy spent: ε against the budgets",
            privacy + " A person with records at two sites composes their ε.",
            figures.draw_epsilon(epsilon) if epsilon.sites else None,
            "No site reported an ε: differential privacy was off, or no round ran.",
        ),
        Section(
            "Participation per round",
            "Each participant's outcome in every round, at the tier where it takes part "
            "(a site at its regional aggregator, a region at the coordinator; the arrow "
            "names it): accepted, declined (a spent budget, a region below k), late, "
            "refused (rejected by the receiver) or absent (no task that round).",
            figures.draw_participation(participation) if drawn else None,
            "No round was recorded.",
        ),
        Section(
            "Hierarchy and border crossings",
            "The plan's nodes, coloured by jurisdiction. A red link crosses a border; its "
            "label is the export rule's k (the fewest sites an aggregate must hold to "
            "cross) and whether it must carry site-level DP. A dashed red link is one "
            "the plan forbids.",
            draw_hierarchy(hierarchy_data(run.plan)) if run.plan is not None else None,
            "No federation plan (plan.toml) in this run folder: a flat run, every site "
            "sending to the coordinator; there is no hierarchy or border to draw.",
        ),
    ]


def render_html(run: Run, drawn: Sequence[Section] | None = None) -> str:
    """The whole page for ``run`` (with its ``sections``, drawn here unless given)."""
    header = header_data(run)
    rows = jurisdiction_rows(run, epsilon_data(run))
    body = [_header(header), *_notes(run.notes), *_jurisdictions(rows, flat=run.flat)]
    body += [_section(s) for s in (sections(run) if drawn is None else drawn)]
    return _PAGE.format(title=escape(f"fedsov report: {header.federation}"), body="\n".join(body))


def write_report(run_dir: Path, out: Path) -> list[Section]:
    """Read ``run_dir``, write its page to ``out``; the sections on it. FedsovError
    when ``run_dir`` is not a run folder, OSError when ``out`` cannot be written."""
    run = load_run(run_dir)
    drawn = sections(run)
    write_atomic(out, render_html(run, drawn).encode("utf-8"))
    return drawn


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1240px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.3em; }}
h2 {{ font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
code {{ font-size: 0.9em; }}
figure {{ margin: 0.5em 0 1em 0; }}
figure img {{ width: 100%; max-width: 1200px; height: auto; display: block; }}
figcaption, p.note {{ color: #555; font-size: 0.9em; }}
p.missing {{ background: #fafafa; border: 1px dashed #bbb; padding: 0.8em; color: #555; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _header(h: Header) -> str:
    planned = f" of {h.rounds_planned} planned" if h.rounds_planned is not None else ""
    rows = [
        ("Federation", escape(h.federation)),
        ("Status", escape(h.status)),
        ("Rounds", f"{h.rounds_completed} completed ({h.attempts} attempts){planned}"),
        ("Final accuracy", _num(h.final_accuracy, 4)),
        (
            "Plan SHA-256",
            f"<code>{escape(h.plan_sha256)}</code>" if h.plan_sha256 else "none (a flat run)",
        ),
        ("Run folder", f"<code>{escape(h.run_dir)}</code>"),
        ("Generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    cells = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h1>fedsov run report: {escape(h.federation)}</h1>\n<table>\n{cells}\n</table>"


def _notes(notes: Sequence[str]) -> list[str]:
    return [f'<p class="note">Note: {escape(n)}</p>' for n in notes]


def _jurisdictions(rows: Sequence[JurisdictionRow], *, flat: bool) -> list[str]:
    out = ["<h2>Jurisdictions</h2>"]
    if not rows:
        why = "a flat run has no plan, so no jurisdictions" if flat else "the plan has none"
        return [*out, f'<p class="missing">No jurisdictions: {why}.</p>']
    head = (
        "jurisdiction",
        "aggregators",
        "sites",
        "max site ε",
        "site budget",
        "export ε (site-level)",
        "export budget",
        "may leave it",
        "may send to",
    )
    out.append("<table>\n<tr>" + "".join(f"<th>{escape(c)}</th>" for c in head) + "</tr>")
    for r in rows:
        cells = [
            escape(r.jurisdiction),
            escape(", ".join(r.aggregators) or "-"),
            f"{len(r.sites)}: {escape(', '.join(r.sites))}" if r.sites else "0",
        ]
        numbers = [r.max_site_epsilon, r.site_budget, r.export_epsilon, r.export_budget]
        text = [escape(r.exports), escape(", ".join(r.sends_to))]
        out.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "".join(f'<td class="num">{_num(v)}</td>' for v in numbers)
            + "".join(f"<td>{c}</td>" for c in text)
            + "</tr>"
        )
    out.append("</table>")
    return out


def _section(s: Section) -> str:
    title = f"<h2>{escape(s.title)}</h2>"
    if s.png is None:
        return f'{title}\n<p class="missing">{escape(s.missing)}</p>'
    data = base64.b64encode(s.png).decode("ascii")
    return (
        f'{title}\n<figure>\n<img alt="{escape(s.title)}" src="data:image/png;base64,{data}">\n'
        f"<figcaption>{escape(s.caption)}</figcaption>\n</figure>"
    )
