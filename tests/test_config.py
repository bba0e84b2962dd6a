"""Config files: the examples parse, and every mistake names its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsov.aggregator.config import RegionRounds
from fedsov.coordinator import config as coordinator_config
from fedsov.exceptions import ConfigError
from fedsov.policy.plan import load_plan
from fedsov.simulation.scenario import is_plan, load_scenario
from fedsov.site import config as site_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_configs_and_scenarios_load() -> None:
    coord = coordinator_config.load(ROOT / "sites" / "coordinator.example.toml")
    assert coord.rounds.min_updates == 3 and coord.server.tls is not None
    assert coord.rounds.over_select == 0
    assert (coord.rounds.max_update_norm, coord.rounds.max_examples) == (1000.0, 10_000_000)
    site = site_config.load(ROOT / "sites" / "site-1.example.toml")
    assert site.name == "site-1" and site.privacy.noise_multiplier == 2.0
    assert site.upstream.tls is not None
    assert site.upstream.tls.ca == (ROOT / "pki" / "ca.pem").resolve()
    for scenario in (ROOT / "simulations").glob("*.toml"):
        loaded = load_plan(scenario) if is_plan(scenario) else load_scenario(scenario)
        assert loaded.rounds.num_rounds >= 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


BASE = """
[federation]
name = "f"
[server]
address = "127.0.0.1:0"
insecure = true
[model]
factory = "fedsov.simulation.models:mlp"
[rounds]
num_rounds = 2
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE.replace("num_rounds = 2", "num_round = 2"),
            r"rounds\.num_rounds: is required \(found 'num_round': a typo\?\)",
        ),
        (BASE.replace("num_rounds = 2", "num_rounds = 0"), r"rounds\.num_rounds: must be >= 1"),
        (
            BASE.replace("num_rounds = 2", 'num_rounds = "2"'),
            r"rounds\.num_rounds: must be an integer",
        ),
        (
            BASE.replace('address = "127.0.0.1:0"', 'address = "nowhere"'),
            r"server\.address: must look like host:port",
        ),
        (
            BASE.replace("insecure = true\n", ""),
            r"server\.cert: is required: mTLS is on by default",
        ),
        (BASE.replace("[model]", "[modle]"), r"model: is required"),
        (
            BASE + "min_sites = 2\nmin_updates = 3\n",
            r"rounds\.min_updates: is 3, above min_sites = 2",
        ),
        (
            BASE + "over_select = 2\n",
            r"rounds\.over_select: needs sites_per_round",
        ),
        (BASE + "max_update_norm = 0\n", r"rounds\.max_update_norm: must be > 0"),
        (BASE + "max_update_norm = inf\n", r"rounds\.max_update_norm: must be finite, got inf"),
        (BASE + "max_examples = 0\n", r"rounds\.max_examples: must be >= 1"),
        ("[federation\n", "invalid TOML"),
        (
            BASE + "max_atempts = 2\n",
            r"\[rounds\]: unknown key 'max_atempts' \(did you mean 'max_attempts'\?\)",
        ),
    ],
)
def test_coordinator_config_errors_name_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        coordinator_config.load(path)
    assert str(path) in str(info.value)


def test_update_bounds_are_on_by_default_and_configurable(tmp_path: Path) -> None:
    default = coordinator_config.load(write(tmp_path, BASE)).rounds
    assert (default.max_update_norm, default.max_examples) == (1000.0, 10_000_000)
    text = BASE + "max_update_norm = 50\nmax_examples = 400\n"
    rounds = coordinator_config.load(write(tmp_path, text)).rounds
    assert (rounds.max_update_norm, rounds.max_examples) == (50.0, 400)
    region = RegionRounds()  # a regional aggregator's [rounds]: the same bounds
    assert (region.max_update_norm, region.max_examples) == (1000.0, 10_000_000)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config file"):
        coordinator_config.load(tmp_path / "nope.toml")
