"""Many sites in one process: a site host multiplexes their sessions on one event loop.

Each hosted site is a whole :class:`~fedsov.site.agent.SiteAgent` built from its own
config: its own certificate and mTLS connection, plan checks, privacy ledger, budget
and audit trail. Only where it runs changes: the sites share one event loop, and their
training (the CPU-heavy part, run through ``asyncio.to_thread``) goes through one
thread, so a host trains one site at a time. DP-SGD forks torch's global RNG, which
two threads training at once would share; run more hosts for more parallelism
(``fedsov simulate`` with ``[simulation] mode = "virtual"`` runs a few per core).

A site that fails is logged and reported; the others go on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fedsov.exceptions import FedsovError
from fedsov.site import config as site_config
from fedsov.site.agent import SiteAgent

__all__ = ["HostedOutcome", "SiteNameFilter", "host_sites", "load_agents"]

log = logging.getLogger("fedsov.site.host")

# The hosted site a log record comes from (each site's task sets it; threads inherit it).
_SITE: contextvars.ContextVar[str] = contextvars.ContextVar("fedsov_site", default="")


class SiteNameFilter(logging.Filter):
    """Prefix each record with the hosted site it comes from: one log, many sites."""

    def filter(self, record: logging.LogRecord) -> bool:
        site = _SITE.get()
        if site and not getattr(record, "_fedsov_site", None):
            record.msg = f"{site}: {record.msg}"
            record._fedsov_site = site  # once, however many handlers see it
        return True


@dataclass(frozen=True)
class HostedOutcome:
    """How one hosted site ended: its rounds and ε, or the error that stopped it."""

    site: str
    rounds_trained: int
    epsilon: float
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "site": self.site,
            "rounds_trained": self.rounds_trained,
            "epsilon": self.epsilon,
            "error": self.error,
        }


def load_agents(configs: Sequence[Path]) -> list[SiteAgent]:
    """A SiteAgent per config, checked as ``fedsov site`` checks it (data fits the model,
    the plan allows it, the certificate names it); the first bad config stops them all
    here, before any site dials out, with its file named."""
    agents: list[SiteAgent] = []
    started = time.monotonic()
    for path in configs:
        try:
            agents.append(SiteAgent(site_config.load(path)))
        except FedsovError as exc:
            raise FedsovError(f"{path}: {exc}") from exc
    log.info("%d sites loaded in %.1f s", len(agents), time.monotonic() - started)
    return agents


async def _run_one(agent: SiteAgent) -> HostedOutcome:
    name = agent.config.name
    _SITE.set(name)  # this task's context: its records and its training thread's
    try:
        outcome = await agent.run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # one site's failure is its own; the others go on
        log.error("stopped: %s: %s", type(exc).__name__, exc)
        return HostedOutcome(name, agent.rounds_trained, agent.epsilon, f"{exc}")
    return HostedOutcome(name, outcome.rounds_trained, outcome.epsilon)


async def host_sites(agents: Sequence[SiteAgent]) -> list[HostedOutcome]:
    """Serve every agent's tasks until its upstream says the federation finished."""
    loop = asyncio.get_running_loop()
    trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="site-train")
    loop.set_default_executor(trainer)  # asyncio.to_thread: one site trains at a time
    tasks = [asyncio.create_task(_run_one(a)) for a in agents]  # each in its own context
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        trainer.shutdown(wait=False, cancel_futures=True)
