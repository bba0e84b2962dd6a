"""Privacy soak: a site with a budget of ε=3 never crosses it, however often it is killed.

The budgeted site is a real ``fedsov site`` process over mTLS; a companion site with
no budget (in-process, never killed) keeps rounds completing once the budgeted site
has stopped. Several runs of the same federation follow each other, each with a
fresh coordinator, all on the same site ledger, so ε composes across runs and
restarts. The budgeted site is SIGKILLed at random moments (seeded) just after a
release reached its ledger or just after it declined a task, and restarted. After
every kill and after every run the ledger is reopened, as the restarted site does,
and checked: complete lines only, no entry lost or rewritten, every update the
coordinator accepted from the site recorded, ε at most the budget.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsov.config import Backoff, ClientEndpoint, ModelConfig, PrivacyConfig, TlsPaths, write_toml
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.messages import TrainingPlan
from fedsov.modelref import build_model
from fedsov.node.engine import Engine, EngineSettings, SiteResult
from fedsov.node.model import GlobalModel, ModelStore, state_to_numpy
from fedsov.node.rounds import TaskStatus
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.privacy.accountant import MechanismStep
from fedsov.privacy.ledger import LedgerEntry, PrivacyLedger
from fedsov.simulation.datasets import load_digits
from fedsov.simulation.processes import tls_table
from fedsov.site.agent import SiteAgent
from fedsov.site.config import SiteConfig
from fedsov.site.data import DataSpec, save_npz
from fedsov.strategy import FedAvg
from fedsov.transport.server import RunningServer, start_server
from fedsov.transport.service import FederationService

FEDERATION = "soak-fed"
SITE = "site-budget"  # the process that is killed
HELPER = "site-helper"  # in-process, never killed, no DP: rounds go on without the site
# ~300 KB updates: an upload takes a few ms, so some kills land while it is in flight.
MODEL = ModelConfig("fedsov.simulation.models:mlp", {"in_features": 64, "hidden": 1024})

BUDGET = 3.0
EPS_RTOL = 1e-9  # two accountant runs over one history agree to rounding, not bits
DELTA = 1e-5
ACCOUNTANT = "pld"  # the site's default (replace-one)
EXAMPLES = 160
PLAN = TrainingPlan(local_epochs=1, batch_size=20, learning_rate=0.05)
RELEASE = MechanismStep(  # one round of the site: q = 1/ceil(160/20), 8 Poisson steps
    noise_multiplier=10.3125, sample_rate=1 / 8, steps=8
)
# σ for ε=3 after ~110 of the site's rounds (880 steps):
#   fedsov privacy noise --target-epsilon 3 --sample-rate 0.125 --steps 880
#   -> noise_multiplier 10.3125 (PLD, replace-one).
# The site therefore stops near round 110 of the 240, in the second run.

RUNS = 4
ROUNDS_PER_RUN = 60
KILLS_PER_RUN = 3
# Generous: no round waits for its deadline to fire. A killed site's task stays open
# and is pushed again to the restarted site, which answers it (trains, or declines).
ROUND_TIMEOUT_S = 30.0
START_TIMEOUT_S = 90.0  # min_sites = 2: each round waits for the restarted site
RUN_TIMEOUT_S = 300.0
SEED = 20240611


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec(SITE, Role.site, "EU"),
        NodeSpec(HELPER, Role.site, "EU"),
    ]
    return build_pki(tmp_path_factory.mktemp("pki"), federation=FEDERATION, nodes=nodes)


class SiteProcess:
    """``python -m fedsov site`` for the budgeted site; one log file per start."""

    def __init__(self, directory: Path, pki: NodePaths, data: Path) -> None:
        self.directory = directory
        self.pki = pki
        self.data = data
        self.ledger = directory / f"{SITE}.privacy-ledger.jsonl"  # the default place
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def config(self, port: int) -> Path:
        return write_toml(
            self.directory / "site.toml",
            {
                "site": {"name": SITE, "seed": 7, "device": "cpu"},
                "upstream": {
                    "address": f"127.0.0.1:{port}",
                    "server_name": "localhost",
                    **tls_table(self.pki),
                },
                "data": {"path": str(self.data)},
                "model": {"factory": MODEL.factory, "kwargs": MODEL.kwargs},
                "privacy": {
                    "budget_epsilon": BUDGET,
                    "noise_multiplier": RELEASE.noise_multiplier,
                    "max_grad_norm": 1.0,
                    "delta": DELTA,
                    "accountant": ACCOUNTANT,
                },
                "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5, "max_attempts": 100},
            },
        )

    def start(self, config: Path) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        args = ["site", "--config", str(config), "--log-level", "INFO"]
        with open(self.log(self.starts), "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fedsov", *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def log(self, start: int) -> Path:
        return self.directory / f"site-start-{start:02d}.log"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log(self.starts).read_text(errors="replace")[-chars:] if self.starts else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stop(self) -> None:
        """Kill whatever is still running (pass or fail)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)


