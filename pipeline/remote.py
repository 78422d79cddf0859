"""Stage outputs shared between hosts through the checkout's default DVC remote.

A stage run on one host publishes, in this order: its cached outputs (`dvc commit` then
`dvc push` of the stage), its uncached outputs file by file (checkpoint folders, figures kept
in git), and last its record: the stage's dvc.lock entry plus where and how it ran. The
record is the commit point: a stage counts as available elsewhere once its record exists.
Another host merges the records it needs into its own dvc.lock and pulls exactly the outputs
its stage depends on. Layout inside the remote, beside DVC's own `files/md5/`:

    grid/stages/<stage address>.yaml     the record
    grid/files/<output path>/...         the uncached outputs, mirrored

While a training stage runs, its resume state (the uncached persistent outputs: checkpoint
folders) is pushed each time a checkpoint appears (`CheckpointPusher`), so a host lost
mid-cell costs at most `train.checkpoint_every` iterations: the next host downloads the
state and the training loop resumes from it. DVC commands on one checkout are serialised by
a lock file (several stage processes of one host share the checkout).
"""

from __future__ import annotations

import contextlib
import posixpath
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dvc.utils.serialize import dumps_yaml, load_yaml, modify_yaml, parse_yaml

from pipeline.devices import host_lock
from pipeline.io import atomic_write
from pipeline.plan import find_stage, overlaps, target

PREFIX = "grid"  # folder of this module's files inside the DVC remote
LOCK_FILE = ".dvc/tmp/grid-dvc.lock"  # serialises DVC commands on one checkout
SLOTS_DIR = ".dvc/tmp/grid-slots"  # HostSlots' lock files


class RemoteMissing(RuntimeError):
    """The checkout has no default DVC remote."""


@dataclass(frozen=True)
class Output:
    """One output of a stage: path relative to the repository, cached by DVC or not, persistent or not."""

    path: str
    cached: bool
    persist: bool


def stage_io(root: str | Path, name: str) -> tuple[list[str], list[Output], dict[str, list[Output]]]:
    """A stage's dependency paths, its outputs, and the outputs of each stage upstream of it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        stage = find_stage(graph, name, root)
        return [str(d.def_path) for d in stage.deps], outputs(stage), {u.name: outputs(u) for u in graph.successors(stage)}


def stage_outputs(root: str | Path, names: list[str]) -> dict[str, list[Output]]:
    """The outputs of each of the stages `names`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        return {name: outputs(find_stage(graph, name, root)) for name in names}


def outputs(stage) -> list[Output]:
    return [Output(str(o.def_path), bool(o.use_cache), bool(o.persist)) for o in stage.outs]


def host_name(root: str | Path) -> str:
    """Where a stage ran: this host and its checkout."""
    return f"{socket.gethostname()}:{Path(root).resolve()}"


