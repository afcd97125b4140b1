"""The model registry: versions with lineage, quality gates, aliases with history.

A model version is a package folder `<workspace>/models/<name>/v<N>/`:
- `predict.pkl`: the serve step's `predict`, saved by the pipeline with cloudpickle together with everything it
  reads (the fitted model, feature names...);
- `schema.json`: the input columns and their types, from the training inputs;
- `reference.json`: statistics of the training inputs, the baseline for drift detection;
- `model.json`: lineage: run, notebook and its hash, parameters, metrics, a fingerprint of the training data.
"""
from __future__ import annotations

import hashlib
import json
import operator
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import MlopsError, a
from .names import check_name

_GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.-]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[-+0-9.eE]+)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}


class GateFailed(MlopsError):
    """A quality gate refused the model; nothing was registered."""


def parse_gate(text: str) -> tuple[str, str, float]:
    match = _GATE.match(text)
    if not match:
        raise MlopsError(f"gate `{text}` is not METRIC OP NUMBER; write e.g. --require \"accuracy>=0.9\" "
                         "(OP is one of >= <= > < == !=)")
    return match["metric"], match["op"], float(match["value"])


def check_gates(run: dict, gates: list[str]) -> list[str]:
    """The gates the run fails, each as `accuracy = 0.87, required >= 0.9`; an empty list passes."""
    failures = []
    for metric, op, threshold in (parse_gate(g) for g in gates):
        value = run["metrics"].get(metric)
        if value is None:
            logged = ", ".join(sorted(run["metrics"])) or "none"
            # a gate may name a metric that is no Python name (`val.loss`): then the call takes it as a string key
            call = f"{metric}={metric}" if metric.isidentifier() else f'**{{"{metric}": value}}'
            failures.append(f"{metric} was not logged by run {run['id']} (required {op} {threshold:g}; it logged: "
                            f"{logged}). A variable is not a metric until it is logged: in the step that computes "
                            f"it, `from jupyter_mlops import log_metrics; log_metrics({call})`, or tag that cell "
                            "`pipeline-metrics`")
        elif not _OPS[op](value, threshold):
            failures.append(f"{metric} = {value:.6g}, required {op} {threshold:g}")
    return failures


def _serve_step(pipeline) -> Any:
    serve = [s for s in pipeline.steps if s.kind == "serve"]
    if not serve:
        raise MlopsError("the notebook has no `serve` step: tag a cell `serve` that defines `def predict(X):`")
    return serve[0]


def _training_input(pipeline, artifacts: str) -> tuple[str, str, dict] | None:
    """(name, producing step, manifest entry) of the training features: the first table or array a train step
    reads (else the first one the serve step's producers saved)."""
    from .artifacts import read_manifest

    steps = [s for s in pipeline.steps if s.kind == "train"] or pipeline.steps
    for step in steps:
        for name, producer in step.inputs.items():
            entry = read_manifest(artifacts, producer).get(name, {})
            if entry.get("format") in ("parquet", "npy") or entry.get("type", "").startswith("pandas.core.frame"):
                return name, producer, entry
    return None


def describe_inputs(values: Any) -> tuple[list[dict], dict]:
    """Input schema (column names and types) and reference statistics of a table of training inputs."""
    import numpy as np
    import pandas as pd

    frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame(np.asarray(values))
    frame.columns = [str(c) for c in frame.columns]
    schema, reference = [], {"rows": int(len(frame)), "columns": {}}
    for column in frame.columns:
        series = frame[column]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        schema.append({"name": column, "type": str(series.dtype), "kind": "numeric" if numeric else "categorical"})
        if numeric:
            clean = series.dropna().astype(float)
            edges = np.unique(np.quantile(clean, np.linspace(0, 1, 11))) if len(clean) else np.array([])
            counts = np.histogram(clean, bins=edges)[0] if len(edges) > 1 else np.array([len(clean)])
            sample = clean.sample(min(len(clean), 1000), random_state=0) if len(clean) else clean
            reference["columns"][column] = {
                "kind": "numeric", "mean": float(clean.mean()) if len(clean) else None,
                "std": float(clean.std()) if len(clean) > 1 else 0.0,
                "min": float(clean.min()) if len(clean) else None, "max": float(clean.max()) if len(clean) else None,
                "bin_edges": edges.tolist(), "bin_fractions": (counts / max(counts.sum(), 1)).tolist(),
                "sample": sample.round(10).tolist(), "missing": int(series.isna().sum())}
        else:
            frequencies = series.astype(str).value_counts(normalize=True).head(100)
            reference["columns"][column] = {"kind": "categorical", "frequencies": frequencies.to_dict(),
                                            "missing": int(series.isna().sum())}
    return schema, reference


