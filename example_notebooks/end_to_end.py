"""The whole path on the embedded default, from the tagged digits notebook to a served prediction:

    tags -> pipeline -> sweep -> register the best run behind a gate -> serve it -> ask it for a prediction

Run from anywhere: `python3 example_notebooks/end_to_end.py`. Everything lands in example_notebooks/.mlops/.
Each stage is one call of the Python API; the same verbs exist as `jupyter-mlops ...` and `%mlops ...`.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import jupyter_mlops
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

NOTEBOOK = Path(__file__).resolve().parent / "digits.ipynb"


def main() -> None:
    pipeline = jupyter_mlops.validate(NOTEBOOK)
    print(f"1. tags: {len(pipeline.steps)} steps: " + " -> ".join(s.name for s in pipeline.steps))

    run = jupyter_mlops.run(NOTEBOOK, {"C": 5.0})
    print(f"2. pipeline run {run['id']}: {run['status']}, accuracy {run['metrics']['accuracy']:.4f}")

    sweep = jupyter_mlops.sweep(NOTEBOOK, {"C": "0.05..50:4:log", "gamma": "0.0005,0.001"}, parallel=2,
                                maximize="accuracy")
    best = sweep["best"]
    print(f"3. sweep {sweep['id']}: {len(sweep['trials'])} trials (shared: {', '.join(sweep['shared_steps'])}); "
          f"best C={best['params']['C']:g} gamma={best['params']['gamma']:g} "
          f"accuracy={best['metrics']['accuracy']:.4f}")

    version = jupyter_mlops.register("best", "digits", metric="accuracy", sweep_id=sweep["id"],
                                     require=["accuracy>=0.95"], workspace=NOTEBOOK.parent / ".mlops")
    jupyter_mlops.promote("digits", version["version"], alias="production", workspace=NOTEBOOK.parent / ".mlops")
    print(f"4. registered digits version {version['version']} (gate accuracy>=0.95 passed), now digits@production")

    model = load(Workspace(NOTEBOOK.parent / ".mlops"), "digits@production")
    server = serve_in_background(create_app(model))
    try:
        from sklearn.datasets import load_digits

        digits = load_digits()
        body = {"inputs": [{"name": "pixels", "shape": [3, 64], "datatype": "FP64",
                            "data": digits.data[-3:].tolist()}]}
        request = urllib.request.Request(f"{server.url}/v2/models/digits/infer", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as reply:
            predicted = json.loads(reply.read())["outputs"][0]["data"]
        print(f"5. served at {server.url}: POST /v2/models/digits/infer -> {predicted} "
              f"(true labels {digits.target[-3:].tolist()})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
