"""A-B statistics on the outcomes joined to a deployment's answers (feedback.py).

For each variant (primary, canary) and each version, `compare` gives:
- n: the rows judged for accuracy (a request of 20 rows judged by labels is 20 observations), the requests
  for a reward;
- the metric: `accuracy` (the share of labelled outcomes the prediction got right) or `reward` (the mean reward);
- its 95% interval: Wilson's for a share, Student's t for a mean.
Each variant is then set against the primary:
- the difference and its p-value: a two-proportion z-test when the outcomes are 0/1 (labels judged right or
  wrong, conversions), Welch's t-test otherwise;
- a verdict in words: better, worse, or no significant difference yet (at the 5% level, two-sided);
- about how many outcomes per variant it would take to see the observed difference with 80% power.

Peeking. A p-value is only what it claims when the sample size was fixed before looking. Checking after every
outcome and stopping at the first p < 0.05 finds "significant" differences that are not there far more often
than 5% of the time. So a test can declare its horizon, the outcomes per variant it will wait for
(`--horizon N`). Until every variant has them, a verdict is marked `interim` and is not a result. Without a
horizon the verdict says that the p-value assumes a fixed sample.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import MlopsError

ALPHA, POWER = 0.05, 0.80


def _units(outcome: dict, key: str) -> list[float]:
    """What one outcome adds to its variant's sample: for accuracy each judged row (right 1, wrong 0: exact, a
    share of a request's rows is not itself a 0/1 observation); for a reward, one value per request (the mean of
    a per-row list: repeating it per row would understate the spread)."""
    if key == "correct":
        rows = outcome.get("rows") or 1
        right = round(outcome["correct"] * rows)
        return [1.0] * right + [0.0] * (rows - right)
    return [outcome["reward"]]


def _interval(values: list[float], binary: bool) -> tuple[float, float]:
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if binary:  # Wilson: sound near 0 and 1 and for small n, unlike mean +- 1.96 se
        z = stats.norm.ppf(1 - ALPHA / 2)
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half
    if n < 2:
        return -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def two_proportions(a: list[float], b: list[float]) -> float:
    """The two-sided p-value of a pooled two-proportion z-test (b against a)."""
    from scipy import stats

    n1, n2 = len(a), len(b)
    p1, p2 = sum(a) / n1, sum(b) / n2
    pooled = (sum(a) + sum(b)) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * stats.norm.sf(abs(p2 - p1) / se))


def welch(a: list[float], b: list[float]) -> float:
    """The two-sided p-value of Welch's t-test (unequal variances)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return 1.0
    result = stats.ttest_ind(b, a, equal_var=False)
    return 1.0 if math.isnan(result.pvalue) else float(result.pvalue)


def needed(a: list[float], b: list[float], binary: bool) -> int | None:
    """Outcomes per variant to see the observed difference at ALPHA (two-sided) with POWER; None when there is
    no difference to see."""
    from scipy import stats

    z_alpha, z_beta = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)
    m1, m2 = sum(a) / len(a), sum(b) / len(b)
    delta = abs(m2 - m1)
    if delta == 0:
        return None
    if binary:
        pooled = (m1 + m2) / 2
        top = z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_beta * math.sqrt(m1 * (1 - m1) + m2 * (1 - m2))
        return math.ceil(top * top / (delta * delta))
    variance = sum(_var(x) for x in (a, b)) / 2
    return math.ceil(2 * (z_alpha + z_beta) ** 2 * variance / (delta * delta)) if variance else None


def _var(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def compare(outcomes: list[dict], metric: str | None = None, horizon: int | None = None) -> dict:
    """Per variant and version: n, the metric, its interval; against the primary: difference, p-value, verdict,
    outcomes still needed. `metric` defaults to accuracy when labels were sent, else reward."""
    if metric is None:
        metric = "accuracy" if any(o["kind"] == "label" for o in outcomes) else "reward"
    if metric not in ("accuracy", "reward"):
        raise MlopsError(f"--metric must be accuracy (labels) or reward (numbers), got `{metric}`")
    if horizon is not None and horizon < 2:
        raise MlopsError(f"--horizon {horizon}: the outcomes per variant the test waits for, at least 2")
    groups: dict[tuple[str, int], list[float]] = {}
    for outcome in outcomes:
        key = "correct" if metric == "accuracy" else "reward"
        if outcome[key] is not None:
            groups.setdefault((outcome["variant"], outcome["version"]), []).extend(_units(outcome, key))
    if not groups:
        raise MlopsError(f"no {'labelled' if metric == 'accuracy' else 'reward'} outcomes yet: send them to "
                         "POST /feedback with the answers' x-request-id")
    binary = all(v in (0.0, 1.0) for values in groups.values() for v in values)
    base_key = next((k for k in sorted(groups, key=lambda k: -len(groups[k])) if k[0] == "primary"), None)
    variants = []
    for (variant, version), values in sorted(groups.items(), key=lambda kv: (kv[0][0] != "primary", kv[0])):
        low, high = _interval(values, binary)
        entry: dict[str, Any] = {"variant": variant, "version": version, "n": len(values),
                                 "value": sum(values) / len(values), "low": low, "high": high}
        if base_key and (variant, version) != base_key:
            base = groups[base_key]
            p = two_proportions(base, values) if binary else welch(base, values)
            diff = entry["value"] - sum(base) / len(base)
            enough = needed(base, values, binary)
            verdict = ("better" if diff > 0 else "worse") if p < ALPHA else "no significant difference yet"
            early = horizon is not None and min(len(base), len(values)) < horizon
            entry.update(difference=diff, p_value=p, test="two-proportion z" if binary else "Welch t",
                         verdict=("interim: " if early else "") + verdict,
                         more_needed=max(0, enough - min(len(base), len(values))) if enough else None)
        variants.append(entry)
    return {"metric": metric, "binary": binary, "horizon": horizon, "baseline": base_key and
            {"variant": base_key[0], "version": base_key[1]}, "variants": variants,
            "note": None if horizon else "the p-values assume a sample size fixed in advance: declare one with "
                                         "--horizon N, or repeated looks will find differences that are not there"}
