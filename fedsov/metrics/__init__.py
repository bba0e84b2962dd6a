"""Prometheus metrics of every role (``prometheus-client``), served on ``[metrics]``.

Each role owns one registry (not the library's global one, so several nodes can live
in one test process): ``NodeMetrics`` for the serving side (coordinator, regional
aggregator), ``SiteMetrics`` for a site. ``serve_metrics`` exposes a registry over
HTTP at ``/metrics`` (the text exposition format). Names follow Prometheus'
conventions: ``fedsov_..._total`` counters, ``_seconds`` and ``_bytes`` units.
Labels are bounded: participant names come from admitted certificates, reasons are
reduced to their code (``reason_code``).
"""

from fedsov.metrics.http import MetricsServer, serve_metrics
from fedsov.metrics.labels import reason_code
from fedsov.metrics.node import NodeMetrics
from fedsov.metrics.site import SiteMetrics

__all__ = ["MetricsServer", "NodeMetrics", "SiteMetrics", "reason_code", "serve_metrics"]
