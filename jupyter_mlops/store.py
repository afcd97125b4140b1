"""The run store: runs, their steps and metrics, in SQLite (WAL) by default, any SQLAlchemy URL for teams.

Callers see plain dicts; only this module speaks SQL (SQLAlchemy Core), so pointing `MLOPS_STORE_URL` at
PostgreSQL changes nothing else. On SQLite every write transaction starts with BEGIN IMMEDIATE and waits on a
busy timeout, so many processes writing at once queue instead of failing with "database is locked".
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Iterator

import sqlalchemy as sa

from .errors import MlopsError, StoreError
from .records import USABLE_STEP, RunStatus

SCHEMA_VERSION = 11
# Changes to a store made by an older version, applied in order when it is opened: version -> statements.
# New tables need nothing here (create_all makes them); new columns on existing tables do.
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN owner VARCHAR(300)"],
    3: [],  # the model registry's tables: new, made by create_all
    4: [],  # schedules and their ticks: new tables
    5: [],  # deployments: a new table
    6: ["ALTER TABLE model_versions ADD COLUMN files TEXT"],  # sha256 of each package file
    # the run list sorts by start time, the abandoned-run scan filters by status, `register best` ranks by a metric
    7: ["CREATE INDEX IF NOT EXISTS ix_runs_started ON runs (started, id)",
        "CREATE INDEX IF NOT EXISTS ix_runs_status ON runs (status)",
        "CREATE INDEX IF NOT EXISTS ix_metrics_name_value ON metrics (name, value)"],
    # the panel offers the metrics a notebook's runs logged
    8: ["CREATE INDEX IF NOT EXISTS ix_runs_notebook ON runs (notebook, started)"],
    # the data each step read (data_reads.py), and the paths a run was told to watch, with their fingerprints
    9: ["ALTER TABLE steps ADD COLUMN data_reads TEXT", "ALTER TABLE runs ADD COLUMN watched TEXT",
        # schedules fired by a change (data, drift) rather than a clock: what fires them, and why each fired
        "ALTER TABLE schedules ADD COLUMN trigger_spec TEXT", "ALTER TABLE schedule_ticks ADD COLUMN trigger_key TEXT",
        "ALTER TABLE schedule_ticks ADD COLUMN reason TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS ix_ticks_trigger ON schedule_ticks (name, trigger_key)",
        # staleness: how old a version may get, and when the newest data it was trained on was written
        "ALTER TABLE model_versions ADD COLUMN max_age FLOAT", "ALTER TABLE model_versions ADD COLUMN data_time FLOAT"],
    10: [],  # progressive rollouts and their decisions: new tables
    11: ["ALTER TABLE rollouts ADD COLUMN applied VARCHAR(40)"],  # what a Kubernetes rollout last put on the cluster
}



class Status(sa.types.TypeDecorator):
    """A status column: a RunStatus or StepStatus (records.py) is stored as its plain value, whatever the driver
    makes of str enums."""
    impl = sa.String(16)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(value)


metadata = sa.MetaData()
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("notebook", sa.Text, nullable=False),
    sa.Column("notebook_hash", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False, default="{}"),  # JSON
    sa.Column("status", Status, nullable=False),
    sa.Column("started", sa.Float, nullable=False),  # epoch seconds
    sa.Column("finished", sa.Float),
    sa.Column("duration", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("sweep_id", sa.String(40), index=True),
    sa.Column("schedule", sa.String(200), index=True),
    sa.Column("scheduled_for", sa.String(40)),
    sa.Column("owner", sa.String(300)),  # host:pid:start of the process executing it, to spot one that died
    sa.Column("watched", sa.Text),  # JSON: fingerprints of the paths given with --watch, taken when it started
    sa.Index("ix_runs_started", "started", "id"),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_notebook", "notebook", "started"),
)
steps_table = sa.Table(
    "steps", metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("status", Status, nullable=False),  # pending|running|succeeded|failed|cancelled|skipped|reused
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("duration", sa.Float),
    sa.Column("output_notebook", sa.Text),
    sa.Column("fingerprint", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("cell", sa.Integer),  # source notebook cell of a failure, 1-based
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("data_reads", sa.Text),  # JSON: what the step read, fingerprinted (data_reads.py)
)
metrics_table = sa.Table(
    "metrics", metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.String(200)),
    sa.Index("ix_metrics_name_value", "name", "value"),
)
sweeps_table = sa.Table(
    "sweeps", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("notebook", sa.Text, nullable=False),
    sa.Column("space", sa.Text, nullable=False),  # JSON: {parameter: spec as given}
    sa.Column("trials", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(200)),
    sa.Column("direction", sa.String(8)),  # maximize | minimize
    sa.Column("status", Status, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("best_run", sa.String(40)),
)
model_versions_table = sa.Table(
    "model_versions", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("notebook", sa.Text, nullable=False),
    sa.Column("notebook_hash", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("metrics", sa.Text, nullable=False),  # JSON
    sa.Column("data_fingerprint", sa.String(64)),
    sa.Column("package", sa.Text, nullable=False),  # folder with predict.pkl, schema.json, reference.json
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("files", sa.Text),  # JSON: {file in the package: sha256}, checked before it is loaded
    sa.Column("max_age", sa.Float),  # seconds after `created` when it is stale (model.stale)
    sa.Column("data_time", sa.Float),  # the newest modification time of the data its run read
)
aliases_table = sa.Table(
    "aliases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
alias_history_table = sa.Table(
    "alias_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous", sa.Integer),
    sa.Column("action", sa.String(16), nullable=False),  # promote | rollback | rollout (a progressive promotion)
    sa.Column("at", sa.Float, nullable=False),
)
schedules_table = sa.Table(
    "schedules", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("notebook", sa.Text, nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("status", Status, nullable=False),  # active | paused
    sa.Column("missed", sa.String(16), nullable=False),  # skip | latest
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("backoff", sa.Float, nullable=False),
    sa.Column("timeout", sa.Float),  # seconds a fired run may take
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("last_tick", sa.Float),  # the latest tick already considered (a trigger's: its latest check)
    sa.Column("trigger_spec", sa.Text),  # JSON: fired by a change, not by `cron` (schedule.py's triggers)
)
schedule_ticks_table = sa.Table(
    "schedule_ticks", metadata,
    # the primary key is the exactly-once lock: a tick can be inserted, so claimed, once
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("tick", sa.Float, primary_key=True),
    sa.Column("claimed_by", sa.String(300), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("status", Status, nullable=False),  # running | succeeded | failed | skipped
    sa.Column("error", sa.Text),
    sa.Column("run_id", sa.String(40)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # a triggered schedule fires once per change: the change's key is unique per schedule (NULL for cron ticks)
    sa.Column("trigger_key", sa.Text),
    sa.Column("reason", sa.Text),  # why a trigger fired, in words
    sa.Index("ix_ticks_trigger", "name", "trigger_key", unique=True),
)
deployments_table = sa.Table(
    "deployments", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),  # JSON: canary, weight, shadow, sticky_header
    sa.Column("url", sa.Text),
    sa.Column("owner", sa.String(300)),  # the serving process
    sa.Column("updated", sa.Float, nullable=False),
)
# a progressive rollout (rollout.py): the canary's weight raised step by step while it stays healthy
rollouts_table = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),  # the deployment
    sa.Column("canary", sa.Integer, nullable=False),
    sa.Column("primary_version", sa.Integer, nullable=False),  # production when it began
    sa.Column("steps", sa.Text, nullable=False),  # JSON: the weights, the last one 100
    sa.Column("settings", sa.Text, nullable=False),  # JSON: interval, min_requests, thresholds, backend
    sa.Column("step", sa.Integer, nullable=False),  # index into steps of the weight now served
    sa.Column("status", sa.String(16), nullable=False),  # running | promoted | rolled_back | stopped
    sa.Column("step_started", sa.Float),  # when the counters below were read (NULL: not yet)
    sa.Column("counters", sa.Text),  # JSON: the server's request counters when the step began
    sa.Column("note", sa.Text),  # what it waits for, in words
    sa.Column("applied", sa.String(40)),  # on Kubernetes: the state (status:step) last put on the cluster
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("ended", sa.Float),
)
# each decision of a rollout, with its reason: one per (rollout, step), whatever the number of controllers
rollout_decisions_table = sa.Table(
    "rollout_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # started | advanced | promoted | rolled_back | stopped
    sa.Column("weight", sa.Float, nullable=False),  # the canary's weight after it
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text),  # JSON: the figures judged
    sa.Column("decided_by", sa.String(300)),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_rollout_decisions_step", "rollout_id", "step", unique=True),
)
# a notebook's data-check baseline chosen by hand (`jupyter-mlops baseline`); else its first succeeded run
baselines_table = sa.Table(
    "baselines", metadata,
    sa.Column("notebook", sa.String(1000), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
notifications_table = sa.Table(
    "notifications", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # webhook | email
    sa.Column("target", sa.Text, nullable=False),  # the URL (a secret: shown masked) or the address
    sa.Column("smtp", sa.String(300)),  # HOST:PORT for email
    sa.Column("events", sa.Text, nullable=False),  # JSON list
    sa.Column("created", sa.Float, nullable=False),
)
# what is to be sent: a row per (event, notification); notify.py sends and retries them
outbox_table = sa.Table(
    "notification_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.Integer, nullable=False, index=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_try", sa.Float),  # when it is due (moved forward by whoever takes it)
    sa.Column("error", sa.Text),
    sa.Column("delivered", sa.Float),
    sa.Index("ix_outbox_due", "status", "next_try"),
)
meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _driver_url(url: str) -> str:
    """postgresql://... means psycopg 3 (the maintained driver; SQLAlchemy's default name is psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        # take the write lock up front: a deferred transaction that upgrades later fails at once when busy
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _column_exists(conn, statement: str) -> bool:
    """Whether an `ALTER TABLE t ADD COLUMN c` has nothing to do: create_all makes a table that is new since the
    store's version with today's columns, so a later migration adding one of them finds it there."""
    import re

    match = re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement)
    return bool(match) and match[2] in {c["name"] for c in sa.inspect(conn).get_columns(match[1])}


def _exclusive(conn, key: str) -> None:
    """Serialize read-then-write transactions on `key` across processes and machines. SQLite needs nothing (every
    write transaction already holds the database's write lock); on PostgreSQL a transaction-scoped advisory lock
    does it, released at commit or rollback."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"jupyter-mlops:{key}"})


class _Lost(Exception):
    """Another controller decided first: the transaction is rolled back."""


def _json(value: Any) -> Any:
    """Dicts and lists as JSON text for a TEXT column; other values as they are."""
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


def _set_alias(conn, name: str, alias: str, version: int, action: str) -> int | None:
    """Point `alias` at `version` inside the caller's transaction, kept in the alias history; the version it
    pointed at before (None if new)."""
    now = time.time()
    _exclusive(conn, f"model:{name}")
    where = (aliases_table.c.name == name) & (aliases_table.c.alias == alias)
    previous = conn.execute(sa.select(aliases_table.c.version).where(where)).scalar()
    if previous is None:
        conn.execute(aliases_table.insert().values(name=name, alias=alias, version=version, updated=now))
    else:
        conn.execute(aliases_table.update().where(where).values(version=version, updated=now))
    conn.execute(alias_history_table.insert().values(name=name, alias=alias, version=version, previous=previous,
                                                     action=action, at=now))
    return previous


def _store_problem(url: str, error: BaseException) -> str:
    """One line for a failing store: which one, what is wrong, what to do. Runs' files are never touched."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        text = reason.lower()
        if "not a database" in text or "malformed" in text:
            return (f"the store {path} is damaged ({reason}): restore it from a backup (`sqlite3 {path} .recover` "
                    "often saves what is left); the runs' files under runs/ are untouched")
        if "readonly" in text or "unable to open" in text or "read-only" in text:
            return (f"the store {path} cannot be written ({reason}): make it and its folder writable (SQLite "
                    "writes mlops.db-wal beside it), or use another --workspace")
        if "disk is full" in text or "no space" in text:
            return f"the disk holding the store {path} is full: free some space and try again"
        return f"the store {path} failed: {reason}"
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    return f"the team store {shown} failed: {reason}"


_opened: dict[str, "Store"] = {}
_opening = threading.Lock()


def open_store(url: str) -> "Store":
    """The process's Store for `url`, opened (engine, tables, migrations) the first time only: the Jupyter server
    and a notebook's magics call the API many times a minute, each call naming the workspace again."""
    with _opening:
        store = _opened.get(url)
        if store is None:
            store = _opened[url] = Store(url)
        return store


def _forget_opened_stores() -> None:
    # a forked child must not use its parent's pooled connections (SQLite and psycopg both forbid it)
    _opened.clear()


os.register_at_fork(after_in_child=_forget_opened_stores)


class Store:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url)
        else:
            # pool_pre_ping: a team store's server restarts or drops idle connections; reconnect instead of failing
            self.engine = sa.create_engine(_driver_url(url), pool_pre_ping=True)

        @sa.event.listens_for(self.engine, "handle_error")
        def _said_in_one_line(context):
            # constraint violations are answers (a tick already claimed, a name taken): callers handle them
            if not isinstance(context.sqlalchemy_exception, sa.exc.IntegrityError) and \
                    isinstance(context.sqlalchemy_exception, (sa.exc.OperationalError, sa.exc.DatabaseError)):
                raise StoreError(_store_problem(url, context.sqlalchemy_exception)) from None

        with self.engine.begin() as conn:
            _exclusive(conn, "schema")  # two first clients at once must not both create the tables
            metadata.create_all(conn)
            found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version"))
            version = found.scalar()
            if version is None:
                conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(version) < SCHEMA_VERSION:
                for step in range(int(version) + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS.get(step, []):
                        if not _column_exists(conn, statement):
                            conn.exec_driver_sql(statement)
                conn.execute(meta_table.update().where(meta_table.c.key == "schema_version")
                             .values(value=str(SCHEMA_VERSION)))
            elif int(version) > SCHEMA_VERSION:
                raise MlopsError(f"the store at {url} has schema version {version}, newer than this "
                                 f"jupyter-mlops understands ({SCHEMA_VERSION}); upgrade jupyter-mlops")

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------------------------------
    def create_run(self, run_id: str, notebook: str, notebook_hash: str, params: dict, run_dir: str,
                   steps: list[dict], **extra: Any) -> None:
        """A new run in state `running` with its steps `pending`, in one transaction."""
        if extra.get("watched") is not None:
            extra["watched"] = json.dumps(extra["watched"])
        with self.engine.begin() as conn:
            conn.execute(runs_table.insert().values(
                id=run_id, notebook=notebook, notebook_hash=notebook_hash, params=json.dumps(params),
                status="running", started=time.time(), run_dir=run_dir, **extra))
            if steps:
                conn.execute(steps_table.insert(), [{"run_id": run_id, "status": "pending", "attempts": 0, **s}
                                                    for s in steps])

    def update_run(self, run_id: str, **values: Any) -> None:
        for key in ("params", "watched"):
            if key in values:
                values[key] = json.dumps(values[key])
        with self.engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(**values))

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        status = RunStatus(status).value  # a status that is not one is our bug: ValueError naming it
        with self.engine.begin() as conn:
            started = conn.execute(sa.select(runs_table.c.started).where(runs_table.c.id == run_id)).scalar()
            now = time.time()
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                status=status, finished=now, duration=now - started, error=error))

    def replace_steps(self, run_id: str, steps: list[dict]) -> None:
        """Set the step rows of a run (resume may change them); rows not named are removed."""
        with self.engine.begin() as conn:
            conn.execute(steps_table.delete().where(steps_table.c.run_id == run_id))
            if steps:
                conn.execute(steps_table.insert(), [
                    {"run_id": run_id, **s, "data_reads": json.dumps(s["data_reads"]) if s.get("data_reads") else None}
                    for s in steps])

    def running_runs(self) -> list[dict]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(runs_table.c.id, runs_table.c.owner).where(runs_table.c.status == "running"))
            return [dict(r._mapping) for r in rows]

    def fail_abandoned(self, run_id: str, owner: str, error: str) -> bool:
        """Mark a run failed (and its unfinished steps) if it is still `running` under that owner."""
        with self.engine.begin() as conn:
            done = conn.execute(runs_table.update().where(
                (runs_table.c.id == run_id) & (runs_table.c.status == "running") & (runs_table.c.owner == owner))
                .values(status="failed", error=error, finished=time.time()))
            if done.rowcount:
                conn.execute(steps_table.update().where(
                    (steps_table.c.run_id == run_id) & steps_table.c.status.in_(["running", "pending"]))
                    .values(status="failed", error="the process running it died"))
            return bool(done.rowcount)

    def update_step(self, run_id: str, name: str, **values: Any) -> None:
        if values.get("data_reads") is not None:
            values["data_reads"] = json.dumps(values["data_reads"])
        with self.engine.begin() as conn:
            conn.execute(steps_table.update().where(
                (steps_table.c.run_id == run_id) & (steps_table.c.name == name)).values(**values))

    def record_metrics(self, run_id: str, step: str, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        with self.engine.begin() as conn:
            conn.execute(metrics_table.delete().where(
                (metrics_table.c.run_id == run_id) & metrics_table.c.name.in_(list(metrics))))
            conn.execute(metrics_table.insert(), [{"run_id": run_id, "name": n, "value": v, "step": step}
                                                  for n, v in metrics.items()])

    def create_sweep(self, sweep_id: str, notebook: str, space: dict, trials: int, metric: str | None,
                     direction: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sweeps_table.insert().values(
                id=sweep_id, notebook=notebook, space=json.dumps(space, default=str), trials=trials, metric=metric,
                direction=direction, status="running", started=time.time()))

    def finish_sweep(self, sweep_id: str, status: str, best_run: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sweeps_table.update().where(sweeps_table.c.id == sweep_id).values(
                status=status, best_run=best_run, finished=time.time()))

    def get_sweep(self, sweep_id: str) -> dict:
        from .errors import MlopsError

        with self.engine.begin() as conn:
            row = conn.execute(sa.select(sweeps_table).where(sweeps_table.c.id == sweep_id)).first()
        if row is None:
            raise MlopsError(f"no sweep `{sweep_id}` in this workspace")
        sweep = dict(row._mapping)
        sweep["space"] = json.loads(sweep["space"])
        return sweep

    # -- the model registry ----------------------------------------------------------------------------------------
    def add_model_version(self, name: str, build_package, **fields: Any) -> tuple[int, str]:
        """Allocate the next version of `name` and record it; `build_package(version)` puts the package in place
        inside the same transaction (holding the name's lock) and returns the row's `package` (where) and `files`
        (digests). Returns (version, package)."""
        with self.engine.begin() as conn:
            _exclusive(conn, f"model:{name}")
            latest = conn.execute(sa.select(sa.func.max(model_versions_table.c.version))
                                  .where(model_versions_table.c.name == name)).scalar()
            version = (latest or 0) + 1
            built = build_package(version)
            package = built.pop("package")
            conn.execute(model_versions_table.insert().values(
                name=name, version=version, package=str(package), created=time.time(), **built,
                params=json.dumps(fields.pop("params"), default=str),
                metrics=json.dumps(fields.pop("metrics")), **fields))
        return version, str(package)

    def model_versions(self, name: str | None = None) -> list[dict]:
        query = sa.select(model_versions_table).order_by(model_versions_table.c.name,
                                                         model_versions_table.c.version)
        if name is not None:
            query = query.where(model_versions_table.c.name == name)
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["params"], row["metrics"] = json.loads(row["params"]), json.loads(row["metrics"])
        return rows

    def aliases(self, name: str | None = None) -> list[dict]:
        query = sa.select(aliases_table).order_by(aliases_table.c.name, aliases_table.c.alias)
        if name is not None:
            query = query.where(aliases_table.c.name == name)
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def set_alias(self, name: str, alias: str, version: int, action: str) -> int | None:
        """Point `alias` at `version`; returns the version it pointed at before (None if new)."""
        with self.engine.begin() as conn:
            return _set_alias(conn, name, alias, version, action)

    def alias_history(self, name: str, alias: str | None = None) -> list[dict]:
        query = sa.select(alias_history_table).where(alias_history_table.c.name == name) \
            .order_by(alias_history_table.c.id)
        if alias is not None:
            query = query.where(alias_history_table.c.alias == alias)
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- schedules ---------------------------------------------------------------------------------------------------
    def add_schedule(self, **values: Any) -> None:
        from .errors import MlopsError

        with self.engine.begin() as conn:
            _exclusive(conn, f"schedule:{values['name']}")
            if conn.execute(sa.select(schedules_table.c.name).where(schedules_table.c.name == values["name"])).first():
                raise MlopsError(f"a schedule `{values['name']}` exists already; delete it first or pick another name")
            conn.execute(schedules_table.insert().values(status="active", last_tick=None, **values))

    def schedules(self) -> list[dict]:
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(schedules_table).order_by(schedules_table.c.name))]

    def get_schedule(self, name: str) -> dict:
        from .errors import MlopsError

        with self.engine.begin() as conn:
            row = conn.execute(sa.select(schedules_table).where(schedules_table.c.name == name)).first()
        if row is None:
            raise MlopsError(f"no schedule `{name}`; `jupyter-mlops schedule list` shows them")
        return dict(row._mapping)

    def set_schedule_status(self, name: str, status: str) -> None:
        self.get_schedule(name)
        with self.engine.begin() as conn:
            conn.execute(schedules_table.update().where(schedules_table.c.name == name).values(status=status))

    def delete_schedule(self, name: str) -> None:
        self.get_schedule(name)
        with self.engine.begin() as conn:
            conn.execute(schedules_table.delete().where(schedules_table.c.name == name))

    def advance_schedule(self, name: str, tick: float) -> None:
        """Remember that ticks up to `tick` were considered (never moves back)."""
        with self.engine.begin() as conn:
            conn.execute(schedules_table.update().where(
                (schedules_table.c.name == name) &
                ((schedules_table.c.last_tick.is_(None)) | (schedules_table.c.last_tick < tick)))
                .values(last_tick=tick))

    def claim_tick(self, name: str, tick: float, now: float, trigger_key: str | None = None,
                   reason: str | None = None) -> bool:
        """True for exactly one caller per (schedule, tick), and per (schedule, trigger_key) when one is given,
        whatever the number of schedulers."""
        from .owners import process_owner

        try:
            with self.engine.begin() as conn:
                conn.execute(schedule_ticks_table.insert().values(
                    name=name, tick=tick, claimed_by=process_owner(), claimed_at=now, status="running", attempts=0,
                    trigger_key=trigger_key, reason=reason))
            return True
        except sa.exc.IntegrityError:
            return False

    def record_tick_run(self, name: str, tick: float, run_id: str | None, attempts: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(schedule_ticks_table.update().where(
                (schedule_ticks_table.c.name == name) & (schedule_ticks_table.c.tick == tick))
                .values(run_id=run_id, attempts=attempts))

    def finish_tick(self, name: str, tick: float, status: str, error: str | None, outcome: str | None = None) -> None:
        """A fired tick's end; `outcome` (what followed the run, e.g. a registration) is added to its reason."""
        where = (schedule_ticks_table.c.name == name) & (schedule_ticks_table.c.tick == tick)
        with self.engine.begin() as conn:
            values: dict[str, Any] = {"status": status, "error": error}
            if outcome:
                reason = conn.execute(sa.select(schedule_ticks_table.c.reason).where(where)).scalar()
                values["reason"] = f"{reason}; {outcome}" if reason else outcome
            conn.execute(schedule_ticks_table.update().where(where).values(**values))

    def last_schedule_run(self, name: str) -> dict | None:
        """The schedule's latest finished run, with its steps (what it read), or None."""
        found = self._runs((runs_table.c.schedule == name) & (runs_table.c.status != "running"), limit=1)
        return found[0] if found else None

    def schedule_is_running(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(runs_table.c.id).where(
                (runs_table.c.schedule == name) & (runs_table.c.status == "running")).limit(1)).first() is not None

    def tick_history(self, name: str) -> list[dict]:
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(schedule_ticks_table).where(
                schedule_ticks_table.c.name == name).order_by(schedule_ticks_table.c.tick))]

    # -- data-check baselines ----------------------------------------------------------------------------------------
    def set_baseline(self, notebook: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(baselines_table.delete().where(baselines_table.c.notebook == notebook))
            conn.execute(baselines_table.insert().values(notebook=notebook, run_id=run_id, updated=time.time()))

    def baseline_run(self, notebook: str) -> str | None:
        """The id of the notebook's baseline run: the one set by hand, else its first succeeded run."""
        with self.engine.begin() as conn:
            chosen = conn.execute(sa.select(baselines_table.c.run_id)
                                  .where(baselines_table.c.notebook == notebook)).scalar()
            if chosen:
                return chosen
            return conn.execute(sa.select(runs_table.c.id).where(
                (runs_table.c.notebook == notebook) & (runs_table.c.status == RunStatus.SUCCEEDED.value))
                .order_by(runs_table.c.started, runs_table.c.id).limit(1)).scalar()

    # -- notifications (notify.py) ---------------------------------------------------------------------------------
    def add_notification(self, kind: str, target: str, smtp: str | None, events: list[str]) -> dict:
        with self.engine.begin() as conn:
            new_id = conn.execute(notifications_table.insert().values(
                kind=kind, target=target, smtp=smtp, events=json.dumps(events),
                created=time.time())).inserted_primary_key[0]
        return next(n for n in self.notifications() if n["id"] == new_id)

    def notifications(self) -> list[dict]:
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(notifications_table)
                                                           .order_by(notifications_table.c.id))]
        for row in rows:
            row["events"] = json.loads(row["events"])
        return rows

    def remove_notification(self, notification_id: int) -> bool:
        with self.engine.begin() as conn:
            conn.execute(outbox_table.delete().where(outbox_table.c.notification_id == notification_id))
            return bool(conn.execute(notifications_table.delete().where(
                notifications_table.c.id == notification_id)).rowcount)

    def enqueue_notifications(self, event: str, payload: str, now: float) -> int:
        """An outbox row for each notification that wants `event`; how many."""
        with self.engine.begin() as conn:
            wanted = [r.id for r in conn.execute(sa.select(notifications_table.c.id, notifications_table.c.events))
                      if event in json.loads(r.events)]
            if wanted:
                conn.execute(outbox_table.insert(), [
                    {"notification_id": i, "event": event, "payload": payload, "status": "pending", "attempts": 0,
                     "next_try": now} for i in wanted])
            return len(wanted)

    def due_notifications(self, now: float, limit: int) -> list[dict]:
        query = (sa.select(outbox_table, notifications_table.c.kind, notifications_table.c.target,
                           notifications_table.c.smtp)
                 .join(notifications_table, notifications_table.c.id == outbox_table.c.notification_id)
                 .where((outbox_table.c.status == "pending") & (outbox_table.c.next_try <= now))
                 .order_by(outbox_table.c.next_try, outbox_table.c.id).limit(limit))
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def take_notification(self, row_id: int, due: float, until: float) -> bool:
        """True for the one process that moves the row's next try from `due` to `until` (its lease)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(outbox_table.update().where(
                (outbox_table.c.id == row_id) & (outbox_table.c.status == "pending") &
                (outbox_table.c.next_try == due)).values(next_try=until)).rowcount)

    def notification_delivered(self, row_id: int, attempts: int, at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox_table.update().where(outbox_table.c.id == row_id).values(
                status="delivered", attempts=attempts, delivered=at, error=None))

    def notification_failed(self, row_id: int, attempts: int, next_try: float | None, error: str) -> None:
        """Tried again at `next_try`, or given up (None)."""
        with self.engine.begin() as conn:
            conn.execute(outbox_table.update().where(outbox_table.c.id == row_id).values(
                status="pending" if next_try else "failed", attempts=attempts, next_try=next_try, error=error))

    def pending_notifications(self) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(outbox_table)
                                .where(outbox_table.c.status == "pending")).scalar()

    def notification_outbox(self, limit: int = 100) -> list[dict]:
        """The latest rows of the outbox, newest first (what `notify list --sent` shows)."""
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(outbox_table).order_by(outbox_table.c.id.desc()).limit(limit))]

    # -- deployments -------------------------------------------------------------------------------------------------
    def save_deployment(self, name: str, spec: dict, url: str | None = None, owner: str | None = None) -> None:
        """Create or update a deployment's spec; url/owner are kept when not given (an update from another
        process)."""
        with self.engine.begin() as conn:
            _exclusive(conn, f"deployment:{name}")
            where = deployments_table.c.name == name
            values = {"spec": json.dumps(spec), "updated": time.time()}
            if url is not None:
                values.update(url=url, owner=owner)
            if conn.execute(sa.select(deployments_table.c.name).where(where)).first():
                conn.execute(deployments_table.update().where(where).values(**values))
            else:
                conn.execute(deployments_table.insert().values(name=name, **{"url": url, "owner": owner, **values}))

    def get_deployment(self, name: str) -> dict | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(deployments_table).where(deployments_table.c.name == name)).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["spec"] = json.loads(found["spec"])
        return found

    def delete_deployment(self, name: str) -> None:
        with self.engine.begin() as conn:
            _exclusive(conn, f"deployment:{name}")
            conn.execute(deployments_table.delete().where(deployments_table.c.name == name))

    def deployments(self) -> list[dict]:
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(deployments_table))]
        for row in rows:
            row["spec"] = json.loads(row["spec"])
        return rows

    # -- rollouts ----------------------------------------------------------------------------------------------------
    def start_rollout(self, values: dict, reason: str, owner: str | None = None,
                      spec: dict | None = None) -> tuple[int, list[dict]]:
        """A new running rollout of `values["name"]`, its `started` decision recorded; a rollout of that
        deployment still running is stopped first (returned), and the deployment given its new `spec` when one is
        given, all in one transaction."""
        now = time.time()
        with self.engine.begin() as conn:
            _exclusive(conn, f"deployment:{values['name']}")
            if spec is not None:
                conn.execute(deployments_table.update().where(deployments_table.c.name == values["name"])
                             .values(spec=json.dumps(spec), updated=now))
            stopped = self._stop_rollouts(conn, values["name"], "replaced by a new progressive rollout", owner, now)
            rollout_id = conn.execute(rollouts_table.insert().values(
                status="running", step=0, created=now, **{k: _json(v) for k, v in values.items()}),
            ).inserted_primary_key[0]
            conn.execute(rollout_decisions_table.insert().values(
                rollout_id=rollout_id, step=-1, action="started", weight=json.loads(_json(values["steps"]))[0],
                reason=reason, decided_by=owner, at=now))
        return rollout_id, stopped

    def stop_rollouts(self, name: str, reason: str, owner: str | None = None) -> list[dict]:
        """Stop the deployment's running rollout (a deploy without it, an undeploy); the rollouts stopped."""
        with self.engine.begin() as conn:
            _exclusive(conn, f"deployment:{name}")
            return self._stop_rollouts(conn, name, reason, owner, time.time())

    @staticmethod
    def _stop_rollouts(conn, name: str, reason: str, owner: str | None, now: float) -> list[dict]:
        where = (rollouts_table.c.name == name) & (rollouts_table.c.status == "running")
        running = [dict(r._mapping) for r in conn.execute(sa.select(rollouts_table).where(where))]
        for row in running:
            conn.execute(rollouts_table.update().where(rollouts_table.c.id == row["id"])
                         .values(status="stopped", ended=now, note=None))
            conn.execute(rollout_decisions_table.insert().values(
                rollout_id=row["id"], step=row["step"], action="stopped", weight=0.0, reason=reason,
                decided_by=owner, at=now))
        return running

    def rollouts(self, name: str | None = None, status: str | None = None, limit: int | None = None) -> list[dict]:
        """Rollouts newest first, their JSON columns read."""
        query = sa.select(rollouts_table).order_by(rollouts_table.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(rollouts_table.c.name == name)
        if status is not None:
            query = query.where(rollouts_table.c.status == status)
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            for key in ("steps", "settings", "counters"):
                row[key] = json.loads(row[key]) if row[key] else None
        return rows

    def rollout_decisions(self, rollout_ids: list[int]) -> list[dict]:
        query = sa.select(rollout_decisions_table).where(rollout_decisions_table.c.rollout_id.in_(rollout_ids)) \
            .order_by(rollout_decisions_table.c.id)
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["evidence"] = json.loads(row["evidence"]) if row["evidence"] else None
        return rows

    def note_rollout(self, rollout_id: int, step: int, **values: Any) -> bool:
        """Update a running rollout still at `step` (the counters its step began with, what it waits for)."""
        where = (rollouts_table.c.id == rollout_id) & (rollouts_table.c.step == step) & \
            (rollouts_table.c.status == "running")
        with self.engine.begin() as conn:
            return conn.execute(rollouts_table.update().where(where).values(
                **{k: _json(v) for k, v in values.items()})).rowcount == 1

    def mark_rollout_applied(self, rollout_id: int, state: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(rollouts_table.update().where(rollouts_table.c.id == rollout_id).values(applied=state))

    def decide_rollout(self, rollout: dict, decision: dict, spec: dict | None, promote: bool) -> bool:
        """One decision of a running rollout at its current step, in one transaction: the decision recorded, the
        rollout moved on (`decision["step"]` becomes its step, or it ends), the deployment's `spec` (when it has
        one here) and, on promotion, the `production` alias set. False when another controller decided this step
        first, or the rollout is no longer running."""
        now, name = time.time(), rollout["name"]
        running = decision["status"] == "running"
        try:
            with self.engine.begin() as conn:
                _exclusive(conn, f"deployment:{name}")
                where = (rollouts_table.c.id == rollout["id"]) & (rollouts_table.c.step == rollout["step"]) & \
                    (rollouts_table.c.status == "running")
                moved = conn.execute(rollouts_table.update().where(where).values(
                    step=decision["step"], status=decision["status"], note=None, counters=_json(decision["counters"]),
                    step_started=now if running else None, ended=None if running else now)).rowcount
                if moved != 1:
                    raise _Lost
                conn.execute(rollout_decisions_table.insert().values(
                    rollout_id=rollout["id"], step=rollout["step"], action=decision["action"],
                    weight=decision["weight"], reason=decision["reason"], evidence=_json(decision["evidence"]),
                    decided_by=decision.get("decided_by"), at=now))
                if spec is not None:
                    conn.execute(deployments_table.update().where(deployments_table.c.name == name)
                                 .values(spec=json.dumps(spec), updated=now))
                if promote:
                    _set_alias(conn, name, "production", rollout["canary"], "rollout")
        except (_Lost, sa.exc.IntegrityError):
            return False
        return True

    # -- reading -------------------------------------------------------------------------------------------------
    def _runs(self, where=None, limit: int | None = None, steps: bool = True) -> list[dict]:
        """Runs newest first (by the start-time index), each with its params and metrics, and its steps unless
        `steps=False` (a list of runs rarely needs them, and they are most of the rows)."""
        query = sa.select(runs_table).order_by(runs_table.c.started.desc(), runs_table.c.id.desc())
        if where is not None:
            query = query.where(where)
        if limit:
            query = query.limit(limit)
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            ids = [r["id"] for r in rows]
            found: dict[str, list[dict]] = {i: [] for i in ids}
            metrics: dict[str, dict] = {i: {} for i in ids}
            for chunk in _chunks(ids, 500):
                if steps:
                    for s in conn.execute(sa.select(steps_table).where(steps_table.c.run_id.in_(chunk))
                                          .order_by(steps_table.c.position)):
                        step = {k: v for k, v in s._mapping.items() if k != "run_id"}
                        step["data_reads"] = json.loads(step["data_reads"]) if step["data_reads"] else None
                        found[s.run_id].append(step)
                for m in conn.execute(sa.select(metrics_table.c.run_id, metrics_table.c.name, metrics_table.c.value)
                                      .where(metrics_table.c.run_id.in_(chunk)).order_by(metrics_table.c.name)):
                    metrics[m.run_id][m.name] = m.value
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
            row["watched"] = json.loads(row["watched"]) if row.get("watched") else []
            row["metrics"] = metrics[row["id"]]
            row["steps"] = found[row["id"]]
        return rows

    def list_runs(self, limit: int | None = None, sweep_id: str | None = None, steps: bool = True) -> list[dict]:
        where = runs_table.c.sweep_id == sweep_id if sweep_id else None
        return self._runs(where, limit, steps)

    def run_table(self, sweep_id: str | None = None, limit: int | None = None,
                  ids: list[str] | None = None) -> tuple[list[tuple], list[tuple]]:
        """The runs as plain tuples (id, notebook, status, started, duration, params JSON), newest first (in the
        order of `ids` when given: those runs only), and their metrics as (run_id, name, value): a table of 100k
        runs without a dict per row (jupyter_mlops.runs())."""
        chosen = sa.select(runs_table.c.id, runs_table.c.notebook, runs_table.c.status, runs_table.c.started,
                           runs_table.c.duration, runs_table.c.params) \
            .order_by(runs_table.c.started.desc(), runs_table.c.id.desc())
        if sweep_id:
            chosen = chosen.where(runs_table.c.sweep_id == sweep_id)
        if ids is not None:
            chosen = chosen.where(runs_table.c.id.in_(ids))
        if limit:
            chosen = chosen.limit(limit)
        metrics = sa.select(metrics_table.c.run_id, metrics_table.c.name, metrics_table.c.value)  # unsorted: cheaper
        if sweep_id or limit or ids is not None:
            metrics = metrics.where(metrics_table.c.run_id.in_(sa.select(chosen.subquery().c.id)))
        with self.engine.begin() as conn:
            rows, values = list(conn.execute(chosen).all()), list(conn.execute(metrics).all())
        if ids is not None:
            position = {run_id: i for i, run_id in enumerate(ids)}
            rows.sort(key=lambda row: position[row[0]])
        return rows, values

    def iter_runs(self, sweep_id: str | None = None, page: int = 1000, steps: bool = True) -> Iterator[dict]:
        """Every run, newest first, a page at a time: the first comes at once however many there are. Pages
        follow the start-time index (a run started meanwhile is not in the list)."""
        where = runs_table.c.sweep_id == sweep_id if sweep_id else sa.true()
        after = where
        while True:
            rows = self._runs(after, page, steps)
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1]  # the next page starts below it in the index's order: no OFFSET to walk again
            after = where & ((runs_table.c.started < last["started"]) | (
                (runs_table.c.started == last["started"]) & (runs_table.c.id < last["id"])))

    def run_page(self, text: str = "", sort: str = "started", descending: bool = True, offset: int = 0,
                 limit: int = 100, sweep_id: str | None = None,
                 notebook: str | None = None) -> tuple[list[dict], int, int]:
        """One page of the runs `text` keeps (run_query.py), sorted by `sort`, without steps but with how many
        there are and how many are done; how many runs it keeps in all; how many runs are running. The database
        filters, sorts and pages: the cost is a page's, not the store's."""
        from . import run_query

        sort = run_query.sort_key(sort)
        with self.engine.begin() as conn:
            translate = run_query.Translator(runs_table, metrics_table, self.engine.dialect.name)
            terms = run_query.parse(
                text,
                has_metric=lambda name: conn.execute(sa.select(metrics_table.c.run_id)
                                                     .where(metrics_table.c.name == name).limit(1)).first() is not None,
                has_param=lambda name: conn.execute(sa.select(runs_table.c.id).where(
                    translate.param(name, numeric=False).isnot(None)).limit(1)).first() is not None)
            where = translate.where(terms)
            if sweep_id:
                where = where & (runs_table.c.sweep_id == sweep_id)
            if notebook:  # one notebook's runs (its absolute path, as runs are recorded)
                where = where & (runs_table.c.notebook == notebook)
            total = conn.execute(sa.select(sa.func.count()).select_from(runs_table).where(where)).scalar()
            running = conn.execute(sa.select(sa.func.count()).select_from(runs_table)
                                   .where(runs_table.c.status == RunStatus.RUNNING.value)).scalar()
            source, joined = translate.sorted_from(sort)
            ids = [r.id for r in conn.execute(sa.select(runs_table.c.id).select_from(source).where(where)
                                              .order_by(*translate.order(sort, descending, joined))
                                              .offset(offset).limit(limit))]
            done = sa.func.sum(sa.case((steps_table.c.status.in_([s.value for s in USABLE_STEP]), 1), else_=0))
            counts = {r.run_id: (r.total, r.done) for r in conn.execute(
                sa.select(steps_table.c.run_id, sa.func.count().label("total"), done.label("done"))
                .where(steps_table.c.run_id.in_(ids)).group_by(steps_table.c.run_id))}
        found = {r["id"]: r for r in self._runs(runs_table.c.id.in_(ids), steps=False)} if ids else {}
        rows = [found[i] for i in ids if i in found]
        for row in rows:
            total_steps, done_steps = counts.get(row["id"], (0, 0))
            row["steps_total"], row["steps_done"] = total_steps, int(done_steps or 0)
        return rows, total, running

    def best_run(self, metric: str, maximize: bool = True, sweep_id: str | None = None,
                 notebook: str | None = None) -> str | None:
        """The id of the succeeded run with the highest (or lowest) `metric`, chosen by the database with the
        (name, value) index; None when no succeeded run logged it."""
        value = metrics_table.c.value
        query = (sa.select(metrics_table.c.run_id)
                 .join(runs_table, runs_table.c.id == metrics_table.c.run_id)
                 .where((metrics_table.c.name == metric) & (runs_table.c.status == RunStatus.SUCCEEDED.value))
                 .order_by(value.desc() if maximize else value.asc(), runs_table.c.started.desc()).limit(1))
        if sweep_id:
            query = query.where(runs_table.c.sweep_id == sweep_id)
        if notebook:
            query = query.where(runs_table.c.notebook == notebook)
        with self.engine.begin() as conn:
            return conn.execute(query).scalar()

    def beat(self, kind: str, owner: str, value: dict, forget_after: float = 86400.0) -> None:
        """A process saying it is alive and doing `kind` (a scheduler's pass, `value["last_pass"]`); its previous
        beat is replaced, and beats older than `forget_after` seconds (processes long gone) are removed."""
        import hashlib

        key = f"beat:{kind}:{hashlib.sha1(owner.encode()).hexdigest()[:20]}"  # the meta key holds 64 characters
        prefix = f"beat:{kind}:"
        with self.engine.begin() as conn:
            stale = [k for k, v in conn.execute(sa.select(meta_table.c.key, meta_table.c.value)
                                                .where(meta_table.c.key.startswith(prefix)))
                     if json.loads(v).get("last_pass", 0) < value.get("last_pass", 0) - forget_after]
            conn.execute(meta_table.delete().where(meta_table.c.key.in_([key, *stale])))
            conn.execute(meta_table.insert().values(key=key, value=json.dumps({**value, "owner": owner})))

    def claim_once(self, key: str) -> bool:
        """True for exactly one caller per `key` (at most 64 characters), ever: a notice sent once."""
        try:
            with self.engine.begin() as conn:
                conn.execute(meta_table.insert().values(key=key, value=json.dumps({"at": time.time()})))
            return True
        except sa.exc.IntegrityError:
            return False

    def beats(self, kind: str) -> list[dict]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key.startswith(f"beat:{kind}:")))
            return [json.loads(value) for value in rows.scalars()]

    def metric_names(self, notebook: str) -> list[str]:
        """The names of the metrics the runs of `notebook` (its resolved path) logged, sorted."""
        query = (sa.select(metrics_table.c.name).distinct()
                 .join(runs_table, runs_table.c.id == metrics_table.c.run_id)
                 .where(runs_table.c.notebook == notebook).order_by(metrics_table.c.name))
        with self.engine.begin() as conn:
            return list(conn.execute(query).scalars())

    def get_run(self, run_id: str) -> dict:
        """A run by id or unique id prefix; MlopsError when none or several match."""
        from .errors import MlopsError

        exact = self._runs(runs_table.c.id == run_id)
        if exact:
            return exact[0]
        found = self._runs(runs_table.c.id.startswith(run_id, autoescape=True), limit=3)
        if len(found) == 1:
            return found[0]
        if not found:
            raise MlopsError(f"no run `{run_id}` in this workspace; `jupyter-mlops runs` lists them")
        raise MlopsError(f"run id prefix `{run_id}` matches several runs ({', '.join(r['id'] for r in found)}); "
                         "give more characters")


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
