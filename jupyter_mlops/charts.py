"""Vega-Lite specs for the pictures people would rather look at than read: a sweep, a notebook's runs, runs side by
side, a deployment's traffic and its drift. Built here once, from plain data; `%mlops` shows them through
JupyterLab's own Vega-Lite renderer (`Chart` carries the MIME type) and the panel renders the same specs with it.
No plotting library: a spec is a dict. Colours are left to the renderer's theme, so the dark theme stays readable.
"""
from __future__ import annotations

import json
from typing import Any

MIME_TYPE = "application/vnd.vegalite.v5+json"
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
WIDTH = 320  # the plotting area of a chart in a notebook; the panel asks for what its width leaves (`sized`)
NARROW = 280  # below this, small multiples stack in one column instead of two
MAX_FEATURES = 12  # histograms in one monitor chart; the rest are named in its subtitle
BEST = "#e45756"  # the best trial: one colour that reads on light and dark backgrounds


class Chart:
    """A spec that Jupyter shows as a chart (and as a line of text where charts cannot be shown)."""

    def __init__(self, spec: dict, text: str):
        self.spec, self.text = spec, text

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {MIME_TYPE: self.spec, "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


def sized(spec: dict, width: int | None) -> dict:
    """The spec drawn `width` pixels wide (its plotting area) instead of WIDTH: every width scaled alike; small
    multiples in one column when that is narrow; titles cut to fit rather than overflow."""
    if not width or width == WIDTH:
        return spec
    factor = width / WIDTH

    def scale(node: Any, narrow_inner: bool = False) -> Any:
        if isinstance(node, list):
            return [scale(n, narrow_inner) for n in node]
        if not isinstance(node, dict):
            return node
        out = {}
        stacked = node.get("columns") == 2 and width < NARROW
        for key, value in node.items():
            if key == "width" and isinstance(value, (int, float)):
                out[key] = max(40, round(value * factor * (2 if narrow_inner else 1)))
            elif key == "columns" and stacked:
                out[key] = 1
            elif key == "data":  # values are data, not layout
                out[key] = value
            else:
                out[key] = scale(value, narrow_inner or (stacked and key in ("spec", "concat")))
        return out

    resized = scale(spec)
    resized["title"] = {**resized["title"], "limit": width + 80} \
        if isinstance(resized.get("title"), dict) else resized.get("title")
    return resized


def _spec(title: str, body: dict, subtitle: str | list[str] | None = None) -> dict:
    heading: dict[str, Any] = {"text": title, "anchor": "start"}
    if subtitle:
        heading["subtitle"] = subtitle
    return {"$schema": SCHEMA, "title": heading, **body,
            # legends below the chart: beside it they take the width a narrow panel does not have
            "config": {"view": {"stroke": None}, "axis": {"labelLimit": 120},
                       "legend": {"orient": "bottom", "direction": "horizontal"}}}


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)