def _feature_names(predict: Any, depth: int = 3) -> list[str] | None:
    """The columns `predict`'s model was fitted on (scikit-learn's `feature_names_in_`, also set by the xgboost and
    lightgbm estimators), found among the globals and closure values it uses, and those of the functions it
    calls; None unless exactly one such list is found."""
    found: set[tuple[str, ...]] = set()
    seen: set[int] = set()

    def visit(value: Any, level: int) -> None:
        if id(value) in seen or level > depth:
            return
        seen.add(id(value))
        names = getattr(value, "feature_names_in_", None) if not isinstance(value, type) else None
        if names is not None and all(isinstance(n, str) for n in list(names)):
            found.add(tuple(names))
            return
        code = getattr(value, "__code__", None)
        if code is None:
            return
        module_globals = getattr(value, "__globals__", {})
        for name in code.co_names:
            if name in module_globals:
                visit(module_globals[name], level + 1)
        for cell in getattr(value, "__closure__", None) or ():
            try:
                visit(cell.cell_contents, level + 1)
            except ValueError:  # an empty cell
                pass

    visit(predict, 0)
    return list(next(iter(found))) if len(found) == 1 else None


def server_frame(values: Any, schema: list[dict]):
    """Rows as the model server hands them to `predict`: a DataFrame with the schema's columns in order,
    numeric columns as floats."""
    import numpy as np
    import pandas as pd

    frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame(np.asarray(values))
    frame = frame.rename(columns=str)[[c["name"] for c in schema]].reset_index(drop=True)
    numeric = [c["name"] for c in schema if c.get("kind") == "numeric"]
    return frame.astype({c: float for c in numeric}) if numeric else frame


PREDICT_CHECK_ROWS = 5


def check_predict(predict: Any, frame, run_id: str) -> None:
    """Call `predict` as the server will, on a few training rows; refuse (MlopsError) what would fail every
    request: an exception, a result that is not one JSON value per row."""
    sample = frame.head(PREDICT_CHECK_ROWS)
    columns = ", ".join(map(str, list(sample.columns)[:6])) + (", ..." if sample.shape[1] > 6 else "")
    how = (f"the server calls predict(X) with X a pandas DataFrame of one or more rows (columns {columns}) and "
           "sends back one prediction per row: write it for a batch, e.g. `def predict(X): return "
           "model.predict(X)`, not for one row; then run the notebook again and register that run")
    import warnings

    try:
        with warnings.catch_warnings():  # a library's warnings about its input are not the user's business here
            warnings.simplefilter("ignore")
            result = predict(sample)
    except Exception as exc:
        raise MlopsError(f"run {run_id}'s `predict` fails on {len(sample)} rows of its training data, so every "
                         f"request would fail; nothing was registered.\n  {type(exc).__name__}: {exc}\n  fix: "
                         f"{how}") from None
    from .serving.predictions import json_ready

    try:  # made ready as the server makes it; a numpy scalar's tolist() is a plain number, not one value per row
        values = json_ready(result)
    except TypeError:
        raise MlopsError(f"run {run_id}'s `predict` returned {a(type(result).__name__)} for {len(sample)} rows, not "
                         f"one value per row; nothing was registered.\n  fix: {how}") from None
    if len(values) != len(sample):
        raise MlopsError(f"run {run_id}'s `predict` returned {len(values)} value(s) for {len(sample)} rows; nothing "
                         f"was registered.\n  fix: {how}")
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise MlopsError(f"run {run_id}'s `predict` returns values the server cannot send as JSON ({exc}); return "
                         "numbers, strings or lists of them (e.g. a numpy array); nothing was registered") from None