class SharedRemote:
    """The default DVC remote of the checkout at `root`, as the hosts of a grid share it."""

    def __init__(self, root: str | Path):
        from dvc.repo import Repo

        self.root = Path(root).resolve()
        with Repo(str(self.root)) as repo:
            if not repo.config["core"].get("remote"):
                raise RemoteMissing(f"{self.root} has no default DVC remote: on every host run `dvc remote add -d "
                                    "shared <url>` (a folder, ssh://host/path or s3://bucket/path) with the same url")
            remote = repo.cloud.get_remote()
        self.fs, self.url = remote.fs, remote.path
        self.base = self.fs.join(remote.path, PREFIX)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Around DVC commands on this checkout: its lock, and the checkout as working directory
        (DVC resolves some stage paths against it; a worker's flow runs already start there)."""
        with host_lock(self.root / LOCK_FILE), contextlib.chdir(self.root):
            yield

    # ------------------------------------------------------------------ records

    def _record_path(self, name: str) -> str:
        return self.fs.join(self.base, "stages", f"{name}.yaml")

    def read_record(self, name: str) -> dict | None:
        path = self._record_path(name)
        return parse_record(self.fs.cat_file(path), path) if self.fs.exists(path) else None

    def records(self) -> dict[str, dict]:
        """Every stage record in the remote, by stage address."""
        folder = self.fs.join(self.base, "stages")
        if not self.fs.exists(folder):
            return {}
        found = {}
        for path in self.fs.find(folder):
            name = posixpath.basename(path)
            if name.endswith(".yaml") and not name.startswith("."):
                found[name[: -len(".yaml")]] = parse_record(self.fs.cat_file(path), path)
        return found

    def write_record(self, name: str, record: dict) -> None:
        """Upload the record under a temporary name, then rename it into place (never half a record)."""
        path = self._record_path(name)
        local = self.root / ".dvc" / "tmp" / f"record-{name}.yaml"
        atomic_write(local, lambda tmp: tmp.write_text(dumps_yaml(record)))
        tmp = self.fs.join(self.base, "stages", f".{name}.{socket.gethostname()}.tmp")
        self.fs.put_file(str(local), tmp)
        self.fs.mv(tmp, path)
        local.unlink()

    def merge_records(self, records: dict[str, dict]) -> None:
        """Write the records' dvc.lock entries into this checkout's dvc.lock."""
        if not records:
            return
        with self.lock(), modify_yaml(str(self.root / "dvc.lock")) as data:
            if not data:
                data["schema"] = "2.0"
            data["stages"] = data.get("stages") or {}
            for name, record in records.items():
                data["stages"][name] = record["lock"]

    # ------------------------------------------------------------------ uncached outputs, file by file

    def _remote_file(self, relpath: str) -> str:
        return self.fs.join(self.base, "files", *Path(relpath).parts)

    def _remote_files(self, relpath: str) -> dict[str, str]:
        """The mirrored files of output `relpath`: path relative to it -> remote path."""
        top = self._remote_file(relpath)
        if not self.fs.exists(top):
            return {}
        if self.fs.isfile(top):
            return {"": top}
        return {posixpath.relpath(p, top): p for p in self.fs.find(top) if not posixpath.basename(p).startswith(".")}

    def upload(self, relpath: str, names: list[str] | None = None) -> list[str]:
        """Copy output `relpath` (a file, or the files `names` of a folder; None = all of them)
        to the remote; returns the names copied (checksum files after the files they check)."""
        local = self.root / relpath
        if local.is_file():
            self.fs.put_file(str(local), self._remote_file(relpath))
            return [""]
        names = sorted(names if names is not None else local_files(local), key=lambda n: (n.endswith(".sha256"), n))
        copied = []
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile by the training loop
                self.fs.put_file(str(local / name), self.fs.join(self._remote_file(relpath), *name.split("/")))
                copied.append(name)
        return copied

    def prune(self, relpath: str) -> None:
        """Remove the remote copies of files output `relpath` no longer has here."""
        local = self.root / relpath
        present = set(local_files(local)) if local.is_dir() else {""} if local.exists() else set()
        for name, path in self._remote_files(relpath).items():
            if name not in present:
                self.fs.rm(path)

    def download(self, relpath: str, exact: bool) -> int:
        """Copy output `relpath` from the remote (each file atomically); with `exact`, also delete
        the files the remote copy lacks. Returns the number of files copied."""
        files = self._remote_files(relpath)
        local = self.root / relpath
        for name, path in files.items():
            atomic_write(local / name if name else local, lambda tmp, path=path: self.fs.get_file(path, str(tmp)))
        if exact and local.is_dir():
            for name in set(local_files(local)) - set(files):
                (local / name).unlink()
        return len(files)

    # ------------------------------------------------------------------ stages

    def pull_dependencies(self, name: str, log: Callable[[str], None]) -> list[str]:
        """Merge the records of the stages upstream of `name` into dvc.lock and fetch the outputs
        of theirs that `name` depends on (cached ones through `dvc pull`); returns their paths.
        An upstream stage without a record raises ValueError."""
        from dvc.repo import Repo

        deps, _, upstream = stage_io(self.root, name)
        records = {}
        for up in upstream:
            records[up] = self.read_record(up)
            if records[up] is None:
                raise ValueError(f"{name} depends on {up}, which has no record in the DVC remote {self.url}: "
                                 "it has not run on any host yet")
        self.merge_records(records)
        needed = [o for outs in upstream.values() for o in outs if any(overlaps(o.path, d) for d in deps)]
        cached = [o.path for o in needed if o.cached]
        if cached:
            with self.lock(), Repo(str(self.root)) as repo:
                repo.pull(targets=[str(self.root / p) for p in cached], force=True)
        for out in needed:
            if not out.cached:
                self.download(out.path, exact=True)
        log(f"{name}: pulled {', '.join(o.path for o in needed) or 'nothing'} from {self.url}")
        return [o.path for o in needed]

    def pull_outputs(self, names: list[str]) -> list[str]:
        """Merge the records of stages `names` into dvc.lock and fetch all their outputs exactly;
        returns the stages that had a record."""
        from dvc.repo import Repo

        found = self.records()
        records = {n: found[n] for n in names if n in found}
        self.merge_records(records)
        if records:
            with self.lock(), Repo(str(self.root)) as repo:
                repo.pull(targets=[target(self.root, n) for n in records], force=True)
        for outs in stage_outputs(self.root, list(records)).values():
            for out in outs:
                if not out.cached:
                    self.download(out.path, exact=True)
        return list(records)

    def pull_resume_state(self, name: str) -> list[str]:
        """Download the stage's uncached persistent outputs (checkpoint folders) as last pushed; their paths."""
        paths = [o.path for o in stage_io(self.root, name)[1] if not o.cached and o.persist]
        for path in paths:
            self.download(path, exact=False)
        return paths

    def publish(self, name: str, meta: dict) -> dict:
        """Record the stage here (`dvc commit -f`), push its cached outputs, mirror its uncached
        ones, then write its record (its dvc.lock entry and `meta`); returns the record."""
        from dvc.repo import Repo

        with self.lock():
            with Repo(str(self.root)) as repo:
                repo.commit(target(self.root, name), force=True)
            entry = load_yaml(str(self.root / "dvc.lock"))["stages"][name]
            with Repo(str(self.root)) as repo:
                repo.push(targets=[target(self.root, name)])
        for out in stage_io(self.root, name)[1]:
            if not out.cached:
                self.upload(out.path)
                self.prune(out.path)
        record = {"stage": name, "lock": entry, "ran_on": host_name(self.root), **meta}
        self.write_record(name, record)
        return record


def parse_record(text: bytes | str, path: str) -> dict:
    """A record, read as DVC reads dvc.lock (YAML 1.2: `off` stays a string, as params.yaml means it)."""
    return parse_yaml(text.decode() if isinstance(text, bytes) else text, path)


def local_files(folder: Path) -> list[str]:
    """Files under `folder`, relative to it, without hidden ones (temporary files of atomic writes)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


class CheckpointPusher:
    """While a stage runs, push each new file of its resume-state folders to the remote (every
    `poll_s` seconds: a checkpoint and then its checksum file), and remove the remote copies
    of the files the training loop pruned. Used as a context manager around the stage."""

    def __init__(self, remote: SharedRemote, paths: list[str], poll_s: float = 1.0,
                 log: Callable[[str], None] = lambda line: None):
        self.remote, self.paths, self.poll_s, self.log = remote, paths, poll_s, log
        self.sent: dict[tuple[str, str], tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="checkpoint-pusher")

    def mark_present(self) -> None:
        """Files already equal to the remote's (just downloaded) need no upload."""
        for path in self.paths:
            for name in local_files(self.remote.root / path) if (self.remote.root / path).is_dir() else []:
                self.sent[path, name] = self._stamp(self.remote.root / path / name)

    @staticmethod
    def _stamp(file: Path) -> tuple[int, int]:
        st = file.stat()
        return st.st_size, st.st_mtime_ns

    def push_new(self) -> None:
        """One pass: upload new or rewritten files, then prune."""
        for path in self.paths:
            folder = self.remote.root / path
            if not folder.is_dir():
                continue
            new = []
            for name in local_files(folder):
                with contextlib.suppress(FileNotFoundError):
                    if self.sent.get((path, name)) != self._stamp(folder / name):
                        new.append(name)
            if new:
                stamps = {n: self._stamp(folder / n) for n in new if (folder / n).exists()}
                for name in self.remote.upload(path, [n for n in new if n in stamps]):
                    self.sent[path, name] = stamps[name]
                    if name.endswith(".sha256"):
                        self.log(f"pushed {path}/{name[: -len('.sha256')]} to the DVC remote")
                self.remote.prune(path)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.push_new()
            except Exception as e:  # a transient remote error: the next pass tries again
                self.log(f"checkpoint push failed, retrying: {type(e).__name__}: {e}")

    def __enter__(self) -> "CheckpointPusher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def pushing_checkpoints(remote: SharedRemote, paths: list[str], log: Callable[[str], None]) -> Iterator[None]:
    """CheckpointPusher around a block, the downloaded state marked as already pushed."""
    pusher = CheckpointPusher(remote, paths, log=log)
    pusher.mark_present()
    with pusher:
        yield
