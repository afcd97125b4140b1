"""What data a step read, and whether it has changed since.

The step executor (engines/steps.py) asks the step's kernel to `watch()` before the step's first cell, and to
`finish()` (the report, and the profiles of the step's outputs for the data checks) with the wipe after its last
one. Both are silent requests, so they add no cell to the step
notebook and no round trip of their own at the end. Between the two, three things are recorded:
- the files the step's code opens for reading and the folders it lists, through Python's audit hooks (`open`,
  `os.listdir`, `os.scandir`; this also covers pandas, numpy, pickle and anything else that opens through Python);
- the fsspec URLs it opens for reading (s3://, gs://, memory://, ...), through a wrapper on fsspec's `open`;
`report()` then fingerprints each one. Paths declared with `--watch` are fingerprinted by the run itself when it
starts (orchestration.watched_data).

What is left out: imports and package metadata lookups (their opens and folder listings; the folders on
`sys.path`, the notebook's own among them, are never taken as data folders), Python's own files, Jupyter's and
the tools' caches and configuration, `/proc`, `/dev`, `/sys`, `/etc` and `/usr`, the run's artifacts, and files
the step writes (a file one step writes and the next reads is not the run's input either).
Files opened by native code that bypasses Python's `open` are not seen; pyarrow's own parquet reader is one. Name
those with `--watch`.

Fingerprints:
- A file up to HASH_WHOLE_UP_TO bytes is hashed whole, streamed (`sha256`).
- A larger file is hashed from its size and SAMPLES blocks spread over it (`sampled`). This is cheap and catches
  appends and most rewrites, but not a change confined to bytes between the samples.
- A folder is hashed from its listing: each entry's name, size and modification time (`listing`).
- A URL uses its store's own checksum, built from the ETag or modification time and the size (`fsspec-checksum`).

The scheduler calls `changed()` on the host to compare what a run read with what is there now. This module runs in
every step kernel, so it imports only what it uses.
"""
from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

HASH_WHOLE_UP_TO = 256 << 20
SAMPLES, BLOCK = 8, 4 << 20  # a sampled fingerprint reads 32 MiB, whatever the size
MAX_ENTRIES = 500  # per step: a step that opens more files (an image folder) is better watched as its folder
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "import"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd", ".pth", ".dll", ".dylib")


class _Recorder:
    def __init__(self) -> None:
        self.active = False
        self.opened: dict[str, None] = {}  # insertion-ordered sets
        self.listed: dict[str, None] = {}
        self.urls: dict[str, None] = {}
        self.written: set[str] = set()
        self.artifacts = ""


_recorder = _Recorder()
_installed = False
_fsspec_wrapped = False


_IMPORT_SYSTEM = ("<frozen importlib", os.sep + "importlib" + os.sep, os.sep + "pkgutil.py",
                  os.sep + "pkg_resources" + os.sep)


def _in_import() -> bool:
    """Whether the event comes from the import system: a module's source read, sys.path folders listed for an
    import or for installed packages' metadata (entry points)."""
    frame = sys._getframe(2)
    for _ in range(40):
        if frame is None:
            return False
        if any(part in frame.f_code.co_filename for part in _IMPORT_SYSTEM):
            return True
        frame = frame.f_back
    return False


def _hook(event: str, args: tuple) -> None:
    if event not in _EVENTS:
        return
    if event == "import":  # fsspec is wrapped as soon as a step imports it (pandas does, to read a URL)
        if not _fsspec_wrapped and "fsspec.spec" in sys.modules:
            _wrap_fsspec()
        return
    if not _recorder.active:
        return
    target = args[0]
    if isinstance(target, int) or target is None:  # an open file descriptor: its path was seen when it was opened
        return
    try:
        path = os.path.abspath(os.fsdecode(target))
    except (TypeError, ValueError):
        return
    if event == "open":
        mode, flags = args[1], args[2]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        if writes:
            _recorder.written.add(path)
        elif len(_recorder.opened) < 100_000 and path not in _recorder.opened and not _in_import():
            _recorder.opened[path] = None
    elif path not in _recorder.listed and not _in_import():
        _recorder.listed[path] = None


