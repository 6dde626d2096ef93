"""One Prometheus registry per process, and the glue from ``statistics()`` to metrics.

Every process calls :func:`new_registry` once; its HTTP server (or the DNS's
metrics port) serves :func:`render_metrics` at ``/metrics``. Stateful objects
report on themselves with ``statistics()``; a :class:`StatisticsCollector`
turns those snapshots into metric families at scrape time, so the hot path
pays nothing. Names follow ``seedcast_<component>_<what>_<unit>``.
"""

from __future__ import annotations

import platform as _stdlib_platform
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from seedcast.version import version


def new_registry(component: str, name: str) -> CollectorRegistry:
    """A fresh registry with ``seedcast_build_info`` and ``process_*`` metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    registry.register(_BuildInfo(component, name))
    return registry


class _BuildInfo(Collector):
    def __init__(self, component: str, name: str) -> None:
        self._labels = {
            "version": version(),
            "component": component,
            "name": name,
            "python": _stdlib_platform.python_version(),
        }

    def collect(self) -> Iterable[Metric]:
        family = InfoMetricFamily("seedcast_build", "Seedcast version and role of this process")
        family.add_metric([], self._labels)
        yield family


class StatisticsCollector(Collector):
    """Calls ``produce()`` at scrape time; it yields metric families.

    Use it for gauges that mirror an object's state (cache bytes, peers
    connected): the object keeps plain counters, nothing is updated per event.
    """

    def __init__(
        self, registry: CollectorRegistry | None, produce: Callable[[], Iterable[Metric]]
    ) -> None:
        self._produce = produce
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        yield from self._produce()

    def describe(self) -> Iterable[Metric]:
        return []


def gauge(
    name: str, documentation: str, value: float, labels: dict[str, str] | None = None
) -> GaugeMetricFamily:
    """A one-sample gauge family, handy inside a StatisticsCollector."""
    labels = labels or {}
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
