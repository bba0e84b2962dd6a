"""``fedsov report``: a run folder as one self-contained HTML page people can look at.

``run`` reads the folder (plan, summary, every tier's round records); ``data``,
``hierarchy`` and ``overview`` compute what each figure and table shows (pure, so
tests hold it against ``rounds.jsonl``); ``figures`` draws it with matplotlib, which
only it imports, inside its functions; ``html`` composes the page.
"""

from fedsov.report.html import Section, render_html, write_report
from fedsov.report.run import Run, load_run

__all__ = ["Run", "Section", "load_run", "render_html", "write_report"]
