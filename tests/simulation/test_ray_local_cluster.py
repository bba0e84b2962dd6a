"""The two-node Ray cluster on this machine that the ray backend's tests run on.

Two actors of one CPU each on a cluster of two one-CPU nodes must land on two nodes;
after the context manager exits, no process of the cluster is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'fedsov[ray]'")

from ray_local_cluster import cluster_processes, local_ray_cluster, ray_env

# Run as a driver in its own interpreter: this one keeps no Ray state between tests.
DRIVER = """
import json, sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1)
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()

actors = [Where.remote() for _ in range(2)]
nodes = ray.get([actor.node.remote() for actor in actors])
print(json.dumps({"actor_nodes": nodes, "cluster_nodes": [n["NodeID"] for n in ray.nodes()]}))
"""


def test_two_nodes_run_one_actor_each_and_stop_completely(tmp_path: Path) -> None:
    with local_ray_cluster(tmp_path, nodes=2, cpus_per_node=1) as address:
        assert address.startswith("127.0.0.1:")
        assert cluster_processes(tmp_path)  # sanity: the sweep sees the running cluster
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, address],
            capture_output=True,
            text=True,
            timeout=120,
            env=ray_env(tmp_path),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(set(seen["actor_nodes"])) == 2
    assert set(seen["actor_nodes"]) <= set(seen["cluster_nodes"])
    assert cluster_processes(tmp_path) == []
