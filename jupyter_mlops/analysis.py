"""Static analysis of one cell: which global names it reads before writing, and which it leaves bound.

The cell is first passed through IPython's input transformer, so `%magic`, `!shell` and `%%cell` magics parse as
Python. The scanner walks the AST in evaluation order (the value of an assignment before its targets) with nested
scopes: comprehensions run at once in their own scope; function and lambda bodies run only when called, so the
globals they use are recorded as `deferred` reads.
"""
from __future__ import annotations

import ast
import builtins
import functools
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Names that exist in every IPython kernel without being defined by the notebook.
KERNEL_NAMES = frozenset(dir(builtins)) | {
    "get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh",
    "_dh", "__name__", "__doc__", "__builtins__", "__file__", "__spec__", "__loader__", "__package__",
}
# Cell magics whose body is ordinary Python code run in the user namespace.
_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
_PYTHON_LINE_MAGICS = {"time", "timeit", "prun", "debug"}
_SHELL_VARIABLE = re.compile(r"(?<!\$)\$([A-Za-z_]\w*)|\{([A-Za-z_]\w*)\}")


@dataclass
class CellNames:
    reads: list[str] = field(default_factory=list)  # globals read before this cell binds them, in order
    writes: dict[str, str | None] = field(default_factory=dict)  # name -> import statement if bound by import
    deletes: set[str] = field(default_factory=set)
    deferred: set[str] = field(default_factory=set)  # globals read inside function / lambda bodies
    functions: set[str] = field(default_factory=set)  # names bound by `def`
    star_imports: list[str] = field(default_factory=list)
    syntax_error: str | None = None


@functools.lru_cache(maxsize=1)
def _transformer():
    return _input_transformer_module().TransformerManager()


