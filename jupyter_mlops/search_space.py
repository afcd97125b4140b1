"""Search spaces for sweeps: lists, linear and log ranges, grids over several parameters, random samples.

On the command line a swept parameter is `-p NAME SPEC`:
    0.01,0.1,1        a list (each value typed from the parameters cell)
    0.01..10:5        5 points from 0.01 to 10, evenly spaced
    0.0001..1:5:log   5 points, log-spaced
    1..5              for an int parameter: every integer from 1 to 5
    3                 one value: fixed, not swept
Several swept parameters form a grid (every combination); `samples=N` draws N random points instead (ranges as
uniform or log-uniform distributions, lists as choices).
"""
from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError
from .parameters import Parameter, coerce_parameters

MAX_TRIALS = 10_000  # per sweep, unless raised with --max-trials: a grid is refused from its size, before expanding
_RANGE = re.compile(r"^\s*(?P<low>[^.\s][^\s]*?)\.\.(?P<high>[^:\s]+)(?::(?P<count>\d+))?(?::(?P<scale>lin|log))?\s*$")


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple | None = None  # a list, or the grid points of a range
    low: float | None = None  # a range, for random sampling
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def swept(self) -> bool:
        return self.values is None or len(self.values) > 1

    def sample(self, rng: random.Random) -> Any:
        if self.low is None:
            return rng.choice(self.values)
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return int(round(value)) if self.integer else value


def _number(text: str, name: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"parameter `{name}`: `{spec}` is not a range of numbers; write LOW..HIGH[:COUNT][:log], "
                             "e.g. 0.01..10:5:log") from None


def parse_dimension(name: str, spec: Any, declared: dict[str, Parameter], max_trials: int = MAX_TRIALS) -> Dimension:
    """One `-p NAME SPEC` of a sweep, checked against the parameters cell; a range's points are made only when
    there are at most `max_trials` of them."""
    if name not in declared:
        coerce_parameters(declared, {name: spec})  # raises the usual "unknown parameter" error
    param = declared[name]
    if isinstance(spec, (list, tuple)):  # from the Python API
        values = [coerce_parameters(declared, {name: v})[name] for v in spec]
        if not values:
            raise ParameterError(f"parameter `{name}`: the list of values is empty; give at least one value")
        return Dimension(name, tuple(values))
    spec = str(spec)
    match = _RANGE.match(spec) if param.type in ("int", "float", "any") else None
    if match:
        low, high = _number(match["low"], name, spec), _number(match["high"], name, spec)
        log = match["scale"] == "log"
        integer = param.type == "int"
        if not low < high:
            raise ParameterError(f"parameter `{name}`: the range {spec} is empty (LOW must be below HIGH); "
                                 f"e.g. -p {name} {match['high']}..{match['low']}")
        if log and low <= 0:
            raise ParameterError(f"parameter `{name}`: a log range needs LOW > 0, got {spec}")
        count = int(match["count"]) if match["count"] else None
        if count is not None and count < 1:
            raise ParameterError(f"parameter `{name}`: a range of {count} points is empty; give :2 or more")
        if count is not None and count > max_trials:
            raise ParameterError(f"parameter `{name}`: a range of {count:,} points; a sweep runs at most "
                                 f"{max_trials:,} trials (--max-trials)")
        if count is None:
            if not integer or int(high) - int(low) + 1 > max_trials:
                values = None  # only for random sampling; a grid asks for a count (see expand)
            else:
                values = tuple(range(int(low), int(high) + 1))
        elif count == 1:
            values = (int(low) if integer else low,)
        elif log:
            values = tuple(math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (count - 1))
                           for i in range(count))
        else:
            values = tuple(low + i * (high - low) / (count - 1) for i in range(count))
        if integer and values is not None:
            values = tuple(dict.fromkeys(int(round(v)) for v in values))
        elif values is not None and param.type == "float":
            values = tuple(float(f"{v:.12g}") for v in values)  # 0.1 + 2 * 0.45 prints as 1.0, not 0.9999...
        return Dimension(name, values, low, high, log, integer)
    values = [coerce_parameters(declared, {name: p.strip()})[name] for p in spec.split(",") if p.strip() != ""]
    if not values:
        raise ParameterError(f"parameter `{name}`: no values in `{spec}`; e.g. -p {name} 0.1,1,10")
    return Dimension(name, tuple(values))


def count_points(dimensions: list[Dimension], samples: int | None = None, max_trials: int = MAX_TRIALS) -> int:
    """How many trials `expand` makes, from the dimensions' sizes alone; more than `max_trials` is refused."""
    if samples is not None:
        if samples < 1:
            raise ParameterError(f"--samples must be at least 1, got {samples}")
        if samples > max_trials:
            raise ParameterError(f"--samples {samples:,}: a sweep runs at most {max_trials:,} trials "
                                 "(--max-trials raises it)")
        return samples
    for d in dimensions:
        if d.values is None:
            raise ParameterError(f"parameter `{d.name}`: a range on a grid needs a number of points, e.g. "
                                 f"-p {d.name} {d.low:g}..{d.high:g}:5 (or use --samples N for random points)")
    size = math.prod(len(d.values) for d in dimensions)
    if size > max_trials:
        raise ParameterError(f"the grid has {size:,} points ({' x '.join(str(len(d.values)) for d in dimensions)} "
                             f"values); a sweep runs at most {max_trials:,} trials (--max-trials raises it): give "
                             "fewer values, or draw random points with --samples N")
    return size


def expand(dimensions: list[Dimension], samples: int | None = None, seed: int = 0,
           max_trials: int = MAX_TRIALS) -> list[dict[str, Any]]:
    """The trials: every combination of the swept values, or `samples` random points."""
    count_points(dimensions, samples, max_trials)
    if samples is not None:
        rng = random.Random(seed)
        return [{d.name: d.sample(rng) for d in dimensions} for _ in range(samples)]
    names = [d.name for d in dimensions]
    return [dict(zip(names, combo)) for combo in itertools.product(*(d.values for d in dimensions))]