def _wrap_fsspec() -> None:
    """fsspec's remote filesystems read through the network, not through `open`: note the URLs they open. Called
    once fsspec is imported (not importing it here: most steps never need it)."""
    global _fsspec_wrapped
    base = getattr(sys.modules.get("fsspec.spec"), "AbstractFileSystem", None)
    original = getattr(base, "open", None)
    if original is None:  # fsspec.spec is still being imported: the next import event tries again
        return
    _fsspec_wrapped = True
    if getattr(original, "mlops_wrapped", False):
        return

    def open(self, path, mode="rb", *args, **kwargs):  # noqa: A001 - the method it stands for
        if _recorder.active and not _local(self):
            try:
                url = self.unstrip_protocol(self._strip_protocol(path))
                if any(c in mode for c in "wax+"):
                    _recorder.written.add(url)
                elif len(_recorder.urls) < 100_000:
                    _recorder.urls[url] = None
            except Exception:  # noting must never break the user's read
                pass
        return original(self, path, mode, *args, **kwargs)

    open.mlops_wrapped = True
    base.open = open


def _local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


def watch(artifacts: str = "") -> None:
    """Start recording this step's reads (the first generated cell of every step notebook). The hook is added once
    per kernel process; a warm kernel's later steps only clear the record."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    if not _fsspec_wrapped and "fsspec.spec" in sys.modules:
        _wrap_fsspec()
    _recorder.__init__()
    _recorder.artifacts = artifacts
    _recorder.active = True


def _excluded_roots(artifacts: str) -> tuple[str, ...]:
    import site
    import sysconfig

    home = os.path.expanduser("~")
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages(),
             *(p for p in sysconfig.get_paths().values() if p),
             "/proc", "/sys", "/dev", "/etc", "/usr", "/run",
             *(os.path.join(home, d) for d in (".ipython", ".jupyter", ".cache", ".config", ".local", ".matplotlib",
                                               ".keras", ".nv"))}
    if artifacts and "://" not in artifacts:
        roots.add(os.path.abspath(artifacts))
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def _kept(path: str, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return not (real.endswith(_CODE_SUFFIXES) or os.path.join(real, "").startswith(roots)
                or os.path.basename(os.path.dirname(real)).startswith(("mlops-in-", "mlops-out-")))


def recorded() -> list[tuple[str, str]]:
    """What this step read so far, as (kind, path or URL): files, then folders, then URLs."""
    _recorder.active = False
    roots = _excluded_roots(_recorder.artifacts)
    written = _recorder.written
    found: dict[str, str] = {}
    for path in _recorder.opened:
        if path not in written and os.path.isfile(path) and _kept(path, roots):
            found.setdefault(path, "file")
    on_sys_path = {os.path.realpath(p or ".") for p in sys.path}  # listed by tools looking for packages
    for path in _recorder.listed:
        if os.path.isdir(path) and _kept(path, roots) and os.path.realpath(path) not in on_sys_path:
            found.setdefault(path, "folder")
    artifacts = _recorder.artifacts if "://" in _recorder.artifacts else None
    for url in _recorder.urls:
        if url not in written and not (artifacts and url.startswith(artifacts.rstrip("/") + "/")):
            found.setdefault(url, "url")
    return [(kind, path) for path, kind in found.items()]


def report() -> dict:
    """Stop recording and fingerprint what the step read: {"reads": [...], "writes": [the paths it wrote]}. A step
    that read more than MAX_ENTRIES things keeps the first ones and says how many more."""
    reads = recorded()
    entries = [fingerprint(path, kind) for kind, path in reads[:MAX_ENTRIES]]
    if len(reads) > MAX_ENTRIES:
        entries.append({"path": f"... {len(reads) - MAX_ENTRIES} more", "kind": "omitted", "method": "omitted",
                        "digest": None, "size": None, "mtime": None})
    return {"reads": entries, "writes": sorted(_recorder.written)[:MAX_ENTRIES]}


_last: str | None = None


def finish(namespace: dict, spec: str) -> None:
    """The step's end, in its kernel before the wipe: its reads (`report`) and the profiles of the output values
    later steps read (data_checks.py), kept for `last_json`. `spec` is JSON: {"outputs": [names], "ranges": the
    baseline's ranges per output and column}."""
    global _last
    import json

    wanted = json.loads(spec)
    found = report()
    if wanted.get("outputs"):
        from .data_checks import profiles

        found["profiles"] = profiles(namespace, wanted["outputs"], wanted.get("ranges"))
    _last = json.dumps(found, default=str)


def last_json() -> str | None:
    """What `finish` found, once (the executor's request after the wipe reads it)."""
    global _last
    found, _last = _last, None
    return found


def _file_digest(path: str, size: int) -> tuple[str, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= HASH_WHOLE_UP_TO:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest(), "sha256"
        digest.update(str(size).encode())
        for i in range(SAMPLES):
            f.seek((size - BLOCK) * i // (SAMPLES - 1))
            digest.update(f.read(BLOCK))
    return digest.hexdigest(), "sampled"


def _folder_digest(path: str) -> str:
    digest = hashlib.sha256()
    with os.scandir(path) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                st = entry.stat()
                digest.update(f"{entry.name}\0{entry.is_dir()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:  # vanished while listed
                digest.update(f"{entry.name}\0?\n".encode())
    return digest.hexdigest()


def fingerprint(path: str, kind: str) -> dict:
    """One read's fingerprint, now: {path, kind, size, mtime, digest, method}; `missing` when it is gone (a
    fingerprint too: its reappearance is a change)."""
    entry: dict[str, Any] = {"path": path, "kind": kind, "size": None, "mtime": None}
    try:
        if kind == "url":
            import fsspec

            fs, inner = fsspec.core.url_to_fs(path)
            info = fs.info(inner)
            entry.update(size=info.get("size"), digest=str(fs.checksum(inner)), method="fsspec-checksum")
            return entry
        st = os.stat(path)
        entry.update(size=st.st_size, mtime=st.st_mtime)
        if kind == "folder":
            entry.update(digest=_folder_digest(path), method="listing")
        else:
            digest, method = _file_digest(path, st.st_size)
            entry.update(digest=digest, method=method)
    except FileNotFoundError:
        entry.update(digest=None, method="missing")
    except Exception as exc:  # unreadable now (permissions, network): said, and compared as such
        entry.update(digest=None, method="unreadable", error=f"{type(exc).__name__}: {exc}"[:300])
    return entry


def changed(entries: list[dict]) -> list[dict]:
    """Which of a run's reads differ from what is there now: each with `now`, the current fingerprint. A file whose
    size and modification time are unchanged is taken as unchanged without being read again."""
    differ = []
    for old in entries:
        if old.get("kind") == "omitted":
            continue
        if old.get("kind") == "file" and old.get("method") in ("sha256", "sampled"):
            try:
                st = os.stat(old["path"])
                if st.st_size == old.get("size") and st.st_mtime == old.get("mtime"):
                    continue
            except OSError:
                pass
        now = fingerprint(old["path"], old["kind"])
        if (now.get("digest"), now.get("method")) != (old.get("digest"), old.get("method")):
            differ.append({**old, "now": now})
    return differ


def combined(entries: list[dict]) -> str:
    """One digest over a run's reads: the same data read gives the same value (a schedule claims a change once)."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: (e["path"], e["kind"])):
        digest.update(f"{entry['kind']}\0{entry['path']}\0{entry.get('digest')}\0{entry.get('method')}\n".encode())
    return digest.hexdigest()