def _fingerprint(artifacts: str, steps: set[str]) -> str:
    """sha256 over the saved outputs of the steps that produce the training data."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(artifacts)
    digest = hashlib.sha256()
    for step in sorted(steps):
        for path in sorted(fs.find(f"{root}/{step}")):
            digest.update(path.rsplit("/", 1)[-1].encode())
            with fs.open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def register(ws, run: dict, name: str, gates: list[str], max_age: float | None = None) -> dict:
    """Gate, package and record a run's model as the next version of `name`; stale `max_age` seconds after it
    is registered (model.stale, `mlops_model_age_seconds`)."""
    from .artifacts import load_inputs, read_manifest

    check_name(name)
    if run["status"] != "succeeded":
        raise MlopsError(f"run {run['id']} {run['status']}; only a succeeded run can be registered")
    failures = check_gates(run, gates)
    if failures:
        from .notify import emit

        emit(ws.store, "gate.failed", f"run {run['id']} did not pass the quality gate for {name}: "
                                      + "; ".join(failures), run=run["id"], model=name, failures=failures)
        raise GateFailed(f"run {run['id']} did not pass the quality gate, nothing was registered:\n  " +
                         "\n  ".join(failures))
    if not Path(run["run_dir"], "bundle").exists():
        raise MlopsError(f"run {run['id']}'s files are gone from {run['run_dir']}; run the notebook again")
    pipeline = _pipeline_of_run(run)  # as the run was compiled: the notebook may have changed since
    serve = _serve_step(pipeline)
    artifacts = ws.artifacts(run["id"])
    try:
        entry = read_manifest(artifacts, serve.name)["predict"]
    except Exception as exc:  # no manifest, or no `predict` in it
        raise MlopsError(f"run {run['id']} saved no `predict` from its serve step ({exc}); run the notebook again "
                         "with this version of jupyter-mlops") from None
    training = _training_input(pipeline, artifacts)
    values = load_inputs(artifacts, {training[0]: training[1]})[0] if training else None
    schema, reference = describe_inputs(values) if training else ([], {"rows": 0, "columns": {}})
    predict = _load_artifact_predict(artifacts, serve.name, entry, run["id"])
    needed = _feature_names(predict)
    if needed and set(needed) <= {c["name"] for c in schema} and len(needed) < len(schema):
        # the model reads only these: clients need not send the others (and drift is watched where it matters)
        by_name = {c["name"]: c for c in schema}
        schema = [by_name[n] for n in needed]
        reference["columns"] = {n: reference["columns"][n] for n in needed}
    for column in schema:  # where training data had nulls, the model was fitted with them: the server takes them
        column["nullable"] = bool(reference["columns"].get(column["name"], {}).get("missing"))
    if training:
        check_predict(predict, server_frame(values, schema), run["id"])
    data_steps = {p for s in pipeline.steps if s.kind == "train" for p in s.inputs.values()}
    lineage = {"name": name, "run_id": run["id"], "notebook": run["notebook"],
               "notebook_hash": run["notebook_hash"], "params": run["params"], "metrics": run["metrics"],
               "data_fingerprint": _fingerprint(artifacts, data_steps) if data_steps else None,
               "training_input": training[0] if training else None, "serve_step": serve.name,
               "created": time.time(), "max_age": max_age,
               "data_time": max((d["mtime"] for d in run.get("data") or [] if d.get("mtime")), default=None)}
    root = ws.root / "models" / name
    built: dict = {}

    def build(version: int) -> dict:
        """Runs inside the store's transaction, holding the name's lock: nothing else registers `name` meanwhile.
        The package is staged, then published (renamed into place, uploaded); the row is committed after, so a
        row always names a complete package, and a package without a row is a leftover to remove."""
        import fsspec

        _remove_leftovers(root, version)
        staging = root / f".staging-v{version}-{secrets.token_hex(4)}"
        staging.mkdir(parents=True)
        try:
            fs, base = fsspec.core.url_to_fs(artifacts)
            with fs.open(f"{base}/{serve.name}/{entry['file']}", "rb") as src, \
                    open(staging / "predict.pkl", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (staging / "schema.json").write_text(json.dumps(schema, indent=1))
            (staging / "reference.json").write_text(json.dumps(reference))
            (staging / "model.json").write_text(json.dumps({**lineage, "version": version}, indent=1, default=str))
            digests = package_digests(staging)
            remote = f"{ws.artifacts_url}/models/{name}/v{version}" if ws.artifacts_url else None
            built.update(target=root / f"v{version}", remote=remote)
            package = _publish(staging, root / f"v{version}", remote)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {"package": package, "files": json.dumps(digests)}

    try:
        version, package = ws.store.add_model_version(
            name, build, run_id=run["id"], notebook=run["notebook"], notebook_hash=run["notebook_hash"],
            params=run["params"], metrics=run["metrics"], data_fingerprint=lineage["data_fingerprint"],
            max_age=max_age, data_time=lineage["data_time"])
    except BaseException:
        # published, then the commit failed (or never came): the package has no row, so no reader can reach it;
        # take it away now rather than at the next registration of the name
        if built:
            _unpublish(built["target"], built["remote"])
        raise
    earlier = [v["version"] for v in ws.store.model_versions(name) if v["run_id"] == run["id"] and
               v["version"] != version]
    # registering a run again is allowed (a new version, the same model), but never silently
    warning = (f"run {run['id']} was already {name} version {', '.join(map(str, earlier))}; version {version} is "
               "the same model again") if earlier else None
    from .notify import emit

    scores = ", ".join(f"{k}={v:.4g}" for k, v in run["metrics"].items()) or "no metrics"
    emit(ws.store, "model.registered", f"{name} version {version} registered from run {run['id']} ({scores})",
         model=name, version=version, run=run["id"], metrics=run["metrics"])
    return {**lineage, "version": version, "package": package, "schema": schema, "warning": warning}


def age(version: dict, now: float | None = None) -> dict:
    """How old a registered version is: {model_age_seconds, data_age_seconds (None when its run's data reads
    were not recorded), max_age_seconds, stale}."""
    now = time.time() if now is None else now
    model_age = now - version["created"]
    return {"model_age_seconds": model_age,
            "data_age_seconds": now - version["data_time"] if version.get("data_time") else None,
            "max_age_seconds": version.get("max_age"),
            "stale": bool(version.get("max_age") and model_age > version["max_age"])}


def announce_stale(ws, now: float | None = None) -> list[str]:
    """Each served version (production, else the latest) past its max age is notified once as model.stale;
    returns what was announced (the scheduler's passes call this)."""
    from .notify import emit

    said = []
    for name in sorted({v["name"] for v in ws.store.model_versions()}):
        version = primary_version(ws.store, name)
        found = age(version, now)
        if not found["stale"]:
            continue
        key = "stale:" + hashlib.sha1(f"{name}:{version['version']}".encode()).hexdigest()
        if ws.store.claim_once(key):
            days = found["model_age_seconds"] / 86400
            text = (f"{name} version {version['version']} is stale: registered {days:.1f} days ago, its limit is "
                    f"{found['max_age_seconds'] / 86400:.1f} days; retrain it")
            emit(ws.store, "model.stale", text, model=name, version=version["version"], **found)
            said.append(text)
    return said


def _remove_leftovers(root: Path, version: int) -> None:
    """What a registration killed mid-way left: staging folders, and the folder of the version now being
    allocated (allocated under the lock, so no row has it: a package published before a commit that never
    came)."""
    if root.is_dir():
        for stale in root.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(root / f"v{version}", ignore_errors=True)


def _publish(staging: Path, target: Path, remote: str | None) -> str:
    """Put a staged package in place: renamed to `target` (atomic), then, for a team's registry, uploaded where
    every client and the cluster read it. Fails leaving nothing published."""
    staging.rename(target)
    if remote is None:
        return str(target)
    import fsspec

    fs, base = fsspec.core.url_to_fs(remote)
    try:
        if fs.exists(base):  # an upload of a registration that was never committed
            fs.rm(base, recursive=True)
        fs.put(str(target), base, recursive=True)
    except BaseException:
        _unpublish(target, remote)
        raise
    return remote


def _unpublish(target: Path, remote: str | None) -> None:
    """Take back a package that no row names: the local folder and what was uploaded. Best effort: what stays
    behind is removed by the next registration of the name."""
    shutil.rmtree(target, ignore_errors=True)
    if remote is None:
        return
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(remote)
        fs.rm(base, recursive=True)
    except Exception:
        pass


def package_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file of a package, by its path inside it."""
    return {p.relative_to(folder).as_posix(): _file_sha256(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file()}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PackageChanged(MlopsError):
    """A package file no longer matches the sha256 recorded in the store when it was registered."""


def verify_package(folder: str | Path, digests: dict | str | None, what: str) -> None:
    """Refuse a package whose files differ from those registered. Every file is checked before any is loaded:
    predict.pkl is unpickled, which runs code."""
    if digests is None:  # registered before digests were recorded: nothing to compare with
        return
    if isinstance(digests, str):
        digests = json.loads(digests)
    for relative, expected in sorted(digests.items()):
        path = Path(folder) / relative
        if not path.is_file():
            raise PackageChanged(f"{what}: {relative} is missing from {folder}; restore the package or register the "
                                 "model again from its run")
        found = _file_sha256(path)
        if found != expected:
            raise PackageChanged(
                f"{what}: {relative} in {folder} is not the file registered (sha256 {found[:12]}..., registered "
                f"{expected[:12]}...); it was changed after registration, so it is not loaded. Register the model "
                "again from its run, or restore the file")


def _load_artifact_predict(artifacts: str, step: str, entry: dict, run_id: str) -> Any:
    import cloudpickle
    import fsspec

    fs, base = fsspec.core.url_to_fs(artifacts)
    try:
        with fs.open(f"{base}/{step}/{entry['file']}", "rb") as f:
            return cloudpickle.load(f)
    except Exception as exc:  # a module predict needs that is missing here, a class defined nowhere
        raise MlopsError(f"run {run_id}'s `predict` cannot be loaded here ({type(exc).__name__}: {exc}); the "
                         "model server would fail the same way: install what it imports, then register "
                         "again") from None


def fetch_package(ws, version: dict) -> Path:
    """A registered version's package as a local folder, its files checked against the sha256 digests recorded
    at registration: the folder itself, or (registered by a team member to object storage) a copy downloaded
    once into this workspace (downloaded again if the copy no longer matches)."""
    package, what = version["package"], f"model {version['name']} version {version['version']}"
    if "://" not in package:
        verify_package(package, version.get("files"), what)
        return Path(package)
    local = _download_package(ws, package)
    try:
        verify_package(local, version.get("files"), what)
    except PackageChanged:
        shutil.rmtree(local, ignore_errors=True)
        local = _download_package(ws, package)
        verify_package(local, version.get("files"), what)
    return local


def _download_package(ws, package: str) -> Path:
    import fsspec

    fs, base = fsspec.core.url_to_fs(package)
    parts = base.rstrip("/").split("/")
    local = ws.root / "models" / parts[-2] / parts[-1]
    if not (local / "predict.pkl").exists():
        staging = local.with_name(f".download-{parts[-1]}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        fs.get(base.rstrip("/") + "/", str(staging), recursive=True)
        if (staging / parts[-1]).is_dir():  # some filesystems nest the folder's name
            staging = staging / parts[-1]
        shutil.rmtree(local, ignore_errors=True)
        staging.rename(local)
    return local


def _pipeline_of_run(run: dict):
    """The pipeline as compiled for the run (its bundle's pipeline.yaml), when the notebook has changed since."""
    import yaml

    from .pipeline import Pipeline, Step

    spec = yaml.safe_load(Path(run["run_dir"], "bundle", "pipeline.yaml").read_text())
    steps = [Step(s["name"], s["kind"], [c - 1 for c in s["cells"]], [], s["inputs"], s["imports"], s["outputs"],
                  s["parameters"], s["depends_on"], s["metrics"]) for s in spec["steps"]]
    return Pipeline(run["notebook"], spec["notebook_hash"], spec["kernel"], [], {}, None, [], [], steps)


def primary_version(store, name: str) -> dict:
    """The version a deployment of `name` serves: the one aliased `production`, else the latest. The one place
    this rule lives: deploy, the watcher of a running deployment, monitor, the panel and export all ask here."""
    aliases = {a["alias"] for a in store.aliases(check_name(name))}
    return resolve(store, f"{name}@production" if "production" in aliases else name)


def resolve(store, ref: str) -> dict:
    """A model version from `NAME`, `NAME:VERSION` or `NAME@ALIAS` (plain NAME: the latest version)."""
    name, version, alias = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
        check_name(alias, "alias")
    elif ":" in ref:
        name, text = ref.split(":", 1)
        if not text.isdigit():
            raise MlopsError(f"`{ref}`: the version after `:` must be a number, e.g. {name}:3")
        version = int(text)
    check_name(name)
    versions = store.model_versions(name)
    if not versions:
        known = sorted({v["name"] for v in store.model_versions()})
        raise MlopsError(f"no model `{name}` in the registry" + (f"; registered: {', '.join(known)}" if known
                                                                  else "; register one with `jupyter-mlops register`"))
    if alias is not None:
        found = [a for a in store.aliases(name) if a["alias"] == alias]
        if not found:
            raise MlopsError(f"model `{name}` has no alias `{alias}`; set one with "
                             f"`jupyter-mlops promote {name} VERSION --alias {alias}`")
        version = found[0]["version"]
    chosen = versions[-1] if version is None else next((v for v in versions if v["version"] == version), None)
    if chosen is None:
        listed = ", ".join(str(v["version"]) for v in versions)
        raise MlopsError(f"model `{name}` has no version {version}; it has {listed}")
    return chosen


def load_predict(package: str | Path, digest: str | None = None):
    """The registered `predict` function, ready to call. With `digest`, the bytes unpickled are the bytes checked
    against it: a file swapped between a check and the load is never run."""
    import cloudpickle

    data = (Path(package) / "predict.pkl").read_bytes()
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise PackageChanged(f"{package}: predict.pkl is not the file registered (sha256 mismatch); it was changed "
                             "after registration, so it is not loaded. Register the model again from its run")
    return cloudpickle.loads(data)
