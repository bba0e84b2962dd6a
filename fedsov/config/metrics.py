"""``[metrics]``: a role's Prometheus endpoint (off without the table; loopback by default)."""

from __future__ import annotations

from fedsov.config.base import ConfigPath, Section, section
from fedsov.config.endpoint import Address

__all__ = ["METRICS_ADDRESS", "MetricsSettings"]

METRICS_ADDRESS = "127.0.0.1:9464"  # Prometheus' exporter port range; loopback only


@section
class MetricsSettings(Section):
    """Where ``GET /metrics`` is served. Any other address than loopback exposes the
    counters to whoever can reach it: put a scraper beside the node, or a proxy with TLS."""

    SECTION = "metrics"
    address: Address = METRICS_ADDRESS  # host:port; port 0 binds a free one (tests)
    port_file: ConfigPath | None = None  # the bound port, written once listening
