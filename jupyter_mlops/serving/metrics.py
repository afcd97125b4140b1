"""Prometheus metrics of one model server, in a registry of its own (several servers can share a process).

A server of several worker processes (workers.py) keeps its values in prometheus-client's multiprocess files, in
the folder the workers share: `/metrics`, whichever worker answers it, sums the counters and histograms of all of
them (those of a worker that died and was replaced included, so counters never go back), adds up the requests in
flight of the live ones, and gives each drift gauge's most recent value.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# fine buckets at the low end: a served prediction takes about a millisecond
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Drops:
    """Records a full queue dropped (the request log's, the shadows'): counted in Prometheus, and said in the
    server's log when it starts and then at most once a minute with how many since, so losing records under load
    does not go unnoticed by whoever reads the server's output rather than its metrics."""

    def __init__(self, counter, what: str, consequence: str, every: float = 60.0):
        self.counter, self.what, self.consequence, self.every = counter, what, consequence, every
        self.total = 0
        self._unsaid, self._said = 0, -float("inf")

    def add(self) -> None:
        self.total += 1
        self._unsaid += 1
        if self.counter is not None:
            self.counter.inc()
        now = time.monotonic()
        if now - self._said >= self.every:
            logging.getLogger("jupyter_mlops.serving").warning(
                "%s: %d record(s) dropped%s, its queue was full; %s", self.what, self._unsaid,
                "" if self._said < 0 else f" in the last {now - self._said:.0f} s", self.consequence)
            self._unsaid, self._said = 0, now


