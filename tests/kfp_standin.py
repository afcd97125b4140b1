"""Kubeflow Pipelines played here, where no KFP backend can run (issue 21).

`Executor` plays KFP's driver and launcher for a compiled pipeline: the tasks in dependency order (a ParallelFor's
body once per item), each task's inputs resolved from the YAML, the executor input (`{{$}}`) made as the launcher
makes it, and its container command run exactly as written, outside a container, on the bundle `jupyter-mlops
build --context-only` writes (the image's). What a task writes to its executor output file is kept, as the
launcher keeps it.

`KfpStandIn` serves the part of KFP's REST API (v2beta1) that the kfp SDK's `Client` uses to submit and follow a
run: healthz, experiments, create/get/terminate run. A submitted run is executed by `Executor` on a thread, and its
state and task details are answered in the API's own field names and enums (the SDK's generated models parse every
answer, and validate the enums)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BUNDLE = "/opt/mlops/bundle"


class TaskFailed(Exception):
    pass


def filled(arg: str, values: dict) -> str:
    """A container argument as KFP's launcher hands it over: Concat joined, each input parameter as its text."""
    if arg.startswith('{"Concat"'):
        return "".join(filled(piece, values) for piece in json.loads(arg)["Concat"])

    def text(match):
        value = values[match[1]]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return re.sub(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", text, arg)


class Executor:
    def __init__(self, spec: dict, bundle: Path, out: Path, job: str | None = None, arguments: dict | None = None,
                 on_task=None):
        self.spec, self.bundle, self.out = spec, bundle, out
        self.job = job or uuid.uuid4().hex
        self.arguments = arguments or {}
        self.on_task = on_task or (lambda name, state, error=None: None)
        self.ran: list[str] = []
        self.outputs: dict[str, dict] = {}  # task -> its executor output, as written
        self.terminated = threading.Event()

    def run(self) -> None:
        root = self.spec["root"]
        scope = {k: v.get("defaultValue") for k, v in root["inputDefinitions"]["parameters"].items()}
        self._dag(root["dag"]["tasks"], {**scope, **self.arguments}, "")

    def _value(self, given: dict, scope: dict):
        if "componentInputParameter" not in given:
            assert given["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
            return self.job
        value = scope[given["componentInputParameter"]]
        selector = given.get("parameterExpressionSelector")
        if selector:  # a loop item's field: parseJson(string_value)["C"]
            value = json.loads(value)[re.fullmatch(r'parseJson\(string_value\)\["(.+)"\]', selector)[1]]
        return value

    def _dag(self, tasks: dict, scope: dict, where: str) -> None:
        done: list[str] = []
        while len(done) < len(tasks):
            name = next(n for n, t in tasks.items() if n not in done and set(t.get("dependentTasks", [])) <= set(done))
            task = tasks[name]
            values = {k: self._value(g, scope) for k, g in task.get("inputs", {}).get("parameters", {}).items()}
            component = self.spec["components"][task["componentRef"]["name"]]
            if "dag" in component:  # a ParallelFor: its body once per item
                iterator = task["parameterIterator"]
                for i, item in enumerate(json.loads(iterator["items"]["raw"])):
                    self._dag(component["dag"]["tasks"], {**values, iterator["itemInput"]: json.dumps(item)},
                              f"{where}{name}-{i}/")
            else:
                self._container(component, values, f"{where}{name}", task["taskInfo"]["name"])
            done.append(name)

    def _executor_input(self, component: dict, values: dict, name: str) -> dict:
        folder = self.out / name
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = {output: {"artifacts": [{"name": f"{name}-{output}", "type": kind["artifactType"],
                                             "uri": f"file://{folder / output}", "metadata": {}}]}
                     for output, kind in component.get("outputDefinitions", {}).get("artifacts", {}).items()}
        return {"inputs": {"parameterValues": values},
                "outputs": {"artifacts": artifacts, "outputFile": str(folder / "executor_output.json")}}

    def _container(self, component: dict, values: dict, name: str, display: str) -> None:
        if self.terminated.is_set():
            raise TaskFailed("terminated")
        container = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        executor_input = self._executor_input(component, values, name)
        args = [filled(a, values).replace(BUNDLE, str(self.bundle)).replace("{{$}}", json.dumps(executor_input))
                for a in container["args"]]
        command = container["command"]
        assert command[0] == "python", command  # the image's python runs the step runner
        self.on_task(display, "RUNNING")
        process = subprocess.Popen([sys.executable, *command[1:], *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        while process.poll() is None:
            if self.terminated.wait(0.1):
                process.kill()
        stdout, stderr = process.communicate()
        output_file = Path(executor_input["outputs"]["outputFile"])
        if output_file.exists():
            self.outputs[name] = json.loads(output_file.read_text())
        if process.returncode:
            self.on_task(display, "CANCELED" if self.terminated.is_set() else "FAILED", stderr.strip()[-500:])
            raise TaskFailed(f"{name}: {stderr[-3000:]}")
        self.ran.append(name)
        self.on_task(display, "SUCCEEDED")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KfpStandIn:
    """KFP's v2beta1 REST API on 127.0.0.1, executing what it is given."""

    def __init__(self, bundle: Path, out: Path):
        self.bundle, self.out = bundle, out
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.executors: dict[str, Executor] = {}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        for executor in self.executors.values():
            executor.terminated.set()
        self.server.shutdown()

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                standin.requests.append((method, url.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                code, answer = standin.route(method, url.path, parse_qs(url.query), body)
                self._answer(code, answer)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        api = "/apis/v2beta1"
        if (method, path) == ("GET", f"{api}/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{api}/experiments"):
            wanted = [p.get("string_value") for p in json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
                      if p.get("key") == "display_name"]
            found = [e for e in self.experiments.values() if not wanted or e["display_name"] in wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if (method, path) == ("POST", f"{api}/experiments"):
            experiment = {"experiment_id": uuid.uuid4().hex, "display_name": body["display_name"],
                          "created_at": _now(), "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if (method, path) == ("POST", f"{api}/runs"):
            return self._create(body)
        found = re.fullmatch(rf"{api}/runs/([0-9a-f-]+)(:terminate)?", path)
        if found and found[1] in self.runs:
            if found[2] and method == "POST":
                self.executors[found[1]].terminated.set()
                self.runs[found[1]]["state"] = "CANCELING"
                return 200, {}
            return 200, self.runs[found[1]]
        return 404, {"code": 5, "message": f"no {method} {path} here"}

    def _create(self, body: dict) -> tuple[int, dict]:
        spec = body.get("pipeline_spec") or {}
        declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
        given = (body.get("runtime_config") or {}).get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        if "deploymentSpec" not in spec or unknown or body.get("experiment_id") not in self.experiments:
            return 400, {"code": 3, "message": f"bad run: unknown inputs {unknown} or no pipeline or experiment"}
        run_id = str(uuid.uuid4())
        run = {"run_id": run_id, "experiment_id": body["experiment_id"], "display_name": body.get("display_name"),
               "runtime_config": body.get("runtime_config"), "created_at": _now(), "state": "PENDING",
               "storage_state": "AVAILABLE", "run_details": {"task_details": [
                   {"run_id": run_id, "task_id": uuid.uuid4().hex, "display_name": spec["pipelineInfo"]["name"],
                    "create_time": _now(), "state": "RUNNING", "child_tasks": [{"task_id": "steps"}]}]}}
        self.runs[run_id] = run
        executor = Executor(spec, self.bundle, self.out / run_id, job=run_id, arguments=given,
                            on_task=lambda name, state, error=None: self._task(run, name, state, error))
        self.executors[run_id] = executor
        threading.Thread(target=self._execute, args=(run, executor), daemon=True).start()
        return 200, run

    def _task(self, run: dict, name: str, state: str, error: str | None = None) -> None:
        tasks = run["run_details"]["task_details"]
        task = next((t for t in tasks if t["display_name"] == name and t["state"] == "RUNNING"), None)
        if task is None:
            task = {"run_id": run["run_id"], "task_id": uuid.uuid4().hex, "display_name": name,
                    "create_time": _now(), "start_time": _now()}
            tasks.append(task)
        task["state"] = state
        if state != "RUNNING":
            task["end_time"] = _now()
        if error:
            task["error"] = {"code": 2, "message": error}

    def _execute(self, run: dict, executor: Executor) -> None:
        time.sleep(0.2)  # PENDING first, as a real backend answers right after the create
        run["state"] = "RUNNING"
        try:
            executor.run()
            run["state"] = "SUCCEEDED"
        except TaskFailed as exc:
            run["state"] = "CANCELED" if executor.terminated.is_set() else "FAILED"
            run["error"] = {"code": 2, "message": str(exc).splitlines()[0][:300]}
        run["run_details"]["task_details"][0]["state"] = run["state"]
        run["finished_at"] = _now()