def _log_scale(values: list) -> bool:
    """Values spread over two or more decades, all positive (C = 0.01 .. 100): read on a log axis."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 100


def _axis(field: str, values: list) -> dict:
    if _numeric(values):
        encoding = {"field": field, "type": "quantitative"}
        if _log_scale(values):
            encoding["scale"] = {"type": "log"}
        return encoding
    return {"field": field, "type": "nominal", "sort": None}


# -- a sweep ----------------------------------------------------------------------------------------------------
# Data fields have fixed names (`score`, `p0`, `p1`, ...) and the names people gave are titles: Vega-Lite reads a dot
# in a field name as a path, and metric names like `val.loss` exist.
def sweep(trials: list[dict], metric: str, maximize: bool = True, best: str | None = None,
          sweep_id: str | None = None) -> dict:
    """The metric against each swept parameter (one panel each), the best trial marked; with several numeric
    parameters also parallel coordinates (every trial one line across the parameters and the metric).
    `trials`: runs as the API gives them (id, status, params, metrics)."""
    swept = _varying(trials)
    fields = {name: f"p{i}" for i, name in enumerate(swept)}
    rows = [{"run": t["id"], "status": t["status"], "score": t["metrics"].get(metric), "best": t["id"] == best,
             **{fields[name]: t["params"].get(name) for name in swept}}
            for t in trials]
    scored = [r for r in rows if r["score"] is not None]
    subtitle = ([f"sweep {sweep_id}"] if sweep_id else []) + [f"{len(scored)} of {len(trials)} trials scored"] + \
        ([f"best {best} ({'highest' if maximize else 'lowest'} {metric})"] if best else [])
    y = {"field": "score", "type": "quantitative", "title": metric, "scale": {"zero": False}}
    tooltip = [{"field": "run"}, {"field": "score", "type": "quantitative", "format": ".4g", "title": metric}] + \
        [{"field": fields[n], "title": n} for n in swept]
    panels = []
    for name in swept or ["run"]:
        field = fields.get(name, "run")
        x = {**_axis(field, [r.get(field) for r in scored]), "title": name}
        best_only = [{"filter": "datum.best"}]
        panels.append({"width": WIDTH, "height": 160, "layer": [
            {"mark": {"type": "point", "filled": True, "size": 60, "opacity": 0.7},
             "encoding": {"x": x, "y": y, "tooltip": tooltip}},
            {"transform": best_only, "mark": {"type": "point", "shape": "diamond", "size": 220, "filled": True,
                                              "color": BEST},
             "encoding": {"x": x, "y": y, "tooltip": tooltip}},
            {"transform": best_only, "mark": {"type": "text", "dy": -14, "color": BEST, "fontWeight": "bold"},
             "encoding": {"x": x, "y": y, "text": {"value": "best"}}}]})
    body: dict[str, Any] = {"data": {"values": scored}, "concat": panels, "columns": 1}
    numeric = [n for n in swept if _numeric([r.get(fields[n]) for r in scored])]
    if len(numeric) >= 2:
        body = {"data": {"values": scored}, "vconcat": [{"concat": panels, "columns": 1},
                                                        _parallel({fields[n]: n for n in numeric}, metric)]}
    return _spec(f"{metric} by {', '.join(swept) or 'trial'}", body, subtitle)


def _varying(trials: list[dict]) -> list[str]:
    """The parameters whose value differs between trials: the swept ones."""
    names = dict.fromkeys(n for t in trials for n in t["params"])
    return [n for n in names if len({repr(t["params"].get(n)) for t in trials}) > 1]


def _parallel(parameters: dict[str, str], metric: str) -> dict:
    """Parallel coordinates over the fields in `parameters` (field -> name) and the score: each axis scaled to its
    own range (0 = its lowest value, 1 = its highest)."""
    names = {**parameters, "score": metric}
    label = " : ".join(f"datum.axis == {json.dumps(f)} ? {json.dumps(n)}" for f, n in names.items()) + " : ''"
    return {"width": WIDTH, "height": 160, "title": "every trial across the parameters",
            "transform": [{"window": [{"op": "count", "as": "trial"}]},
                          {"fold": list(names), "as": ["axis", "level"]},
                          {"joinaggregate": [{"op": "min", "field": "level", "as": "low"},
                                             {"op": "max", "field": "level", "as": "high"}], "groupby": ["axis"]},
                          {"calculate": "datum.high == datum.low ? 0.5 : "
                                        "(datum.level - datum.low) / (datum.high - datum.low)", "as": "scaled"},
                          {"calculate": label, "as": "name"}],
            "mark": {"type": "line", "opacity": 0.6},
            "encoding": {"x": {"field": "name", "type": "nominal", "sort": list(names.values()),
                               "title": "each axis from its lowest to highest", "axis": {"labelAngle": 0}},
                         "y": {"field": "scaled", "type": "quantitative", "axis": None},
                         "detail": {"field": "trial", "type": "nominal"},
                         "color": {"field": "score", "type": "quantitative", "title": metric},
                         "strokeWidth": {"condition": {"test": "datum.best", "value": 3}, "value": 1},
                         "tooltip": [{"field": "run"}, {"field": "name", "title": "axis"},
                                     {"field": "level", "title": "value"}]}}


# -- runs -------------------------------------------------------------------------------------------------------
def runs(rows: list[dict], metric: str, title: str | None = None) -> dict:
    """A metric across a notebook's runs, in the order they started; one colour per notebook when several."""
    points = [{"run": r["id"], "started": r["started"], "status": r["status"], "score": r["metrics"].get(metric),
               "notebook": (r.get("notebook") or "").rsplit("/", 1)[-1]}
              for r in rows if isinstance(r["metrics"].get(metric), (int, float))]
    notebooks = {p["notebook"] for p in points}
    encoding: dict[str, Any] = {
        "x": {"field": "started", "type": "temporal", "title": "started"},
        "y": {"field": "score", "type": "quantitative", "title": metric, "scale": {"zero": False}},
        "tooltip": [{"field": "run"}, {"field": "started", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                    {"field": "score", "type": "quantitative", "format": ".4g", "title": metric},
                    {"field": "notebook"}]}
    if len(notebooks) > 1:
        encoding["color"] = {"field": "notebook", "type": "nominal"}
    body = {"data": {"values": points}, "width": WIDTH, "height": 160,
            "mark": {"type": "line", "point": True}, "encoding": encoding}
    return _spec(title or f"{metric} across runs", body, f"{len(points)} runs with {metric}")


def compare(rows: list[dict]) -> dict:
    """Runs side by side: each metric one small bar chart (its own scale), a bar per run."""
    values = [{"run": r["id"], "metric": name, "value": value}
              for r in rows for name, value in r["metrics"].items() if isinstance(value, (int, float))]
    body = {"data": {"values": values}, "facet": {"field": "metric", "type": "nominal", "title": None},
            "columns": 2, "resolve": {"scale": {"y": "independent"}},
            "spec": {"width": WIDTH // 2, "height": 120, "mark": "bar",
                     "encoding": {"x": {"field": "run", "type": "nominal", "title": None, "sort": None},
                                  "y": {"field": "value", "type": "quantitative", "title": None},
                                  "color": {"field": "run", "type": "nominal", "legend": None},
                                  "tooltip": [{"field": "run"}, {"field": "metric"},
                                              {"field": "value", "format": ".4g"}]}}}
    return _spec(f"{len(rows)} runs side by side", body)


# -- a deployment -------------------------------------------------------------------------------------------------
def traffic(series: list[dict], shadows: list[dict] | None = None, title: str = "traffic") -> dict:
    """Requests per second, p50 and p99 latency and the share of traffic per variant over time; each shadow's
    agreement with the primary. `series`: one dict per time bucket and variant (time, variant, rps, p50, p99,
    share), as `serving.monitor.traffic` makes them."""
    x = {"field": "time", "type": "temporal", "title": None, "axis": {"format": "%H:%M:%S", "labelOverlap": True}}
    color = {"field": "variant", "type": "nominal"}
    latency = {"transform": [{"fold": ["p50", "p99"], "as": ["quantile", "ms"]}],
               "mark": {"type": "line", "point": True},
               "encoding": {"x": x, "y": {"field": "ms", "type": "quantitative", "title": "latency ms"},
                            "color": color, "strokeDash": {"field": "quantile", "type": "nominal"},
                            "tooltip": [{"field": "variant"}, {"field": "quantile"},
                                        {"field": "ms", "format": ".2f"}]},
               "width": WIDTH, "height": 110}
    charts: list[dict] = [
        {"mark": {"type": "line", "point": True}, "width": WIDTH, "height": 110,
         "encoding": {"x": x, "y": {"field": "rps", "type": "quantitative", "title": "requests/s"}, "color": color,
                      "tooltip": [{"field": "variant"}, {"field": "rps", "format": ".1f"}]}},
        latency,
        {"mark": "area", "width": WIDTH, "height": 80,
         "encoding": {"x": x, "y": {"field": "share", "type": "quantitative", "stack": "normalize",
                                    "title": "traffic share", "axis": {"format": "%"}}, "color": color}}]
    if shadows:
        charts.append({"data": {"values": shadows}, "mark": "bar", "width": WIDTH, "height": 24 * len(shadows),
                       "encoding": {"y": {"field": "shadow", "type": "nominal", "title": None},
                                    "x": {"field": "agreement", "type": "quantitative", "title": "shadow agreement",
                                          "scale": {"domain": [0, 1]}, "axis": {"format": "%"}},
                                    "tooltip": [{"field": "shadow"}, {"field": "agreement", "format": ".1%"},
                                                {"field": "compared"}]}})
    requests = sum(s["requests"] for s in series)
    body = {"data": {"values": series}, "vconcat": charts}
    return _spec(title, body, f"{requests:,} logged requests" if series else "no requests logged yet")


# -- monitoring ---------------------------------------------------------------------------------------------------
def monitor_drift(name: str, report: dict) -> dict:
    """The drift chart of a monitor report (`api.monitor`), titled with the model, its version and the window."""
    return drift(report["features"], title=f"{name} v{report['version']}: drift over the latest "
                                           f"{report['window_rows']:,} rows")


def drift(features: dict, title: str = "drift") -> dict:
    """Per feature, the training data's distribution against the live one (share of rows per bin, or per category),
    drifted features first, then by PSI; at most MAX_FEATURES, the others named in the subtitle."""
    order = sorted(features, key=lambda n: (not features[n]["drifted"], -(features[n].get("psi") or 0), n))
    shown = [n for n in order if features[n].get("histogram")][:MAX_FEATURES]
    values = []
    for name in shown:
        f = features[name]
        label = f"{name} (drifted)" if f["drifted"] else name
        for b in f["histogram"]:
            for source in ("training", "live"):
                values.append({"feature": label, "bin": b["bin"], "order": b["order"], "source": source,
                               "share": b[source]})
    left = len(order) - len(shown)
    subtitle = [f"{len(shown)} of {len(order)} features: drifted first, then by PSI"] + \
        ([f"not shown: {', '.join(order[len(shown):][:8])}{' ...' if left > 8 else ''}"] if left else [])
    labels = [f"{n} (drifted)" if features[n]["drifted"] else n for n in shown]
    body = {"data": {"values": values},
            "facet": {"field": "feature", "type": "nominal", "title": None, "sort": labels},
            # xOffset resolved with x: shared, the pairs of bars were drawn a quarter of a pixel wide
            "columns": 2, "resolve": {"scale": {"x": "independent", "xOffset": "independent", "y": "independent"}},
            "spec": {"width": WIDTH // 2, "height": 90, "mark": {"type": "bar", "opacity": 0.85},
                     "encoding": {"x": {"field": "bin", "type": "ordinal", "sort": {"field": "order"},
                                        "title": None, "axis": {"labelAngle": -45, "labelLimit": 60}},
                                  "xOffset": {"field": "source"},
                                  "y": {"field": "share", "type": "quantitative", "title": None,
                                        "axis": {"format": "%"}},
                                  "color": {"field": "source", "type": "nominal", "title": None},
                                  "tooltip": [{"field": "bin"}, {"field": "source"},
                                              {"field": "share", "format": ".1%"}]}}}
    return _spec(title, body, subtitle)

