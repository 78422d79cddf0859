"""A three-stage DVC project with trivial commands, cloned as separate "hosts" sharing a DVC
remote folder: make -> train (a checkpoint folder: uncached, persistent) -> report (uncached)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

DVC_YAML = """\
stages:
  make:
    cmd: python -m toystage make --out data/a
    deps: [toystage.py]
    params: [make]
    outs: [data/a]
  train:
    cmd: python -m toystage train --data data/a --out models/b --checkpoints ckpt/b
    deps: [toystage.py, data/a]
    outs:
      - models/b
      - ckpt/b:
          cache: false
          persist: true
  report:
    cmd: python -m toystage report --models models/b --out report.txt
    deps: [models/b]
    outs:
      - report.txt:
          cache: false
"""

TOYSTAGE = '''\
"""Stages of the toy DVC project: each writes what its options name."""
import hashlib
import sys
from pathlib import Path

args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
command = sys.argv[1]
if command == "make":
    Path(args["--out"]).mkdir(parents=True, exist_ok=True)
    (Path(args["--out"]) / "data.txt").write_text("rows\\n")
elif command == "train":
    if Path("FAIL").exists():
        sys.exit("training failed: FAIL is present")
    ckpt, out = Path(args["--checkpoints"]), Path(args["--out"])
    found = sorted(p.name for p in ckpt.glob("step-*.pt")) if ckpt.is_dir() else []
    ckpt.mkdir(parents=True, exist_ok=True)
    blob = (Path(args["--data"]) / "data.txt").read_bytes() + b"weights"
    (ckpt / "step-00000002.pt").write_bytes(blob)
    (ckpt / "step-00000002.pt.sha256").write_text(hashlib.sha256(blob).hexdigest() + "  step-00000002.pt\\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.txt").write_text("resumed from: " + (found[-1] if found else "nothing") + "\\n")
elif command == "report":
    Path(args["--out"]).write_text((Path(args["--models"]) / "model.txt").read_text())
'''


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)}: {out.stdout}{out.stderr}"
    return out


def make_origin(tmp: Path) -> tuple[Path, Path]:
    """The project committed in tmp/origin, with tmp/remote as its default DVC remote."""
    origin, remote = tmp / "origin", tmp / "remote"
    origin.mkdir()
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / "toystage.py").write_text(TOYSTAGE)
    (origin / "params.yaml").write_text('make:\n  mode: "off"  # a string YAML 1.1 would read as false\n')
    (origin / ".gitignore").write_text("/data\n/models\n/ckpt\n/report.txt\n")
    run(["git", "init", "-q"], origin)
    run([str(BIN / "dvc"), "init", "-q"], origin)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], origin)
    run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote)], origin)
    commit(origin)
    return origin, remote


def commit(repo: Path) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "project"], repo)


def clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=repo, capture_output=True, text=True)
