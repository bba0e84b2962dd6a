"""The coordinator's schedule: rounds 1..N over the node's round runner, retried.

A regional aggregator runs the same ``Engine`` one round per upstream task; only the
coordinator decides by itself which round runs next, how often a failed one is
retried, and what the sites are asked to train.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from fedsov.exceptions import FedsovError
from fedsov.messages import TrainingPlan
from fedsov.node.engine import Engine, EngineSettings, RoundReport

__all__ = ["Schedule", "ScheduledEngine"]

log = logging.getLogger("fedsov.coordinator")


@dataclass(frozen=True)
class Schedule:
    num_rounds: int
    max_attempts: int  # of each round, before the federation stops
    training: TrainingPlan  # what every site is asked to do each round

    def training_for(self, number: int) -> TrainingPlan:
        """Round ``number``'s plan: a federated evaluation (of the model it starts
        from) in rounds 1, 1 + evaluate_every, ... only."""
        t = self.training
        if not t.evaluate or (number - 1) % t.evaluate_every == 0:
            return t
        return replace(t, evaluate=False)


class ScheduledEngine(Engine):
    """A round runner that drives itself through ``schedule``, resuming stored state."""

    def __init__(self, settings: EngineSettings, schedule: Schedule, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.schedule = schedule
        self._prepared = False

    async def prepare(self) -> None:
        """Resume stored state, or store the initial model: before the node listens, so
        that a state it must refuse (another config's) stops it before anyone dials in.
        Raises ConfigError / StateError."""
        if self._prepared:
            return
        if not self.resume():
            initial_metrics: dict[str, float] = {}
            if self.evaluator is not None:
                initial_metrics = dict(await asyncio.to_thread(self.evaluator, self.model.arrays()))
            await asyncio.to_thread(self.store.save, self.model, {"metrics": initial_metrics})
        self._prepared = True

    async def run(self) -> list[RoundReport]:
        """Run every round, resuming stored state (``prepare``); returns the reports.

        Raises FedsovError if the federation stalls.
        """
        s = self.schedule
        await self.prepare()
        if self.model.round < s.num_rounds and self.state.open_round_row() is None:
            log.info("waiting for %d sites", self.settings.min_sites)
            await self.wait_for_sites(self.settings.min_sites, self.settings.start_timeout_s)
        try:
            for number in range(self.model.round + 1, s.num_rounds + 1):
                failed = sum(1 for r in self.reports if r.round == number and not r.completed)
                failure = ""
                for attempt in range(failed + 1, s.max_attempts + 1):
                    training = s.training_for(number)
                    report = await self.run_round(number, attempt=attempt, training=training)
                    if report.completed:
                        break
                    failure = report.failure
                else:
                    why = failure or (
                        f"fewer than min_updates = {self.settings.min_updates} updates "
                        "were accepted"
                    )
                    raise FedsovError(f"round {number} failed {s.max_attempts} times: {why}")
            self.finish(f"completed {s.num_rounds} rounds")
        except FedsovError as exc:
            self.finish(f"stopped: {exc}")
            raise
        # Cancelled (SIGTERM): sites are not told the federation finished; they
        # reconnect with backoff to the restarted coordinator, which resumes.
        return self.reports