class _Ages:
    """The served versions' ages, computed when /metrics is read (a value that grows by itself is not stored)."""

    def __init__(self, served):
        self.served = served

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        labels = ["model", "version", "variant"]
        families = {key: GaugeMetricFamily(name, text, labels=labels) for key, name, text in (
            ("created", "mlops_model_age_seconds", "Seconds since the served version was registered"),
            ("data_time", "mlops_model_data_age_seconds",
             "Seconds since the newest data the version's training run read was written"),
            ("max_age", "mlops_model_max_age_seconds", "How old the version may get before it is stale"))}
        now = time.time()
        for model in self.served():
            values = (model.name, str(model.version), model.variant)
            for key, family in families.items():
                found = model.lineage.get(key)
                if found:
                    family.add_metric(values, found if key == "max_age" else now - found)
        yield from families.values()


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
        # for the Open Inference Protocol's statistics extension: inference requests only (not health or metadata)
        self.inference_rows = Counter("mlops_inference_rows", "Rows predicted", ["model", "version"],
                                      registry=self.registry)
        self.inference_seconds = Counter("mlops_inference_seconds", "Time answering inference requests, by outcome",
                                         ["model", "version", "outcome"], registry=self.registry)
        self.inference_requests = Counter("mlops_inference_requests", "Inference requests answered, by outcome",
                                          ["model", "version", "outcome"], registry=self.registry)
        self.last_inference = Gauge("mlops_last_inference_timestamp_seconds", "When the last inference was answered",
                                    ["model", "version"], registry=self.registry, multiprocess_mode="max")
        # feedback (feedback.py): outcomes joined per variant; accuracy = correct / labelled, mean reward = sum / n
        self.outcomes = Counter("mlops_feedback", "Outcomes joined to answers, by kind", ["model", "version",
                                "variant", "kind"], registry=self.registry)
        self.correct = Counter("mlops_feedback_correct", "Labelled outcomes that matched the prediction",
                               ["model", "version", "variant"], registry=self.registry)
        self.reward = Counter("mlops_feedback_reward", "The sum of reward outcomes (negative ones apart, in "
                              "mlops_feedback_loss)", ["model", "version", "variant"], registry=self.registry)
        self.loss = Counter("mlops_feedback_loss", "The sum of negative reward outcomes, as a positive number",
                            ["model", "version", "variant"], registry=self.registry)
        self._ages: _Ages | None = None
        self._children: dict = {}
        self._predict: dict = {}
        self._inference: dict = {}
        self._rows: dict = {}

    def observe(self, model: str, version: str, variant: str, code: int, seconds: float) -> None:
        key = (model, version, variant, code)
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the increments: resolve each combination once
            children = self._children[key] = (self.requests.labels(model, version, variant, str(code)),
                                              self.request_seconds.labels(model, version, variant))
        children[0].inc()
        children[1].observe(seconds)

    def inference(self, model: str, version: str, ok: bool, seconds: float) -> None:
        """An inference request answered (`ok`: 2xx), for the statistics extension."""
        key = (model, version, ok)
        children = self._inference.get(key)
        if children is None:
            outcome = "success" if ok else "fail"
            children = self._inference[key] = (self.inference_requests.labels(model, version, outcome),
                                               self.inference_seconds.labels(model, version, outcome),
                                               self.last_inference.labels(model, version))
        children[0].inc()
        children[1].inc(seconds)
        if ok:
            children[2].set(time.time())

    def rows(self, model: str, version: str, count: int) -> None:
        key = (model, version)
        child = self._rows.get(key)
        if child is None:  # once per version, as in observe(): a label lookup per request costs more than the count
            child = self._rows[key] = self.inference_rows.labels(model, version)
        child.inc(count)

    def statistics(self, versions: list[tuple[str, str]]) -> list[dict]:
        """The statistics extension's `model_stats` for each (model, version), from the metrics (every worker's,
        in a worker group). Durations in nanoseconds; `execution_count` counts predict calls, one per batch."""
        values: dict[tuple, float] = {}
        for family in self._collector().collect():
            for sample in family.samples:
                labels = sample.labels
                key = (sample.name, labels.get("model"), labels.get("version"), labels.get("outcome"))
                values[key] = values.get(key, 0.0) + sample.value

        def get(name: str, model: str, version: str, outcome: str | None = None) -> float:
            return values.get((name, model, version, outcome), 0.0)

        def duration(count: float, seconds: float) -> dict:
            return {"count": int(count), "ns": int(seconds * 1e9)}

        stats = []
        for model, version in versions:
            outcome = {o: duration(get("mlops_inference_requests_total", model, version, o),
                                   get("mlops_inference_seconds_total", model, version, o))
                       for o in ("success", "fail")}
            stats.append({
                "name": model, "version": version,
                "last_inference": int(get("mlops_last_inference_timestamp_seconds", model, version) * 1000),
                "inference_count": int(get("mlops_inference_rows_total", model, version)),
                "execution_count": int(get("mlops_predict_seconds_count", model, version)),
                "inference_stats": {**outcome, "queue": duration(0, 0), "compute_input": duration(0, 0),
                                    "compute_infer": duration(get("mlops_predict_seconds_count", model, version),
                                                              get("mlops_predict_seconds_sum", model, version)),
                                    "compute_output": duration(0, 0), "cache_hit": duration(0, 0),
                                    "cache_miss": duration(0, 0)},
                "batch_stats": []})
        return stats

    def outcome(self, model: str, version: str, variant: str, correct: float | None, reward: float | None) -> None:
        """One joined outcome: a label (`correct`, the share of its rows predicted right) or a `reward`."""
        self.outcomes.labels(model, version, variant, "label" if correct is not None else "reward").inc()
        if correct is not None:
            self.correct.labels(model, version, variant).inc(correct)
        elif reward >= 0:  # counters only go up: a refund is counted as a loss
            self.reward.labels(model, version, variant).inc(reward)
        else:
            self.loss.labels(model, version, variant).inc(-reward)

    def watch_ages(self, served) -> None:
        """`served()` gives the ServedModels whose ages /metrics shows (mlops_model_age_seconds, ...)."""
        if self._ages is None:
            self._ages = _Ages(served)
            if self.shared is None:
                self.registry.register(self._ages)
        self._ages.served = served

    def _collector(self):
        if self.shared is None:
            return self.registry
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, path=self.shared)
        if self._ages is not None:
            every_worker.register(self._ages)
        return every_worker

    def predict_timer(self, model: str, version: str):
        key = (model, version)
        if key not in self._predict:
            self._predict[key] = self.predict_seconds.labels(model, version)
        return self._predict[key]

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._collector()), CONTENT_TYPE_LATEST


# -- read from outside -------------------------------------------------------------------------------------------
def read_counters(url: str, name: str, timeout: float = 5.0) -> dict:
    """Per variant, from a running server's /metrics (every worker's, summed by the server): requests answered,
    those answered with an error (4xx/5xx), and the latency histogram's cumulative bucket counts (rollout.py)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as reply:
        text = reply.read().decode()
    found: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != name or "variant" not in labels:
                continue
            entry = found.setdefault(labels["variant"], {"requests": 0.0, "failed": 0.0, "buckets": {}})
            if sample.name == "mlops_requests_total":
                entry["requests"] += sample.value
                if int(labels["code"]) >= 400:
                    entry["failed"] += sample.value
            elif sample.name == "mlops_request_seconds_bucket":
                entry["buckets"][labels["le"]] = entry["buckets"].get(labels["le"], 0.0) + sample.value
    return found


def add_counters(into: dict, more: dict) -> dict:
    """`more`'s counts added to `into` (one variant's, as read_counters gives them): pods of one variant summed."""
    into["requests"] = into.get("requests", 0.0) + more["requests"]
    into["failed"] = into.get("failed", 0.0) + more["failed"]
    buckets = into.setdefault("buckets", {})
    for le, count in more["buckets"].items():
        buckets[le] = buckets.get(le, 0.0) + count
    return into