@dataclass
class Soak:
    """What the soak observed, across runs."""

    results: list[tuple[int, int, SiteResult]] = field(default_factory=list)  # run, round, site
    engines: list[Engine] = field(default_factory=list)
    entries: list[LedgerEntry] = field(default_factory=list)  # ledger at the last check
    checks: int = 0
    kills: int = 0
    kill_moments: list[str] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)  # ledger ε at each check

    def accepted_ids(self) -> set[str]:
        """Every task of SITE the coordinators accepted so far, open rounds included."""
        ids = {r.task_id for _, _, r in self.results if r.site == SITE and r.status == "accepted"}
        for engine in self.engines:
            for report in engine.reports:
                ids |= {
                    s.task_id for s in report.sites if s.site == SITE and s.status == "accepted"
                }
            if engine.current is not None:
                record = engine.current.task_for_site(SITE)
                if record is not None and record.status is TaskStatus.ACCEPTED:
                    ids.add(record.task.task_id)
        return ids


def check_ledger(path: Path, soak: Soak, when: str, accepted: set[str]) -> None:
    """Reopen the ledger of the (dead) site as its next start will, and check it.

    ``accepted``: the site's tasks the coordinator had accepted by the time it died.
    """
    ledger = PrivacyLedger(path)  # cuts a torn last line, as the restarted site would
    raw = path.read_bytes() if path.exists() else b""
    assert raw == b"" or raw.endswith(b"\n"), f"{when}: ledger ends mid-line after reopening"
    entries = ledger.entries
    previous = soak.entries
    assert len(entries) >= len(previous), f"{when}: ledger shrank {len(previous)}->{len(entries)}"
    assert entries[: len(previous)] == previous, f"{when}: ledger entries lost or rewritten"
    recorded = {e.task_id for e in entries}
    missing = accepted - recorded
    assert not missing, f"{when}: accepted updates with no ledger entry: {sorted(missing)}"
    assert {(e.site, e.federation, e.accountant) for e in entries} <= {
        (SITE, FEDERATION, ACCOUNTANT)
    }
    assert len({e.dataset for e in entries}) <= 1, f"{when}: one dataset, one fingerprint"
    eps = ledger.epsilon(dataset_of(entries), delta=DELTA)
    assert eps <= BUDGET, f"{when}: ledger ε = {eps:.4f} > budget {BUDGET}"
    soak.entries = list(entries)
    soak.epsilons.append(eps)
    soak.checks += 1


def dataset_of(entries: list[LedgerEntry]) -> str:
    """The fingerprint of the site's data, as its ledger entries name it."""
    return entries[0].dataset if entries else ""


def site_declines(engine: Engine) -> int:
    """Tasks SITE declined in this run so far, the open round included."""
    n = sum(
        1 for rep in engine.reports for s in rep.sites if s.site == SITE and s.status == "declined"
    )
    if engine.current is not None:
        record = engine.current.task_for_site(SITE)
        if record is not None and record.status is TaskStatus.DECLINED:
            n += 1
    return n


def ledger_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def wait_until(
    cond: Callable[[], bool], stop: Callable[[], bool], *, poll: float = 0.01
) -> bool:
    """Poll ``cond`` until it holds (True) or ``stop`` does (False)."""
    while not cond():
        if stop():
            return False
        await asyncio.sleep(poll)
    return True


async def chaos(
    engine: Engine, site: SiteProcess, config: Path, rng: random.Random, soak: Soak, run: int
) -> None:
    """Kill the site a few times this run, each just after it released or declined."""

    def over() -> bool:
        return engine.finished is not None

    for _ in range(KILLS_PER_RUN):
        # Let a random number of rounds pass, then wait for the site's next act: a
        # release on disk (its upload leaves right after) or a refusal.
        after = len(engine.reports) + rng.randint(1, 10)
        if not await wait_until(lambda: len(engine.reports) >= after, over):  # noqa: B023
            return
        size, declines = ledger_size(site.ledger), site_declines(engine)
        acted = await wait_until(
            lambda: ledger_size(site.ledger) > size or site_declines(engine) > declines,  # noqa: B023
            over,
            poll=0.001,
        )
        if not acted:
            return
        what = "release" if ledger_size(site.ledger) > size else "decline"
        # Within 0-300 ms: a third at once (the upload is leaving), a third within 10 ms.
        delay = rng.choice((0.0, 0.01, 0.3)) * rng.random()
        await asyncio.sleep(delay)
        if over() or not site.alive():
            return
        await site.kill()
        soak.kills += 1
        soak.kill_moments.append(f"run {run} round {len(engine.reports) + 1}: {what}+{delay:.3f}s")
        accepted = soak.accepted_ids()
        await asyncio.to_thread(
            check_ledger, site.ledger, soak, f"after kill {soak.kills}", accepted
        )
        site.start(config)


def make_engine(tmp_path: Path, run: int) -> ScheduledEngine:
    initial = state_to_numpy(build_model(MODEL.factory, MODEL.kwargs, seed=run))
    return ScheduledEngine(
        EngineSettings(
            federation=FEDERATION,  # the same federation every run: ε composes
            min_sites=2,  # a round opens only once the (restarted) site is connected
            min_updates=1,  # the helper alone completes a round
            sites_per_round=0,
            round_timeout_s=ROUND_TIMEOUT_S,
            start_timeout_s=START_TIMEOUT_S,
            seed=run,
            heartbeat_s=1.0,
        ),
        Schedule(num_rounds=ROUNDS_PER_RUN, max_attempts=1, training=PLAN),
        initial=GlobalModel.from_arrays(initial, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / f"run-{run}" / "models"),
        work_dir=tmp_path / f"run-{run}" / "work",
    )


def helper_config(tmp_path: Path, pki: NodePaths, port: int, data: Path) -> SiteConfig:
    return SiteConfig(
        source=tmp_path / "helper.toml",
        name=HELPER,
        seed=3,
        device="cpu",
        upstream=ClientEndpoint(
            address=f"127.0.0.1:{port}",
            tls=TlsPaths(pki.cert, pki.key, pki.ca),
            server_name="localhost",
        ),
        data=DataSpec(path=data),
        model=MODEL,
        privacy=PrivacyConfig(noise_multiplier=0.0, max_grad_norm=1.0, delta=DELTA, enabled=False),
        backoff=Backoff(initial_s=0.1, max_s=0.5, max_attempts=100),
        ledger=tmp_path / "helper.privacy-ledger.jsonl",
    )


