"""``[strategy]`` in coordinator, aggregator and scenario files: the rule by name and its
settings, every mistake named by file and key before anything listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsov.aggregator import config as aggregator_config
from fedsov.config import StrategyConfig, dump_toml
from fedsov.coordinator import config as coordinator_config
from fedsov.exceptions import ConfigError
from fedsov.simulation.scenario import load_scenario
from fedsov.strategy import FedAdam, FedTrimmedAvg, strategy_from_config

ROOT = Path(__file__).resolve().parents[2]

COORDINATOR = """
[federation]
name = "f"
[server]
address = "127.0.0.1:0"
insecure = true
[model]
factory = "fedsov.simulation.models:mlp"
[rounds]
num_rounds = 2
min_sites = 3
"""

AGGREGATOR = """
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
"""


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_coordinator_names_its_rule_and_settings(tmp_path: Path) -> None:
    path = write(tmp_path, COORDINATOR + '[strategy]\nname = "fedadam"\neta = 0.01\ntau = 1\n')
    config = coordinator_config.load(path)
    assert config.strategy == StrategyConfig("fedadam", {"eta": 0.01, "tau": 1})
    strategy = strategy_from_config(config.strategy)
    assert isinstance(strategy, FedAdam)
    assert (strategy.eta, strategy.tau, strategy.beta_1) == (0.01, 1.0, 0.9)
    plain = coordinator_config.load(write(tmp_path, COORDINATOR))
    assert strategy_from_config(plain.strategy).name == "fedavg"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "fedadamm"', r"strategy\.name: unknown strategy 'fedadamm' \(known: bulyan, "),
        ('name = "dp-fedavg"', r"strategy\.name: dp-fedavg is configured by \[site_dp\]"),
        ('name = "fedadam"\neta = -1.0', r"strategy\.eta: .*greater than 0, got -1\.0 \(fedadam\)"),
        ('name = "fedadam"\netaa = 0.1', r"strategy\.etaa: Unexpected keyword argument"),
        ('name = "fedtrimmedavg"\nbeta = 0.5', r"strategy\.beta: .*less than 0\.5"),
        ('name = "krum"\nnum_malicious_nodes = 1.5', r"strategy\.num_malicious_nodes: .*integer"),
        (
            'name = "bulyan"\nnum_malicious_nodes = 1',
            r"rounds\.min_updates: is 3, bulyan needs at least 7 updates a round",
        ),
    ],
)
def test_strategy_mistakes_name_file_and_key(tmp_path: Path, table: str, message: str) -> None:
    path = write(tmp_path, COORDINATOR + f"[strategy]\n{table}\n")
    with pytest.raises(ConfigError, match=rf"c\.toml: {message}"):
        coordinator_config.load(path)


def test_an_aggregator_takes_a_rule_but_not_beside_site_dp(tmp_path: Path) -> None:
    path = write(tmp_path, AGGREGATOR + '[strategy]\nname = "fedtrimmedavg"\nbeta = 0.1\n')
    config = aggregator_config.load(path)
    assert isinstance(strategy_from_config(config.strategy), FedTrimmedAvg)
    path.write_text(path.read_text() + "[site_dp]\nclip = 1.0\nnoise_multiplier = 1.0\n")
    with pytest.raises(ConfigError, match=r"strategy\.name: is 'fedtrimmedavg'; \[site_dp\]"):
        aggregator_config.load(path)


def test_a_scenario_passes_its_rule_to_the_coordinator(tmp_path: Path) -> None:
    text = (ROOT / "simulations" / "quickstart.toml").read_text()
    path = write(tmp_path, text + '\n[strategy]\nname = "fedmedian"\n', "s.toml")
    scenario = load_scenario(path)
    assert scenario.strategy == StrategyConfig("fedmedian")
    written = dump_toml({"strategy": scenario.strategy.table()})
    assert written == '[strategy]\nname = "fedmedian"\n'
    path.write_text(text + '\n[strategy]\nname = "bulyan"\nnum_malicious_nodes = 1\n')
    with pytest.raises(ConfigError, match=r"s\.toml: rounds\.min_sites: is 5, bulyan needs"):
        load_scenario(path)
