"""The panel's frontend logic (labextension/src/logic.ts) under node's own test runner, as part of this suite."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).resolve().parent.parent / "labextension"


def test_frontend_logic_unit_tests():
    jlpm = shutil.which("jlpm")
    if not jlpm or not shutil.which("node"):
        pytest.fail("node and JupyterLab's jlpm are needed for the panel's tests (install nodejs, jupyterlab)")
    if not (LABEXTENSION / "node_modules" / "typescript").exists():
        subprocess.run([jlpm, "install"], cwd=LABEXTENSION, check=True, capture_output=True, timeout=600)
    done = subprocess.run([jlpm, "test"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout  # tests ran, none failed


def test_lockfile_lists_every_dependency_of_package_json():
    """CI installs with `--immutable`: a dependency added to package.json without `jlpm install` fails the build."""
    import json
    import re

    package = json.loads((LABEXTENSION / "package.json").read_text())
    lock = (LABEXTENSION / "yarn.lock").read_text()
    entry = re.search(r'^"[^"\n]*@workspace:\.":\n(?:  .*\n|\n(?=  ))*', lock, re.M)
    assert entry, "yarn.lock has no entry for the labextension's own workspace: run `jlpm install` in labextension/"
    locked = dict(re.findall(r'^    "?([^":\s]+(?:/[^":\s]+)?)"?: (\S+)$', entry.group(0), re.M))
    wanted = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    stale = {name: spec for name, spec in wanted.items() if locked.get(name) != spec}
    assert not stale, f"yarn.lock is out of date for {sorted(stale)}: run `jlpm install` in labextension/ and commit it"