def _input_transformer_module():
    """IPython's cell transformer. Importing it the usual way runs IPython/__init__, which imports the terminal
    shell, the debugger and prompt_toolkit: ~0.45 s, most of a CLI command's start-up. The module itself needs
    only the standard library, so where IPython is not loaded yet it is loaded from its own file."""
    loaded = sys.modules.get("IPython.core.inputtransformer2")
    if loaded is not None:
        return loaded
    try:
        package = importlib.util.find_spec("IPython")
        spec = importlib.util.spec_from_file_location(
            "_jupyter_mlops_inputtransformer2", Path(package.origin).parent / "core" / "inputtransformer2.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:  # an IPython whose transformer needs more of its package: the usual import, slower
        import IPython.core.inputtransformer2 as module

        return module


def to_python(source: str) -> str:
    """The cell as the kernel would run it: magics and shell escapes become plain calls."""
    return _transformer().transform_cell(source) if source.strip() else ""


class _Scope:
    def __init__(self, kind: str, names: set[str]):
        self.kind = kind  # "function" | "comprehension" | "class"
        self.names = names


def _assigned_in(body: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """Names a function body binds locally, and the ones it declares global (nested scopes excluded)."""
    local: set[str] = set()
    declared_global: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared_global.update(node.names)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            local.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            local.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
        stack.extend(ast.iter_child_nodes(node))
    return local - declared_global, declared_global


def _args(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {a.arg for a in every if a is not None}


class _Scanner(ast.NodeVisitor):
    def __init__(self, out: CellNames):
        self.out = out
        self.scopes: list[_Scope] = []
        self._reads_seen: set[str] = set()

    # -- name events -------------------------------------------------------------------------------------------
    def _load(self, name: str) -> None:
        for scope in reversed(self.scopes):
            if name in scope.names:
                return
            if scope.kind == "class":  # class bodies fall through to globals, methods never see them
                continue
        if any(s.kind == "function" for s in self.scopes):
            self.out.deferred.add(name)
        elif name not in self.out.writes and name not in self._reads_seen:
            self._reads_seen.add(name)
            self.out.reads.append(name)

    def _store(self, name: str, imported: str | None = None, walrus: bool = False) -> None:
        for scope in reversed(self.scopes):
            if walrus and scope.kind == "comprehension":
                continue  # `(y := f(x)) for x in xs` binds y outside the comprehension
            scope.names.add(name)
            return
        self.out.writes[name] = imported
        self.out.deletes.discard(name)

    def _delete(self, name: str) -> None:
        if self.scopes:
            return
        self._load(name)
        self.out.writes.pop(name, None)
        self.out.deletes.add(name)

    # -- visitors in evaluation order ----------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._store(node.id)
        else:
            self._delete(node.id)

    def _mutation_target(self, node: ast.AST) -> None:
        """`df["a"] = ...` or `model.coef_ = ...` reads df/model and leaves a new version of it."""
        self.visit(node)
        base = node
        while isinstance(base, (ast.Subscript, ast.Attribute)):
            base = base.value
        if isinstance(base, ast.Name) and not self.scopes:
            self.out.writes[base.id] = None

    def _target(self, node: ast.AST) -> None:
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            self._mutation_target(node)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self._target(elt)
        elif isinstance(node, ast.Starred):
            self._target(node.value)
        else:
            self.visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self._target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)  # `x += 1` reads x first
            self.visit(node.value)
            self._store(node.target.id)
        else:
            self.visit(node.value)
            self._mutation_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._store(node.target.id, walrus=True)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._target(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._store(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            statement = ast.unparse(ast.Import(names=[alias]))
            self._store(bound, imported=statement)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                if not self.scopes:
                    self.out.star_imports.append(node.module or ".")
                continue
            statement = ast.unparse(ast.ImportFrom(module=node.module, names=[alias], level=node.level))
            self._store(alias.asname or alias.name, imported=statement)

    def visit_Global(self, node: ast.Global) -> None:
        pass  # handled where the function body is scanned

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for expr in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(expr)
        if isinstance(node, ast.Lambda):
            self.scopes.append(_Scope("function", _args(node.args)))
            self.visit(node.body)
            self.scopes.pop()
            return
        for deco in node.decorator_list:
            self.visit(deco)
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                    node.args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)
        if node.returns is not None:
            self.visit(node.returns)
        local, declared_global = _assigned_in(node.body)
        self._store(node.name)
        if not self.scopes:
            self.out.functions.add(node.name)
            for name in declared_global:  # the function rebinds these globals when called
                self.out.writes.setdefault(name, None)
        self.scopes.append(_Scope("function", local | _args(node.args)))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
            self.visit(expr)
        self.scopes.append(_Scope("class", set()))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()
        self._store(node.name)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        first, *rest = node.generators
        self.visit(first.iter)  # the first iterable is evaluated in the enclosing scope
        self.scopes.append(_Scope("comprehension", set()))
        for i, gen in enumerate(node.generators):
            if i:
                self.visit(gen.iter)
            self._target(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._store(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._store(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._store(node.rest)

    def visit_Call(self, node: ast.Call) -> None:
        # get_ipython().run_cell_magic("time", "", body) and friends: the body is user code, analyse it too
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in ("run_cell_magic", "run_line_magic")
                and node.args and all(isinstance(a, ast.Constant) for a in node.args)):
            name = node.args[0].value
            if func.attr == "run_cell_magic" and name in _PYTHON_CELL_MAGICS and len(node.args) == 3:
                if name == "capture" and str(node.args[1].value).split():
                    self._store(str(node.args[1].value).split()[-1])
                self._inline(str(node.args[2].value))
                return
            if func.attr == "run_line_magic" and name in _PYTHON_LINE_MAGICS and len(node.args) == 2:
                self._inline(str(node.args[1].value))
                return
        if isinstance(func, ast.Attribute) and func.attr in ("system", "getoutput") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                for name in _SHELL_VARIABLE.findall(arg.value):  # `!ls $data_dir` reads data_dir
                    self._load(next(n for n in name if n))
        self.generic_visit(node)

    def _inline(self, source: str) -> None:
        try:
            tree = ast.parse(to_python(source))
        except SyntaxError:
            return
        for stmt in tree.body:
            self.visit(stmt)


def analyze_source(source: str) -> CellNames:
    """Reads and writes of one cell's source (magics allowed)."""
    out = CellNames()
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError as exc:
        out.syntax_error = f"line {exc.lineno}: {exc.msg}"
        return out
    _Scanner(out).visit(tree)
    return out


def _top_level(source: str) -> list:
    """A cell's top-level statements (magics allowed); none when it does not parse."""
    try:
        return ast.parse(to_python(source)).body
    except SyntaxError:
        return []


def reported_names(source: str) -> list[str]:
    """The names a cell shows at its top level, bare (`accuracy`) or printed (`print(accuracy, f1)`): what a Kale
    `pipeline-metrics` cell lists, one metric each. Other code in the cell (computing them) is not a metric."""
    found: list[str] = []
    for node in _top_level(source):
        value = node.value if isinstance(node, ast.Expr) else None
        if isinstance(value, ast.Name):
            found.append(value.id)
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print":
            found += [a.id for a in value.args if isinstance(a, ast.Name)]
    return list(dict.fromkeys(found))


def imported_modules(source: str) -> list[str]:
    """Modules a cell imports at top level, to load into a kernel before its step runs."""
    modules: list[str] = []
    for node in _top_level(source):
        if isinstance(node, ast.Import):
            modules += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules
