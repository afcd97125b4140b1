"""CLI behaviour that needs no kernel: validation output, exit codes, fast start-up."""
import os
import subprocess
import sys

CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def run_cli(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=120, **kw)


def test_validate_prints_steps_and_edges(example):
    done = run_cli("validate", str(example("digits.ipynb")))
    assert done.returncode == 0, done.stderr
    assert "train [train] cells 9" in done.stdout and "after data: X_train, y_train" in done.stdout


def test_validate_reports_problems_and_exits_1(make_notebook):
    nb = make_notebook([("x = 1", "data"), ("y = x", "trian")])
    done = run_cli("validate", str(nb))
    assert done.returncode == 1
    assert "cell 2" in done.stderr and "unknown tag `trian`" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_notebook_is_a_clear_error(tmp_path):
    done = run_cli("validate", str(tmp_path / "nope.ipynb"))
    assert done.returncode == 1 and "not found" in done.stderr


def test_compile_writes_bundle(example, tmp_path):
    done = run_cli("compile", str(example("digits.ipynb")), "-o", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "b" / "steps").iterdir()) == [
        "01-data.ipynb", "02-train.ipynb", "03-evaluate.ipynb", "04-serve.ipynb"]


def test_help_does_not_import_heavy_modules():
    code = ("import sys, contextlib, io\nfrom jupyter_mlops import cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.main(['--help'])\n"
            "heavy = [m for m in ('papermill', 'scrapbook', 'pandas', 'sqlalchemy', 'nbformat') if m in sys.modules]\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_validate_loads_only_what_it_uses(example):
    """Start-up of a command that reads a notebook (issue 16): jsonschema's format checkers (rfc3987_syntax's grammar
    alone took 2.4 s), IPython's terminal shell (0.45 s, only its input transformer is used), the engine registry
    and asyncio are left out, nbformat validates without compiling its schema first (fastjsonschema, ~50 ms), and
    the notebook is validated all the same."""
    notebook = example("digits.ipynb")
    unused = ("rfc3987_syntax", "isoduration", "IPython", "prompt_toolkit", "asyncio", "jupyter_mlops.engines")
    code = ("import os, sys, contextlib, io\nfrom jupyter_mlops import cli\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    code = cli.main(['validate', {str(notebook)!r}])\n"
            f"print(code, [m for m in {unused!r} if sys.modules.get(m)], 'jsonschema' in sys.modules, "
            "'4 steps' in out.getvalue(), os.environ['NBFORMAT_VALIDATOR'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "0 [] True True jsonschema", done.stdout + done.stderr


def test_compile_is_deterministic(example, tmp_path):
    """The same notebook compiles to the same bytes (stable cell ids), so an image built from the bundle reuses
    its cached layers."""
    for out in ("a", "b"):
        assert run_cli("compile", str(example("digits.ipynb")), "-o", str(tmp_path / out)).returncode == 0
    import nbformat

    for step in (tmp_path / "a" / "steps").iterdir():
        assert step.read_bytes() == (tmp_path / "b" / "steps" / step.name).read_bytes(), step.name
        nbformat.validate(nbformat.read(step, as_version=nbformat.NO_CONVERT))  # written unchecked: made to it


def test_jupyter_subcommand_is_installed():
    # `jupyter mlops` finds the `jupyter-mlops` executable that the package installs
    bindir = os.path.dirname(sys.executable)
    assert os.path.exists(os.path.join(bindir, "jupyter-mlops"))
    done = subprocess.run([os.path.join(bindir, "jupyter"), "mlops", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip()


def test_runs_on_empty_workspace(tmp_path):
    done = run_cli("runs", "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 0 and "no runs yet" in done.stdout


def test_parallel_zero_is_refused(example):
    done = run_cli("run", str(example("digits.ipynb")), "--parallel", "0")
    assert done.returncode == 1 and "--parallel must be at least 1" in done.stderr


def test_names_and_run_ids_that_would_leave_the_workspace_are_refused(make_notebook):
    """Issue 14, items 9 and 10: the hidden `run --run-id ../../x` wrote outside the workspace."""
    nb = make_notebook([("x = 1", "data")])
    workspace = nb.parent / "ws" / ".mlops"
    done = run_cli("run", str(nb), "--run-id", "../../escaped", "--workspace", str(workspace))
    assert done.returncode == 1 and "is not a run id" in done.stderr and "Traceback" not in done.stderr
    assert not (workspace / "runs" / "../../escaped").resolve().exists()
    for args, words in [(("serve", "../../x"), "not usable"), (("promote", "m" * 64, "1"), "at most 63"),
                        (("monitor", "a/b"), "not usable"), (("serve", "ok@../x"), "alias")]:
        done = run_cli(*args, "--workspace", str(workspace))
        assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_runs_are_filtered_and_sorted_by_the_store(tmp_path):
    from jupyter_mlops.workspace import Workspace

    store = Workspace(tmp_path / "ws").store
    for i, (c, accuracy) in enumerate([(1, 0.8), (10, 0.95), (10, 0.91), (100, 0.99)]):
        store.create_run(f"run-{i}", "/w/digits.ipynb", "h", {"C": c}, "/tmp", [])
        store.record_metrics(run_id=f"run-{i}", step="evaluate", metrics={"accuracy": accuracy})
        store.finish_run(f"run-{i}", "succeeded")
    done = run_cli("runs", "--workspace", str(tmp_path / "ws"), "--filter", "C=10 accuracy>0.9",
                   "--sort", "metrics.accuracy", "--ascending")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("run-")]
    assert listed == ["run-2", "run-1"] and "2 of 2 matching runs" in done.stdout
    done = run_cli("runs", "--workspace", str(tmp_path / "ws"), "--filter", "epochs>3")
    assert done.returncode == 1 and 'named "epochs"' in done.stderr and "Traceback" not in done.stderr


def test_output_cut_short_by_a_pipe_ends_quietly(example):
    """`jupyter-mlops ... | head`: a reader that stops early is no error (it was a BrokenPipeError traceback)."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line is written
    try:
        done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "validate", str(example("digits.ipynb"))],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