async def gather_or_cancel(*aws: Awaitable[Any]) -> list[Any]:
    """Await all; if one fails, cancel the others and raise its error."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def one_run(
    run: int,
    tmp_path: Path,
    pki: dict[str, NodePaths],
    site: SiteProcess,
    helper_data: Path,
    rng: random.Random,
    soak: Soak,
) -> None:
    c = pki["coordinator"]
    tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
    engine = make_engine(tmp_path, run)
    soak.engines.append(engine)
    server: RunningServer = await start_server(
        FederationService(engine, tls=tls), address="127.0.0.1:0", tls=tls
    )
    helper = SiteAgent(helper_config(tmp_path, pki[HELPER], server.port, helper_data))
    helper_run = asyncio.ensure_future(helper.run())
    try:
        config = site.config(server.port)
        site.start(config)
        await asyncio.wait_for(
            gather_or_cancel(engine.run(), chaos(engine, site, config, rng, soak, run)),
            RUN_TIMEOUT_S,
        )
        # Told the federation finished, the site (and the helper) leave by themselves.
        code = await site.wait_exit(60)
        assert code == 0, f"run {run}: site exited with {code}:\n{site.log_tail()}"
        await asyncio.wait_for(helper_run, 30)
    finally:
        helper_run.cancel()
        await asyncio.gather(helper_run, return_exceptions=True)
        await server.stop(0)
    soak.results += [(run, rep.round, s) for rep in engine.reports for s in rep.sites]
    soak.engines.remove(engine)
    check_ledger(site.ledger, soak, f"after run {run}", soak.accepted_ids())


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_budgeted_site_never_crosses_its_budget_across_runs_and_kills(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    digits = load_digits()
    site_data, helper_data = tmp_path / "site.npz", tmp_path / "helper.npz"
    save_npz(site_data, digits.subset(np.arange(EXAMPLES)))
    save_npz(helper_data, digits.subset(np.arange(EXAMPLES, EXAMPLES + 40)))
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    site = SiteProcess(site_dir, pki[SITE], site_data)
    rng = random.Random(SEED)
    soak = Soak()

    async def soak_runs() -> None:
        for run in range(1, RUNS + 1):
            await one_run(run, tmp_path, pki, site, helper_data, rng, soak)

    started = time.monotonic()
    try:
        asyncio.run(soak_runs())
    except BaseException as exc:
        exc.add_note(f"last site log ({site.log(site.starts)}):\n{site.log_tail()}")
        raise
    finally:
        site.stop()  # pass or fail, no process is left behind
    check_outcome(soak, site, wall=time.monotonic() - started)


def check_outcome(soak: Soak, site: SiteProcess, *, wall: float) -> None:
    """The whole soak, from the coordinators' reports and the site's ledger."""
    # Every round of every run completed (the helper's update suffices).
    rounds = [(run, number) for run, number, s in soak.results if s.site == HELPER]
    assert len(rounds) == RUNS * ROUNDS_PER_RUN == len(set(rounds))
    assert soak.kills >= 8, soak.kill_moments

    mine = [(run, number, s) for run, number, s in soak.results if s.site == SITE]
    assert len(mine) == RUNS * ROUNDS_PER_RUN  # min_sites = 2: the site got every round
    statuses = [s.status for _, _, s in mine]
    accepted = [s for _, _, s in mine if s.status == "accepted"]
    declined = [s for _, _, s in mine if s.status == "declined"]
    late = [s for _, _, s in mine if s.status == "late"]
    expected = {"accepted", "declined", "late"}  # never rejected: killed mid-upload is late
    odd = [(run, n, s.status, s.reason) for run, n, s in mine if s.status not in expected]
    assert not odd
    # A round is lost to a kill at most once per kill; nothing else was late.
    assert len(late) <= soak.kills

    # The site stopped, for good, across restarts and runs: once it declined a task
    # it never contributed again, and every refusal is for its budget.
    first = statuses.index("declined")
    assert "accepted" not in statuses[first:]
    assert all(s.reason.startswith("budget-exhausted: ") for s in declined), declined[0].reason
    last_run = [s.status for run, _, s in mine if run == RUNS]
    assert set(last_run) <= {"declined", "late"}
    assert last_run.count("declined") >= ROUNDS_PER_RUN - KILLS_PER_RUN
    # The budget ran out well inside the soak, not at its end.
    assert 80 <= first < (RUNS - 1) * ROUNDS_PER_RUN

    # What the coordinator was told: ε composed across runs and restarts, never above 3.
    reported = [s.privacy.epsilon for s in accepted if s.privacy is not None]
    assert len(reported) == len(accepted)
    assert reported == sorted(reported) and reported[-1] <= BUDGET

    # The ledger: every release on record, ε close to the budget and not above it,
    # and the release it refused would have crossed it.
    ledger = PrivacyLedger(site.ledger)
    assert ledger.entries == soak.entries
    ids = [e.task_id for e in ledger.entries]
    assert {s.task_id for s in accepted} <= set(ids)
    # Released, never accepted: killed before its update arrived; the round then closed
    # without it (late) or the restarted site found one more release over the budget.
    orphans = set(ids) - {s.task_id for s in accepted}
    assert orphans <= {s.task_id for s in [*late, *declined]}
    assert len(orphans) <= soak.kills
    assert {e.step for e in ledger.entries} == {RELEASE}
    data = dataset_of(ledger.entries)
    final = ledger.epsilon(data, delta=DELTA)
    after = ledger.epsilon(data, delta=DELTA, extra=[RELEASE])
    assert 2.5 < final <= BUDGET < after
    # ε values come from two accountant runs over the same history (the site's and this
    # ledger's): equal up to floating-point rounding, so compared with a tolerance.
    assert reported[-1] <= final or math.isclose(reported[-1], final, rel_tol=EPS_RTOL)
    assert math.isclose(max(soak.epsilons), final, rel_tol=EPS_RTOL)

    print(
        f"\nprivacy soak: {RUNS} runs x {ROUNDS_PER_RUN} rounds = {len(rounds)} rounds; "
        f"{soak.kills} kills, {site.starts} site starts, {soak.checks} ledger checks; "
        f"site accepted {len(accepted)}, declined {len(declined)} (first at round "
        f"{first + 1}), late {len(late)}; ledger {len(ids)} entries ({len(orphans)} never "
        f"accepted), ε {final:.4f} <= {BUDGET} < {after:.4f} with one more round; "
        f"wall {wall:.1f} s"
    )
    for moment in soak.kill_moments:
        print(f"  kill at {moment}")
    print(f"  ledger ε at each check: {', '.join(f'{e:.3f}' for e in soak.epsilons)}")
