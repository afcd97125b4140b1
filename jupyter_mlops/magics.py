"""`%load_ext jupyter_mlops` then `%mlops VERB ...`: the CLI's verbs and words, answered with Python objects.

    %mlops run [NB] [-p NAME VALUE]...      the run (a dict), printing steps as they finish
    %mlops sweep [NB] -p C 0.1,1,10 ...     a DataFrame of the trials, best first, with a live table meanwhile and
                                           a chart of the metric against each swept parameter after
    %mlops runs [--sweep ID] [--limit N] [--filter WORDS] [--sort KEY]
                                           a DataFrame: one row per run, params.* and metrics.* columns
    %mlops runs --plot [METRIC]             a chart of the metric across this notebook's runs
    %mlops show RUN | compare RUN RUN... [--plot]   one run (a dict) | a DataFrame of what differs (or a chart)
    %mlops monitor NAME [--plot drift|traffic]      drift per feature (a DataFrame) with the traffic and drift charts
    %mlops validate [NB]                    the steps and edges
    %mlops register | models | promote | rollback | serve | deploy | undeploy | schedule ...   as on the CLI

Without a notebook, the notebook this kernel belongs to is meant (Jupyter sets JPY_SESSION_NAME for kernels).
Loading the extension imports nothing heavy; each verb loads what it needs.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import MlopsError


def current_notebook() -> str:
    """The notebook of this kernel, from JPY_SESSION_NAME (absolute, or relative to the server's root)."""
    name = os.environ.get("JPY_SESSION_NAME", "")
    if name.endswith(".ipynb"):
        for candidate in (Path(name), Path.cwd() / name, Path.cwd() / Path(name).name):
            if candidate.is_file():
                return str(candidate)
    raise MlopsError("cannot tell which notebook this kernel belongs to (JPY_SESSION_NAME is "
                     f"{'not set' if not name else repr(name)}); name it: %mlops run my_notebook.ipynb")


class RunResult(dict):
    """A run as returned by the API, shown as one readable line instead of a wall of nested dicts."""

    def __repr__(self) -> str:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in self.get("metrics", {}).items())
        error = f" error: {self['error']}" if self.get("error") else ""
        return f"<run {self.get('id')} {self.get('status')} {metrics}{error}>".replace("  ", " ")


def _live_table(total: int, space: list[str], metric: str | None, maximize: bool = True):
    """An ipywidgets HTML table updated per trial; without ipywidgets, plain progress lines."""
    try:
        import ipywidgets
        from IPython.display import display
    except ImportError:
        ipywidgets = None
    done: list[dict] = []
    widget = ipywidgets.HTML() if ipywidgets else None
    if widget is not None:
        display(widget)

    def render() -> str:
        best = None
        scored = [t for t in done if t["status"] == "succeeded" and metric in t["metrics"]]
        if metric and scored:
            best = (max if maximize else min)(scored, key=lambda t: t["metrics"][metric])["id"]
        head = "".join(f"<th>{h}</th>" for h in ["run", "status", *space, metric or "", "duration"])
        rows = []
        for t in done:
            style = ' style="font-weight:bold"' if t["id"] == best else ""
            cells = [t["id"], t["status"], *[t["params"].get(p) for p in space],
                     f"{t['metrics'][metric]:.4g}" if metric in t["metrics"] else "",
                     f"{t['duration']:.1f}s" if t["duration"] else ""]
            rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return (f"<b>sweep: {len(done)}/{total} trials done</b><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    def on_trial(run: dict) -> None:
        done.append(run)
        if widget is not None:
            widget.value = render()
        else:
            print(f"[{len(done)}/{total}] {run['id']} {run['status']}", flush=True)

    return on_trial


def _monitor_table(args) -> Any:
    """Drift per feature as a DataFrame (drifted first), shown with PSI bars, after a summary line and the traffic
    and drift charts; with --plot, that chart alone."""
    import pandas as pd

    from . import api

    if args.plot:
        return _chart(api.monitor_chart(args.name, window=args.window, workspace=args.workspace)
                      if args.plot == "drift" else api.traffic_chart(args.name, workspace=args.workspace))
    found = api.monitor(args.name, window=args.window, workspace=args.workspace)
    print(f"{args.name} v{found['version']}: {found['window_rows']} rows, "
          f"{len(found['drifted_features'])} drifted features, {found['outliers']} outliers\n"
          f"rule: {found['drift_rule']}", flush=True)
    table = pd.DataFrame.from_dict(found["features"], orient="index").drop(columns="histogram", errors="ignore")
    if table.empty:
        return table
    from IPython.display import display

    from .charts import monitor_drift

    display(_chart(api.traffic_chart(args.name, workspace=args.workspace)))
    display(_chart(monitor_drift(args.name, found)))  # from the report just read: the log is read once
    table = table.sort_values(["drifted", "psi"], ascending=[False, False])
    try:  # the drift plot: PSI as bars in the table (no plotting library needed)
        return table.style.bar(subset=["psi"], color="#d65f5f").format(precision=4)
    except (ImportError, AttributeError):  # pandas' Styler needs jinja2, which may be missing
        return table


def _step_line(result: Any) -> None:
    if result.status not in ("pending", "running"):
        extra = f"  {result.error}" if result.error and result.status == "failed" else ""
        print(f"  {result.name:<16} {result.status:<9}{extra}", flush=True)


def mlops(line: str) -> Any:
    """The `%mlops` line magic."""
    from .cli import COMMANDS, _parser

    parser = _parser(prog="%mlops")
    try:
        args = parser.parse_args(shlex.split(line))
    except SystemExit:  # argparse already printed the usage and the problem
        return None
    if not args.command:
        parser.print_help()
        return None
    try:
        if getattr(args, "notebook", "") is None:
            args.notebook = current_notebook()
        answer = VERBS.get(args.command)
        if answer is None:  # no Python object to give back: it prints what it did, as on the command line
            COMMANDS[args.command](args)
            return None
        return answer(args)
    except MlopsError as exc:  # the user's mistake: say it plainly, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return None


def _run(args) -> RunResult:
    from . import api
    from .cli import _backend, _given, _parameters

    return RunResult(api.run(args.notebook, _parameters(args.parameter), workspace=args.workspace,
                             on_update=_step_line, on_log=lambda line: print(f"  {args.backend}| {line}", flush=True),
                             **_backend(args, "run"), **_given(max_parallel=args.parallel, timeout=args.timeout,
                                                               fresh_kernels=args.fresh_kernels)))


def _sweep(args):
    """The trials as a DataFrame, best first, with a live table meanwhile."""
    from . import api
    from .cli import _backend, _given, _parameters, _sweep_options

    space = _parameters(args.parameter)
    options = _sweep_options(args)
    metric = args.maximize or args.minimize
    swept = [n for n in space if "," in str(space[n]) or ".." in str(space[n])]
    live = _live_table(api.planned_trials(args.notebook, space, **options), swept, metric,
                       maximize=args.minimize is None)
    result = api.sweep(args.notebook, space, parallel=args.parallel, maximize=args.maximize, minimize=args.minimize,
                       workspace=args.workspace, on_trial=live, **options, **_backend(args, "sweep"),
                       **_given(timeout=args.timeout, fresh_kernels=args.fresh_kernels))
    table = api.runs(workspace=args.workspace, sweep_id=result["id"])
    if any(t["metrics"] for t in result["trials"]):
        from IPython.display import display

        display(_chart(api.sweep_chart(result["id"], workspace=args.workspace)))
    if metric and f"metrics.{metric}" in table:
        table = table.sort_values(f"metrics.{metric}", ascending=args.minimize is not None)
    if result["best"]:
        print(f"best ({result['direction']} {metric}): {result['best']['id']}", flush=True)
    return table.reset_index(drop=True)


def _resume(args) -> RunResult:
    from . import api

    return RunResult(api.resume(args.run_id, workspace=args.workspace, max_parallel=args.parallel,
                                timeout=args.timeout, fresh_kernels=args.fresh_kernels, on_update=_step_line))


def _serve(args):
    """A server on a thread of this kernel, returned (`.stop()` ends it)."""
    from .serving.app import create_app
    from .serving.server import load, serve_in_background
    from .workspace import Workspace

    model = load(Workspace.locate(args.workspace), args.model)
    server = serve_in_background(create_app(model), args.host, args.port)
    print(f"serving {model.name} version {model.version} at {server.url}; `.stop()` ends it", flush=True)
    return server


def _deploy(args):
    """On this machine: a server on a thread of this kernel, returned; elsewhere, what the engine did."""
    from . import api
    from .cli import _backend, _given, rollout_options

    if args.history_of is not None:
        return api.deploy_history(args.history_of, workspace=args.workspace)
    done = api.deploy(args.name, canary=args.canary, weight=args.weight, shadow=args.shadow,
                      sticky_header=args.sticky_header, workspace=args.workspace, **_backend(args, "deploy"),
                      **_given(host=args.host, port=args.port), **rollout_options(args))
    said = f"deployed {args.name} at {done['url']}; `.stop()` ends it" if "server" in done else None
    print(said or "\n".join(done["lines"]), flush=True)
    return done.get("server")


def _validate(args) -> None:
    from . import api
    from .cli import _print_pipeline

    _print_pipeline(api.validate(args.notebook))


def _chart(spec: dict):
    """A spec as Jupyter shows it: drawn by JupyterLab's Vega-Lite renderer, its title where charts cannot be."""
    from .charts import Chart

    title = spec.get("title", {})
    return Chart(spec, f"<chart: {title.get('text', '')}; {title.get('subtitle', '')}>")


def _runs(args):
    from . import api

    if args.plot is None:
        return api.runs(workspace=args.workspace, limit=args.limit, sweep_id=args.sweep, filter=args.filter,
                        sort=args.sort, descending=not args.ascending)
    return _chart(api.runs_chart(args.plot or None, notebook=_kernel_notebook(), filter=args.filter or "",
                                 limit=args.limit or 500, workspace=args.workspace))


def _kernel_notebook() -> str | None:
    """This kernel's notebook, or None (every notebook's runs) when it cannot tell."""
    try:
        return current_notebook()
    except MlopsError:
        return None


def _own_notebook(args) -> str | None:
    """Where `register best` looks: --notebook, else this kernel's notebook (when it can tell), unless `all`."""
    if args.best_of:
        return None if args.best_of == "all" else args.best_of
    return _kernel_notebook()


def _compare(args):
    from . import api

    if args.plot:
        return _chart(api.compare_chart(args.run_ids, workspace=args.workspace))
    return api.compare(args.run_ids, workspace=args.workspace, all_rows=args.all)


# the verbs answered with Python objects; the others print what they did, as on the command line (cli.COMMANDS)
VERBS: dict[str, Callable[[Any], Any]] = {
    "run": _run, "sweep": _sweep, "resume": _resume, "validate": _validate, "serve": _serve, "deploy": _deploy,
    "monitor": lambda args: _monitor_table(args),
    "runs": _runs,
    "show": lambda args: RunResult(_api().get_run(args.run_id, workspace=args.workspace)),
    "compare": _compare,
    "register": lambda args: _api().register(args.run_id, args.name, metric=args.metric,
                                                    maximize=not args.minimize, require=args.require,
                                                    sweep_id=args.sweep, notebook=_own_notebook(args),
                                                    workspace=args.workspace),
    "models": lambda args: _api().models(workspace=args.workspace),
    "promote": lambda args: _api().promote(args.name, args.model_version, alias=args.alias,
                                                  workspace=args.workspace),
    "rollback": lambda args: _api().rollback(args.name, alias=args.alias, workspace=args.workspace),
    "compile": lambda args: str(_api().compile_notebook(args.notebook, args.output)),
}


def _api():
    from . import api  # loaded at the first verb, not when the extension loads

    return api


def load_ipython_extension(ipython) -> None:
    ipython.register_magic_function(mlops, magic_kind="line", magic_name="mlops")
