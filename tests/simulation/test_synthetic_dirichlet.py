"""FedProx Synthetic for many sites: one IID pool, the test set held out, the rest split
with Dirichlet label skew, every site topped up to ``min_site_examples``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsov.exceptions import ConfigError
from fedsov.policy import load_plan
from fedsov.simulation.data_prep import write_site_data
from fedsov.simulation.datasets import make_synthetic, make_synthetic_pool
from fedsov.simulation.hierarchy import write_plan_data
from fedsov.simulation.partition import dirichlet_partition, iid_partition
from fedsov.simulation.scenario import DataPlan
from fedsov.site.data import DataSpec, load_local_data

SCALE = Path(__file__).resolve().parents[2] / "simulations" / "scale-1000.toml"


def pool_plan(sites: int, **keys: object) -> DataPlan:
    values: dict[str, object] = {
        "dataset": "synthetic",
        "partition": "dirichlet",
        "alpha": 0.5,
        "test_fraction": 0.2,
        "synthetic_samples": 6000,
        **keys,
    }
    return DataPlan(**values, sites=sites)  # type: ignore[arg-type]


def read(paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, path in paths.items():
        with np.load(path) as f:
            out[name] = (f["x"], f["y"])
    return out


def test_the_pool_is_fedprox_synthetic_iid_and_seeded() -> None:
    a = make_synthetic_pool(samples=500, seed=3)
    assert a.x.shape == (500, 60) and a.x.dtype == np.float32
    assert a.y.dtype == np.int64 and a.y.min() >= 0 and a.y.max() < 10
    b = make_synthetic_pool(samples=500, seed=3)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, make_synthetic_pool(samples=500, seed=4).x)
    # x ~ N(0, diag(j^-1.2)): the feature scales fall with j
    std = a.x.std(axis=0)
    assert std[0] == pytest.approx(1.0, rel=0.15) and std[-1] == pytest.approx(60**-0.6, rel=0.2)
    with pytest.raises(ConfigError, match="samples must be at least 1"):
        make_synthetic_pool(samples=0, seed=0)


def test_every_example_goes_to_one_site_or_the_test_set(tmp_path: Path) -> None:
    names = [f"s{i:03d}" for i in range(200)]
    paths, test_path = write_site_data(pool_plan(200), seed=5, names=names, directory=tmp_path)
    assert list(paths) == names
    sites = read(paths)
    test = read({"test": test_path})["test"]
    assert len(test[1]) == 1200  # test_fraction of the pool, held out centrally
    assert sum(len(y) for _, y in sites.values()) == 6000 - 1200
    rows = np.concatenate([test[0], *(x for x, _ in sites.values())])
    pool = make_synthetic_pool(samples=6000, seed=5)
    assert sorted(map(bytes, rows)) == sorted(map(bytes, pool.x))  # each example once
    assert min(len(y) for _, y in sites.values()) >= 10  # min_site_examples' default


def test_a_thousand_sites_at_alpha_half_are_split_with_skew(tmp_path: Path) -> None:
    """No Dirichlet(0.5) draw over 1,000 sites gives every site 10 examples, so redrawing
    would not end; one draw is topped up instead."""
    data = pool_plan(1000, synthetic_samples=30_000, min_site_examples=12)
    names = [f"s{i:04d}" for i in range(1000)]
    paths, _ = write_site_data(data, seed=1, names=names, directory=tmp_path)
    sizes = [len(y) for _, y in read(paths).values()]
    assert len(sizes) == 1000 and min(sizes) >= 12 and sum(sizes) == 24_000
    top_share = np.mean([np.bincount(y).max() / len(y) for _, y in read(paths).values()])
    labels = make_synthetic_pool(samples=30_000, seed=1).y
    iid_share = np.mean(
        [
            np.bincount(labels[p]).max() / len(p)
            for p in iid_partition(labels, num_sites=1000, seed=1)
        ]
    )
    assert top_share > iid_share + 0.1


def test_the_split_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    names = [f"s{i}" for i in range(50)]
    a = read(write_site_data(pool_plan(50), seed=2, names=names, directory=tmp_path / "a")[0])
    b = read(write_site_data(pool_plan(50), seed=2, names=names, directory=tmp_path / "b")[0])
    c = read(write_site_data(pool_plan(50), seed=3, names=names, directory=tmp_path / "c")[0])
    assert all(np.array_equal(a[n][0], b[n][0]) for n in names)
    assert not all(len(a[n][1]) == len(c[n][1]) and np.array_equal(a[n][0], c[n][0]) for n in names)


def test_too_small_a_pool_names_the_keys_to_change(tmp_path: Path) -> None:
    data = pool_plan(100, synthetic_samples=1000, min_site_examples=10)  # 800 to train
    with pytest.raises(ConfigError, match="raise synthetic_samples or lower min_site_examples"):
        write_site_data(data, seed=0, names=[f"s{i}" for i in range(100)], directory=tmp_path)


def test_synthetic_iid_still_gives_each_site_a_device(tmp_path: Path) -> None:
    data = DataPlan(
        dataset="synthetic", partition="iid", synthetic_alpha=0.5, synthetic_beta=0.5, sites=4
    )
    names = ["a", "b", "c", "d"]
    paths, _ = write_site_data(data, seed=9, names=names, directory=tmp_path)
    devices = make_synthetic(alpha=0.5, beta=0.5, num_devices=4, seed=9)
    total = [len(y) for _, y in read(paths).values()]
    assert total == [len(d) - max(round(len(d) * 0.2), 1) for d in devices]


def test_topping_up_moves_examples_and_keeps_a_cover() -> None:
    labels = np.repeat(np.arange(10), 300)
    parts = dirichlet_partition(labels, num_sites=200, alpha=0.1, seed=0, min_size=15, top_up=True)
    assert min(len(p) for p in parts) >= 15
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(3000))
    with pytest.raises(ConfigError, match="in 20 tries"):  # where redrawing does not end
        dirichlet_partition(labels, num_sites=200, alpha=0.1, seed=0, min_size=15, max_tries=20)


def test_topping_up_changes_nothing_when_the_draw_suffices() -> None:
    labels = np.repeat(np.arange(10), 100)
    drawn = dirichlet_partition(labels, num_sites=4, alpha=100.0, seed=7, max_tries=1)
    topped = dirichlet_partition(labels, num_sites=4, alpha=100.0, seed=7, top_up=True)
    assert all(np.array_equal(a, b) for a, b in zip(drawn, topped, strict=True))


def test_a_plan_of_node_groups_writes_one_file_per_site(tmp_path: Path) -> None:
    text = (
        SCALE.read_text().replace("count = 100", "count = 3").replace("min_site_examples = 32", "")
    )
    path = tmp_path / "small.toml"
    path.write_text(text)
    plan = load_plan(path)
    assert plan.simulation is not None and plan.simulation.synthetic_samples == 100_000
    files, test = write_plan_data(plan, tmp_path / "data")
    assert len(files) == 30 and "us3-3" in files
    site = load_local_data(DataSpec(path=files["us3-3"]))
    assert site.x.shape[1] == 60 and len(site) >= 10
    assert len(load_local_data(DataSpec(path=test))) == 10_000
