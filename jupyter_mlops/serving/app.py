"""The model server: an ASGI app (Starlette) speaking the protocols clients already use.

- Open Inference Protocol v2 (KServe, Triton, Seldon): oip.py;
- MLflow's scoring server: `POST /invocations` and `GET /ping`: mlflow_scoring.py;
- `/metrics` for Prometheus: requests by model, version, variant and status code, request and predict latency
  histograms, requests in flight (metrics.py); `/v2/shadow`: the shadows' comparison with the primary.

`ModelServer` holds what every request shares (the live deployment, limits, metrics, the request log, the
micro-batcher, the shadow mirror) and the steps each prediction takes: read and decode the body, predict with the
batch, log, mirror. The protocol modules only decode and format. Every client mistake is a `ClientError`, answered
4xx with a JSON body naming the problem. The app's lifespan starts the shadow mirror and, on shutdown, stops it
and closes the request log and the shadow process.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .feedback import FeedbackStore, parse as parse_feedback, request_id
# the types a server is built from, importable from here as before the split
from .model import ClientError, Deployment, LiveDeployment, ServedModel  # noqa: F401


UNKNOWN_MODEL = "(unknown)"  # the model label of requests for a model this server does not serve (no name has it)
# the id of the request being answered (x-request-id), for the request log: set by the endpoint, read by `answer`
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("mlops_request_id", default=None)


def client_error(request: Request | None, exc: ClientError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


class ModelServer:
    """One server's shared state and the path of a prediction request through it."""

    def __init__(self, target: ServedModel | Deployment, metrics, limits, request_log=None, worker=None):
        from .batcher import MicroBatcher
        from .frames import json_loader
        from .mirror import ShadowMirror

        self.live = LiveDeployment(target if isinstance(target, Deployment) else Deployment(target))
        self.name = self.live.current.name
        self.metrics, self.limits, self.request_log = metrics, limits, request_log
        self.feedback = None  # the deployment's FeedbackStore (feedback.py), when requests are logged
        self.batcher = MicroBatcher(metrics)
        self.mirror = ShadowMirror(metrics, shared=worker.shared if worker else None,
                                   worker=worker.index if worker else 0)
        self.loads = json_loader()

    # -- a request's body ----------------------------------------------------------------------------------------
    def _too_large(self, size: int, exact: bool) -> ClientError:
        from .limits import describe_size

        return ClientError(f"the body is {'' if exact else 'over '}{size:,} bytes; this server takes at most "
                           f"{describe_size(self.limits.max_body)} per request (--max-body): send fewer rows per "
                           "request, or start the server with a larger --max-body", 413)

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with a 413 as soon as it is known to be too large: from Content-Length before
        anything is read, else (chunked) once the bytes read pass the limit."""
        limit = self.limits.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared), True)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self._too_large(limit, False)
            chunks.append(chunk)
        return b"".join(chunks)

    def parse(self, raw: bytes) -> Any:
        try:
            return self.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClientError(f"the body is not valid JSON ({exc})") from None
        except RecursionError:  # the standard library's decoder on deeply nested arrays
            raise ClientError("the body's JSON is nested too deeply; send rows as a list of lists of values") \
                from None

    async def decoded(self, request: Request, model: ServedModel, decode: Callable,
                      parse: Callable | None = None) -> tuple[Any, Any]:
        """The body and the frame decoded from it; a large body on a worker thread, so the event loop goes on
        answering other requests meanwhile. `parse(server, raw, headers)` reads a body that is not plain JSON."""
        raw = await self.read_body(request)

        def work() -> tuple[Any, Any]:
            body = parse(self, raw, request.headers) if parse else self.parse(raw)
            return body, decode(model, body)

        if len(raw) > self.limits.offload_above:
            return await asyncio.to_thread(work)
        return work()

    # -- the answer ----------------------------------------------------------------------------------------------
    async def answer(self, deployed: Deployment, model: ServedModel, frame) -> list:
        """Predict a request's rows (with whatever requests came meanwhile, see batcher.py), log them, and mirror
        them to the shadows once answered."""
        values, seconds = await self.batcher.predict(model, frame)
        self.metrics.rows(model.name, str(model.version), len(values))
        if self.request_log is not None:
            self.request_log.put(model.variant, model.version, frame, values, seconds, REQUEST_ID.get(),
                                 columns=model.column_index)
        if deployed.shadows and model is deployed.primary:
            self.mirror.put(deployed, frame, values, seconds)
        return values

    def check_name(self, request: Request) -> None:
        asked = request.path_params["name"]
        if asked != self.name:
            raise ClientError(f"no model `{asked}` here; this server serves `{self.name}`", 404)

    def endpoint(self, handler: Callable, inference: bool = False) -> Callable:
        """A protocol's handler(request, deployment, model) as a route: the variant chosen, client errors and
        model failures answered in JSON, the variant and version in headers, everything counted (an `inference`
        route also for the statistics extension)."""
        live, metrics = self.live, self.metrics

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            deployed = live.current  # one request sees one deployment, even if it is swapped meanwhile
            model = deployed.route(request.headers)
            metrics.in_flight.inc()
            rid = None
            try:
                rid = request_id(request.headers.get("x-request-id"))
                REQUEST_ID.set(rid)
                if "version" in request.path_params:  # asked for by its route: that version, not the draw
                    model = deployed.version(request.path_params["version"])
                response = await handler(request, deployed, model)
            except ClientError as exc:
                response = client_error(request, exc)
            except Exception as exc:  # the model itself failed: our 5xx, named
                response = JSONResponse({"error": f"predict failed: {type(exc).__name__}: {exc}"}, status_code=500)
            finally:
                metrics.in_flight.dec()
            response.headers["x-mlops-variant"] = model.variant
            response.headers["x-mlops-model-version"] = str(model.version)
            if rid:
                response.headers["x-request-id"] = rid
            if request.path_params.get("name", model.name) != model.name:  # one label for every unknown name:
                metrics.observe(UNKNOWN_MODEL, "", "", response.status_code,  # clients cannot grow the series
                                time.perf_counter() - started)
            else:
                seconds = time.perf_counter() - started
                metrics.observe(model.name, str(model.version), model.variant, response.status_code, seconds)
                if inference:
                    metrics.inference(model.name, str(model.version), response.status_code < 400, seconds)
            return response

        return endpoint

    # -- start and stop ------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.mirror.start()
        try:
            yield
        finally:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the mirror (after what it holds), the shadow process and the request log; twice is harmless."""
        self.mirror.stop()
        if self.request_log is not None:
            self.request_log.close()
        if self.feedback is not None:
            self.feedback.close()


