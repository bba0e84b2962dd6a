"""``fedsov report``: the page is self-contained, holds its figures, and errors say why."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

from PIL import Image
from synthetic_run import write_flat_run, write_hierarchical_run
from typer.testing import CliRunner

from fedsov.cli import app
from fedsov.policy.compliance import compliance_report, render_markdown
from fedsov.report import load_run, render_html, write_report

runner = CliRunner()
FIXTURE_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "v2" / "run"  # make_fixtures.py
PNG = b"\x89PNG\r\n\x1a\n"


def images(page: str) -> list[bytes]:
    found = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [base64.b64decode(data, validate=True) for data in found]


def test_the_page_is_self_contained_with_four_figures(tmp_path: Path) -> None:
    run = write_hierarchical_run(tmp_path / "run")
    out = tmp_path / "page.html"
    drawn = write_report(run.path, out)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    pngs = images(page)
    assert len(pngs) == page.count("<img ") == 4
    assert [s.png for s in drawn] == pngs
    for png in pngs:
        assert png.startswith(PNG)
        with Image.open(io.BytesIO(png)) as picture:
            assert picture.size[0] == 1200 and picture.size[1] > 200
    # nothing fetched from anywhere: every src and href is inline, no script, no stylesheet
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    for heading in ("Jurisdictions", "Hierarchy and border crossings", "Participation per round"):
        assert f"<h2>{heading}</h2>" in page
    assert "<td>aggregates of &gt;= 3 site(s), with site-level DP</td>" in page
    assert re.search(r"<th>Plan SHA-256</th><td><code>[0-9a-f]{64}</code>", page)


def test_a_flat_run_says_which_figures_do_not_apply(tmp_path: Path) -> None:
    flat = write_flat_run(tmp_path / "flat")
    page = render_html(load_run(flat.path))
    assert len(images(page)) == 3
    assert "No federation plan (plan.toml) in this run folder: a flat run" in page
    assert "No jurisdictions: a flat run has no plan" in page
    assert "none (a flat run)" in page


def test_the_command_writes_the_page(tmp_path: Path) -> None:
    run = write_hierarchical_run(tmp_path / "run")
    result = runner.invoke(app, ["report", str(run.path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {run.path / 'report.html'}: 4 figure(s)" in " ".join(result.output.split())
    out = tmp_path / "elsewhere" / "x.html"
    out.parent.mkdir()
    result = runner.invoke(app, ["report", str(run.path), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert len(images(out.read_text(encoding="utf-8"))) == 4


def test_the_command_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path), "--html", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    words = " ".join(result.stderr.split())
    assert f"error: {tmp_path}: not a fedsov run folder (no rounds.jsonl)" in words
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "x.html").exists()


def test_the_command_says_when_it_cannot_write(tmp_path: Path) -> None:
    run = write_flat_run(tmp_path / "flat")
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(app, ["report", str(run.path), "--html", str(blocked / "x.html")])
    assert result.exit_code == 2
    assert f"cannot write {blocked / 'x.html'}" in " ".join(result.stderr.split())


def test_fedsov_help_lists_the_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert re.search(r"report\s+Figures of a run as one HTML page", result.output)


def test_the_compliance_report_points_to_the_page(tmp_path: Path) -> None:
    run = Path(shutil.copytree(FIXTURE_RUN, tmp_path / "run"))  # reading may repair a ledger
    text = render_markdown(compliance_report(run))
    page = f"{run}/report.html"
    assert f"| Figures | `{page}` (`fedsov report {run} --html {page}`) |" in text
