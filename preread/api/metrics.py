"""Prometheus metrics of the API process: HTTP latencies by route, and on each scrape the job
store's jobs by state and queue depth; stage durations of jobs run in this process.

One :class:`ApiMetrics` per app, with its own registry (tests build several apps; the
process-global default registry would mix them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from preread.store import JobState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("fetch", "decode", "volume", "preprocess", "infer", "postprocess", "encode", "store")


class _AlertCollector(Collector):
    def __init__(self, open_alerts: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        self._open = open_alerts

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "preread_monitoring_alerts_open",
            "Open monitoring alerts (out-of-control metrics) by model version and metric",
            labels=["model", "version", "metric"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for key in self._open():
            counts[key] = counts.get(key, 0) + 1
        for (model, version, metric), n in sorted(counts.items()):
            gauge.add_metric([model, version, metric], n)
        yield gauge


class _StoreCollector(Collector):
    def __init__(self, counts: Callable[[], Mapping[JobState, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        counts = self._counts()
        jobs = GaugeMetricFamily("preread_jobs", "Jobs by state (job store)", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "preread_queue_depth", "Jobs waiting for a worker", value=counts.get(JobState.QUEUED, 0)
        )


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_seconds = Histogram(
            "preread_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.stage_seconds = Histogram(
            "preread_job_stage_duration_seconds",
            "Seconds per pipeline stage of jobs finished in this process",
            ["stage"],
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
        )
        self._store_collector: _StoreCollector | None = None
        self._alert_collector: _AlertCollector | None = None

    def watch_store(self, counts: Callable[[], Mapping[JobState, int]]) -> None:
        """Report ``counts()`` (jobs by state) at every scrape."""
        if self._store_collector is None:
            self._store_collector = _StoreCollector(counts)
            self.registry.register(self._store_collector)

    def watch_alerts(self, open_alerts: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        """Report ``open_alerts()`` ((model id, version, metric) of each open monitoring
        alert, :mod:`preread.monitoring`) at every scrape."""
        if self._alert_collector is None:
            self._alert_collector = _AlertCollector(open_alerts)
            self.registry.register(self._alert_collector)

    def observe_stages(self, timings: Mapping[str, float]) -> None:
        for stage in STAGES:
            if stage in timings:
                self.stage_seconds.labels(stage).observe(timings[stage])

    def render(self) -> bytes:
        return generate_latest(self.registry)
