"""The random k-regular masking graph and the default k."""

from __future__ import annotations

import math

import pytest

from fedsov.secagg.graph import auto_neighbours, random_graph


def names(n: int) -> list[str]:
    return [f"site-{i:03d}" for i in range(n)]


def check_regular(graph: dict[str, tuple[str, ...]], sites: list[str], k: int) -> None:
    assert sorted(graph) == sorted(sites)
    for site, neighbours in graph.items():
        assert len(neighbours) == k
        assert site not in neighbours
        assert list(neighbours) == sorted(set(neighbours))
        assert set(neighbours) <= set(sites)
        for other in neighbours:
            assert site in graph[other]  # symmetric


@pytest.mark.parametrize(("n", "k"), [(5, 2), (10, 4), (30, 8), (100, 28), (101, 28), (12, 10)])
def test_random_graph_is_k_regular_and_symmetric(n: int, k: int) -> None:
    sites = names(n)
    check_regular(random_graph(sites, k), sites, k)


def test_random_graph_is_connected() -> None:
    """A Harary graph on a permutation is a ring with chords: every site is reachable."""
    sites = names(60)
    graph = random_graph(sites, 4)
    seen, todo = {sites[0]}, [sites[0]]
    while todo:
        for other in graph[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    assert seen == set(sites)


def test_an_odd_k_is_rounded_up() -> None:
    sites = names(20)
    check_regular(random_graph(sites, 5), sites, 6)


@pytest.mark.parametrize(("n", "k"), [(1, 0), (2, 1), (5, 4), (5, 9), (10, 9), (10, 100)])
def test_complete_when_k_reaches_n_minus_one(n: int, k: int) -> None:
    sites = names(n)
    check_regular(random_graph(sites, k), sites, n - 1)


def test_duplicates_are_one_site_and_the_graph_is_random() -> None:
    sites = names(40)
    check_regular(random_graph([*sites, *sites[:5]], 6), sites, 6)
    graphs = {tuple(random_graph(sites, 6)[sites[0]]) for _ in range(8)}
    assert len(graphs) > 1  # a fresh secret permutation each time


def test_auto_neighbours() -> None:
    assert [auto_neighbours(n) for n in (0, 1, 2, 3, 10, 17)] == [0, 0, 1, 2, 9, 16]
    assert auto_neighbours(18) == 17  # every other site still
    assert (auto_neighbours(50), auto_neighbours(100), auto_neighbours(1000)) == (24, 28, 40)
    for n in range(18, 3000, 7):
        k = auto_neighbours(n)
        assert k <= n - 1
        assert k == n - 1 or k % 2 == 0
        assert k >= min(n - 1, 4 * math.log2(n))
        assert k <= 4 * math.log2(n) + 2
