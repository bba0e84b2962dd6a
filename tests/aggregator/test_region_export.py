"""What a region exports and accounts: no unnoised per-site values under site-level DP,
the population its sample was drawn from, and no over-selection with site-level DP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_two_tier import pki, region_config

from fedsov.aggregator import config as aggregator_config
from fedsov.aggregator.app import RegionalAggregator, dp_noise_seed, export_header
from fedsov.codec import encode
from fedsov.exceptions import ConfigError, FedsovError
from fedsov.messages import PrivacyReport, TrainingPlan, TrainTask
from fedsov.node.engine import RoundReport, SiteResult
from fedsov.pki import NodePaths
from fedsov.randomness import REPRODUCIBLE_ENV
from fedsov.strategy import SiteDPSettings

__all__ = ["pki"]  # the module-scoped fixture, shared with test_two_tier

SITE_DP = SiteDPSettings(clip=1.0, noise_multiplier=1.0)
PRIVACY = PrivacyReport(enabled=True, epsilon=0.5, delta=1e-5)


def accepted(site: str, examples: int, metrics: dict[str, float] | None = None) -> SiteResult:
    return SiteResult(site, f"t-{site}", "accepted", "", examples, PRIVACY, metrics or {})


def header(*, site_dp: bool, evaluated: bool = False):  # type: ignore[no-untyped-def]
    update = encode({"w": np.zeros(3, dtype=np.float32)})
    task = TrainTask("t", 4, "a" * 64, 1, update.manifest, TrainingPlan(1, 8, 0.1), 0.0, 1)
    evaluation = [
        {"eval/accuracy": 120.0, "eval/accuracy/n": 150.0},
        {"eval/accuracy": 30.5, "eval/accuracy/n": 37.0, "eval/loss": 9.0, "eval/loss/n": 37.0},
    ]
    sites = [
        accepted("s1", 150, evaluation[0] if evaluated else None),
        accepted("s2", 37, evaluation[1] if evaluated else None),
    ]
    return export_header(task, update, sites, privacy=PRIVACY, site_dp=site_dp)


def test_under_site_level_dp_the_export_counts_sites_not_examples() -> None:
    h = header(site_dp=True)
    assert h.num_examples == 2  # DP-FedAvg weighs every site once
    assert dict(h.metrics) == {"sites": 2.0}  # no max_site_epsilon, nor any other
    assert h.contributors == ("s1", "s2")


def test_without_site_level_dp_the_export_sums_the_published_counts() -> None:
    h = header(site_dp=False)
    assert h.num_examples == 187
    assert dict(h.metrics) == {"sites": 2.0}


def test_the_sites_federated_evaluation_sums_add_up_in_the_export() -> None:
    assert dict(header(site_dp=False, evaluated=True).metrics) == {
        "sites": 2.0,
        "eval/accuracy": 150.5,
        "eval/accuracy/n": 187.0,
        "eval/loss": 9.0,
        "eval/loss/n": 37.0,
    }
    # record- or dataset-level noise does not protect one whole site: not exported
    assert dict(header(site_dp=True, evaluated=True).metrics) == {"sites": 2.0}


def region(tmp_path: Path, pki: dict[str, NodePaths], **rounds: int) -> RegionalAggregator:
    config = region_config(tmp_path, pki["agg-a"], name="agg-a", upstream_port=1, site_dp=SITE_DP)
    return RegionalAggregator(replace(config, rounds=replace(config.rounds, **rounds)))


def report(sites: int, population: tuple[str, ...]) -> RoundReport:
    results = tuple(accepted(f"s{i}", 10) for i in range(sites))
    return RoundReport(1, 1, True, "b" * 64, 1.0, {}, results, population)


def test_a_round_is_accounted_over_the_population_it_was_drawn_from(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    agg = region(tmp_path, pki, sites_per_round=2)
    try:
        release = agg._release(report(2, tuple(f"s{i}" for i in range(5))), 1.0)
        assert (release.sites, release.population) == (2, 5)
        old = agg._release(report(2, ()), 1.0)  # stored by an older fedsov: no amplification
        assert (old.sites, old.population) == (2, 2)
    finally:
        agg.engine.state.close()


def test_over_selection_is_refused_with_site_level_dp(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    with pytest.raises(FedsovError, match=r"agg-a\.toml: rounds\.over_select must be 0 with"):
        region(tmp_path, pki, sites_per_round=2, over_select=1)


AGGREGATOR_TOML = """
[aggregator]
name = "agg-a"
[federation]
name = "fed"
[server]
address = "127.0.0.1:0"
insecure = true
[upstream]
address = "127.0.0.1:1"
insecure = true
[model]
factory = "fedsov.simulation.models:mlp"
[rounds]
sites_per_round = 2
over_select = 1
"""


def test_the_config_refuses_over_selection_with_site_dp(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(AGGREGATOR_TOML)
    assert aggregator_config.load(path).rounds.over_select == 1  # plain FedAvg: allowed
    path.write_text(AGGREGATOR_TOML + "[site_dp]\nclip = 1.0\nnoise_multiplier = 1.0\n")
    with pytest.raises(ConfigError, match=r"agg\.toml: rounds\.over_select: must be 0 with"):
        aggregator_config.load(path)
    path.write_text(AGGREGATOR_TOML.replace("sites_per_round = 2\n", ""))
    with pytest.raises(ConfigError, match=r"rounds\.over_select: needs sites_per_round"):
        aggregator_config.load(path)
    path.write_text(
        AGGREGATOR_TOML.replace("sites_per_round = 2\n", "sites_per_round = 2\nmin_sites = 3\n")
    )
    with pytest.raises(ConfigError, match=r"rounds\.sites_per_round: is 2, below min_sites = 3"):
        aggregator_config.load(path)


def test_the_dp_noise_seed_is_secret_unless_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(AGGREGATOR_TOML)
    config = aggregator_config.load(path)
    monkeypatch.delenv(REPRODUCIBLE_ENV, raising=False)
    assert dp_noise_seed(config) != dp_noise_seed(config)  # 128 fresh bits each time
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")
    assert dp_noise_seed(config) == dp_noise_seed(config)
    assert 64 < dp_noise_seed(config).bit_length() <= 128  # 128 bits there too
    assert dp_noise_seed(config) != dp_noise_seed(replace(config, seed=1))
    assert dp_noise_seed(config) != dp_noise_seed(replace(config, name="agg-b"))


def test_the_export_claims_its_sites_training_seconds() -> None:
    update = encode({"w": np.zeros(3, dtype=np.float32)})
    task = TrainTask("t", 4, "a" * 64, 1, update.manifest, TrainingPlan(1, 8, 0.1), 0.0, 1)
    sites = [
        accepted("s1", 150, {"training_seconds": 1.5}),
        accepted("s2", 37, {"training_seconds": 0.7}),
    ]
    plain = export_header(task, update, sites, privacy=PRIVACY, site_dp=False, round_seconds=9.0)
    assert plain.metrics["training_seconds"] == pytest.approx(2.2)  # their sum
    # under site-level DP the sum would tell a site's size: the round's duration per site
    dp = export_header(task, update, sites, privacy=PRIVACY, site_dp=True, round_seconds=3.04)
    assert dp.metrics["training_seconds"] == pytest.approx(6.1)
    assert (
        "training_seconds"
        not in export_header(
            task, update, [accepted("s1", 150)], privacy=PRIVACY, site_dp=False
        ).metrics
    )  # nobody reported any