class ServingApp(Starlette):
    """Starlette, with the prediction routes (`hot`: (method, path) -> (endpoint, path parameters)) answered
    without its router and middleware: an endpoint answers every error itself (`ModelServer.endpoint`), and the
    layers between cost a tenth of a 1-row request's CPU. Every other request takes Starlette's way."""

    def __init__(self, *args, hot: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hot = hot or {}

    async def __call__(self, scope, receive, send) -> None:
        hot = self.hot.get((scope.get("method"), scope.get("path")))
        if hot is None or scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        endpoint, path_params = hot
        scope["app"], scope["path_params"] = self, dict(path_params)
        try:
            response = await endpoint(Request(scope, receive))
        except ClientError as exc:  # as Starlette's exception handler would answer it
            response = client_error(None, exc)
        await response(scope, receive, send)


def create_app(target: ServedModel | Deployment, registry_metrics=None, log_folder: str | Path | None = None,
               log_capacity: int = 10000, limits=None, log_limits=None, worker=None) -> Starlette:
    """The app for one model or deployment; with `log_folder`, every answered request is logged asynchronously
    (see monitor.py) and `app.state.request_log` is the log. `limits` (a ServerLimits) bounds what one request
    may cost; `log_limits` (a LogLimits) how much the request log may keep. Run it with a lifespan (uvicorn's
    default, `serve_forever`, `serve_in_background`): its shutdown closes what the server holds. `worker` (a
    workers.Worker): this app is one of a group of processes serving one port; they share metrics and shadow
    reports, and each keeps a request log of its own."""
    from . import mlflow_scoring, oip
    from .limits import ServerLimits
    from .metrics import ServerMetrics

    metrics = registry_metrics or ServerMetrics(shared=worker.shared if worker else None)
    server = ModelServer(target, metrics, limits or ServerLimits(), worker=worker)
    metrics.watch_ages(lambda: [server.live.current.primary, *(m for m, _ in server.live.current.canaries),
                                *server.live.current.shadows])
    if log_folder is not None:
        from .monitor import DriftWatch, RequestLog, log_name

        server.feedback = FeedbackStore(log_folder)
        server.request_log = RequestLog(log_folder, log_capacity, metrics.log_dropped,
                                        watch=DriftWatch(metrics, lambda: server.live.current.primary),
                                        limits=log_limits, name=log_name(worker.index if worker else 0),
                                        feedback=server.feedback)

    async def shadow_report(request: Request) -> Response:
        return JSONResponse(server.mirror.report.summary())

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def feedback(request: Request) -> Response:
        """Outcomes of earlier answers, joined to them by request id (feedback.py). Not a prediction: no variant
        is drawn for it, and it is counted by the outcomes' variants."""
        if "name" in request.path_params:
            server.check_name(request)
        if server.feedback is None:
            raise ClientError("this server keeps no request log, so it cannot join feedback to its answers: serve "
                              "it with a log folder (`jupyter-mlops deploy` does)", 409)
        items = parse_feedback(server.parse(await server.read_body(request)))
        joined = await asyncio.to_thread(server.feedback.add, items)
        for outcome in joined:
            metrics.outcome(server.name, str(outcome["version"]), outcome["variant"], outcome["correct"],
                            outcome["reward"])
        return JSONResponse({"joined": len(joined)})

    routes = [*oip.routes(server), *mlflow_scoring.routes(server), Route("/metrics", prometheus),
              Route("/v2/shadow", shadow_report),
              Route("/feedback", feedback, methods=["POST"]),
              Route("/v2/models/{name}/feedback", feedback, methods=["POST"])]
    endpoints = {route.path: route.endpoint for route in routes}
    hot = {("POST", f"/v2/models/{server.name}/infer"): (endpoints["/v2/models/{name}/infer"], {"name": server.name}),
           ("POST", "/invocations"): (endpoints["/invocations"], {})}
    app = ServingApp(routes=routes, lifespan=server.lifespan, exception_handlers={ClientError: client_error}, hot=hot)
    app.state.server = server
    app.state.request_log = server.request_log
    app.state.limits = server.limits
    app.state.live = server.live
    app.state.shadows = server.mirror.report
    app.state.shadow_process = server.mirror.process
    return app
