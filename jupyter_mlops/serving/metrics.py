"""Prometheus metrics of one model server, in a registry of its own (several servers can share a process).

A server of several worker processes (workers.py) keeps its values in prometheus-client's multiprocess files, in
the folder the workers share: `/metrics`, whichever worker answers it, sums the counters and histograms of all of
them (those of a worker that died and was replaced included, so counters never go back), adds up the requests in
flight of the live ones, and gives each drift gauge's most recent value.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# fine buckets at the low end: a served prediction takes about a millisecond
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    def __init__(self, shared: str | None = None):
        """`shared`: the worker group's folder, when this process is one of several serving the same port."""
        self.shared = shared
        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_requests", "Requests answered", ["model", "version", "variant", "code"],
                                registry=self.registry)
        self.request_seconds = Histogram("mlops_request_seconds", "Time to answer a request",
                                         ["model", "version", "variant"], buckets=_BUCKETS, registry=self.registry)
        self.predict_seconds = Histogram("mlops_predict_seconds", "Time spent in predict", ["model", "version"],
                                         buckets=_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("mlops_requests_in_flight", "Requests being answered", registry=self.registry,
                               multiprocess_mode="livesum")
        self.shadow_rows = Counter("mlops_shadow_rows", "Rows a shadow answered, by agreement with the primary",
                                   ["model", "version", "agreement"], registry=self.registry)
        self.shadow_dropped = Counter("mlops_shadow_dropped", "Mirrored requests dropped: the shadow queue was full",
                                      registry=self.registry)
        self.log_dropped = Counter("mlops_request_log_dropped", "Request records dropped: the log queue was full",
                                   registry=self.registry)
        self.outliers = Counter("mlops_outliers", "Input rows far outside the training data (max |z| > 6)",
                                ["model", "version"], registry=self.registry)
        self.drifted = Gauge("mlops_drifted_features", "Features whose recent inputs drifted from the training data",
                             ["model", "version"], registry=self.registry, multiprocess_mode="livemostrecent")
        self.psi = Gauge("mlops_feature_psi", "Population stability index of a feature's recent inputs",
                         ["model", "version", "feature"], registry=self.registry, multiprocess_mode="livemostrecent")
        self._children: dict = {}
        self._predict: dict = {}

    def observe(self, model: str, version: str, variant: str, code: int, seconds: float) -> None:
        key = (model, version, variant, code)
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the increments: resolve each combination once
            children = self._children[key] = (self.requests.labels(model, version, variant, str(code)),
                                              self.request_seconds.labels(model, version, variant))
        children[0].inc()
        children[1].observe(seconds)

    def predict_timer(self, model: str, version: str):
        key = (model, version)
        if key not in self._predict:
            self._predict[key] = self.predict_seconds.labels(model, version)
        return self._predict[key]

    def render(self) -> tuple[bytes, str]:
        if self.shared is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, path=self.shared)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST
