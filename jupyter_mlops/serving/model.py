"""What a model server serves: a registered model version loaded to predict (`ServedModel`), the deployment of
a primary with its canaries and shadows (`Deployment`), the one live now (`LiveDeployment`), and `ClientError`, a
request the client must fix."""
from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ClientError(Exception):
    """A request the client must fix: answered 4xx with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ServedModel:
    name: str
    version: int
    predict: Callable
    schema: list[dict]  # [{"name", "type", "kind"}]
    variant: str = "primary"
    reference: dict | None = None  # statistics of the training inputs, for drift and outliers
    package: str | None = None  # where it was loaded from: a shadow is loaded again there, in its own process
    digest: str | None = None  # predict.pkl's sha256 as registered: checked again wherever it is loaded
    lineage: dict = field(default_factory=dict)  # model.json: created, max_age, data_time (its age in /metrics)
    columns: list[str] = field(init=False)
    numeric_only: bool = field(init=False)
    nullable: Any = field(init=False)  # per column: may it be null/NaN (the training data had missing values)
    column_index: Any = field(init=False)  # the columns as a pandas Index, made once

    def __post_init__(self):
        import numpy as np
        import pandas as pd

        self.columns = [c["name"] for c in self.schema]
        # made once, of plain str objects: per request, pandas would build an Arrow string index from the names and
        # scikit-learn's feature-name check would iterate it element by element (a sixth of a 1-row request's CPU)
        self.column_index = pd.Index(self.columns, dtype=object)
        self.numeric_only = all(c.get("kind") == "numeric" for c in self.schema)
        seen_missing = (self.reference or {}).get("columns", {})  # packages from before `nullable` was recorded
        self.nullable = np.array([bool(c.get("nullable", seen_missing.get(c["name"], {}).get("missing")))
                                  for c in self.schema], dtype=bool)

    @classmethod
    def from_package(cls, name: str, version: int, package: str | Path, variant: str = "primary",
                     digest: str | None = None):
        from ..registry import load_predict

        schema = json.loads((Path(package) / "schema.json").read_text())
        reference_file = Path(package) / "reference.json"
        reference = json.loads(reference_file.read_text()) if reference_file.exists() else None
        lineage_file = Path(package) / "model.json"
        lineage = json.loads(lineage_file.read_text()) if lineage_file.exists() else {}
        return cls(name, version, load_predict(package, digest), schema, variant, reference, str(package), digest,
                   {k: lineage.get(k) for k in ("created", "max_age", "data_time")})


@dataclass
class Deployment:
    """What one server answers with: a primary, canaries taking a share of traffic (percent), and shadows that get
    a mirrored copy of each request after the answer has gone out. With `sticky_header`, the header's value picks
    the variant by hash, so one user stays on one variant (A-B); without it, each request is drawn at random."""

    primary: ServedModel
    canaries: list[tuple[ServedModel, float]] = field(default_factory=list)
    shadows: list[ServedModel] = field(default_factory=list)
    sticky_header: str | None = None

    def __post_init__(self):
        total = sum(w for _, w in self.canaries)
        if any(w <= 0 for _, w in self.canaries) or total >= 100:
            raise ValueError(f"canary weights must be above 0 and add up to less than 100 (got {total:g})")

    @property
    def name(self) -> str:
        return self.primary.name

    def variants(self) -> list[ServedModel]:
        return [self.primary, *(m for m, _ in self.canaries), *self.shadows]

    def version(self, version: str) -> ServedModel:
        """The variant serving `version` (a client asking for one by its route), or a 404 naming those here."""
        for model in self.variants():
            if str(model.version) == version:
                return model
        here = ", ".join(f"{m.version} ({m.variant})" for m in self.variants())
        raise ClientError(f"model `{self.name}` has no version {version} deployed here; deployed: {here}", 404)

    def route(self, headers) -> ServedModel:
        if not self.canaries:
            return self.primary
        key = headers.get(self.sticky_header) if self.sticky_header else None
        bucket = (zlib.crc32(key.encode()) % 10000) / 100 if key is not None else random.random() * 100
        edge = 0.0
        for model, weight in self.canaries:
            edge += weight
            if bucket < edge:
                return model
        return self.primary


class LiveDeployment:
    """The deployment a running server answers with; `swap` replaces it between requests (promote, rollback,
    new canary weight) while requests already in flight finish on the one they started with."""

    def __init__(self, deployment: Deployment):
        self.current = deployment

    def swap(self, deployment: Deployment) -> None:
        if deployment.name != self.current.name:
            raise ValueError(f"this server serves `{self.current.name}`, not `{deployment.name}`")
        self.current = deployment
