"""Prefect orchestration (pipeline/flows.py): the plan DVC gives, devices, faults, and a tiny
grid run through a real Prefect server, process work pool and worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from pipeline import flows
from pipeline import run as stages
from pipeline.config import ConfigError, load_params, parse_params
from pipeline.data import FASHION_MNIST_DEFAULT, FASHION_MNIST_ENV
from tests.conftest import ROOT, tiny_params

BIN = Path(sys.executable).parent
CELLS = [(d, m, s) for d in ("toy2d", "fashion_mnist") for m in ("vae", "avae_b") for s in (0, 1)]


def fashion_mnist_available() -> bool:
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT, "t10k-labels-idx1-ubyte.gz").exists()


def tiny_grid(raw: dict) -> dict:
    """params.yaml cut down to toy2d + 1,000 Fashion-MNIST images, 2 seeds, vae -> avae_b."""
    raw["datasets"]["fashion_mnist"].update({"n_train": 1000, "n_test": 200})
    raw["datasets"]["toy2d"] = {"n_train": 1000, "n_test": 200, "seed": 0}
    raw["grid"].update({"datasets": ["toy2d", "fashion_mnist"], "seeds": [0, 1], "pretrain": ["vae"],
                        "baselines": [], "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["vae", "avae_b"]})
    raw["networks"] = {"width": 4, "latent_dim": 8, "mlp_hidden": 16}
    raw["train"].update({"iterations": 20, "log_every": 5, "checkpoint_every": 10, "threads": 1, "device": "cpu"})
    raw["models"]["vae"]["train"] = {"iterations": 20}
    raw["evaluate"].update({"n_samples": 200, "batch_size": 100, "metrics": ["mse", "kl", "fd_classifier", "fd_data"]})
    raw["classifier"].update({"epochs": 1})
    raw["orchestration"] = {"retries": 1, "retry_delay_s": 0}
    small_toy = {"vae_iterations": 50, "avae_iterations": 50, "sweep_points": 100, "xi_draws": 2, "plot_points": 200,
                 "threads": 1}
    if "toy" in raw:  # the AVAE §5.1 figure stage (outside the grid): tiny too
        raw["toy"].update({k: v for k, v in small_toy.items() if k in raw["toy"]})
    return raw


def make_repo(tmp_path: Path) -> Path:
    """A temporary copy of the repository (code, dvc.yaml, prefect.yaml, tiny params) with git and DVC."""
    work = tmp_path / "repo"
    work.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for item in ("pipeline", "stages", "dvc.yaml", "pyproject.toml", "prefect.yaml"):
        src = ROOT / item
        (shutil.copytree(src, work / item, ignore=ignore) if src.is_dir() else shutil.copy(src, work / item))
    raw = tiny_grid(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    return work


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("flows"))


# ------------------------------------------------------------------ the plan


def test_plan_covers_the_grid_upstream_first(repo):
    params = load_params(repo / "params.yaml")
    calls = flows.plan_grid(repo, params)
    names = [c.name for c in calls]
    # 2 prepare, 4 VAEs, 4 stage-2 models, 2 classifiers, 8 evaluations, aggregate; and stages outside the grid
    assert len([c for c in calls if c.dataset]) == 20
    assert max(i for i, c in enumerate(calls) if c.stage == "evaluate") < names.index("aggregate")
    listed = dvc(repo, "stage", "list", "--name-only").stdout.split()
    assert sorted(names) == sorted(listed)  # the whole grid = every stage of dvc.yaml
    for i, call in enumerate(calls):
        assert set(call.upstream) <= set(names[:i]), f"{call.name} comes before its upstream {call.upstream}"
        assert not call.up_to_date  # nothing has run in the new repository
    by_name = {c.name: c for c in calls}
    stage2 = by_name["train@fashion_mnist-row0-1"]
    assert stage2.label == "train avae_b/fashion_mnist/seed1"
    assert set(stage2.upstream) == {"prepare@fashion_mnist", "pretrain_vae@fashion_mnist-vae-1"}
    evaluate = by_name["evaluate@toy2d-vae-0"]
    assert set(evaluate.upstream) == {"prepare@toy2d", "pretrain_vae@toy2d-vae-0", "train_classifier@toy2d"}
    assert evaluate.option("--out") == "evals/toy2d/vae/seed0"
    assert by_name["prepare@toy2d"].label == "prepare toy2d" and by_name["aggregate"].upstream
    # every (dataset, model, seed) cell is evaluated exactly once
    assert sorted((c.dataset, c.model, c.seed) for c in calls if c.stage == "evaluate") == sorted(CELLS)


def test_plan_of_one_cell_pulls_in_what_it_needs(repo):
    params = load_params(repo / "params.yaml")
    calls = flows.plan_grid(repo, params, datasets=["toy2d"], seeds=[1], models=["avae_b"], aggregate=False)
    assert [c.name for c in calls][:1] == ["prepare@toy2d"]
    assert {c.name for c in calls} == {"prepare@toy2d", "pretrain_vae@toy2d-vae-1", "train@toy2d-row0-1",
                                       "train_classifier@toy2d", "evaluate@toy2d-avae_b-1"}


def test_selection_outside_the_grid_is_refused(repo):
    params = load_params(repo / "params.yaml")
    with pytest.raises(ConfigError, match=r"grid\.seeds.*\[7\].*params\.yaml"):
        flows.plan_grid(repo, params, seeds=[7])
    with pytest.raises(ConfigError, match="gan"):
        flows.plan_grid(repo, params, models=["gan"])


def test_stage_cell_reads_positional_arguments():
    assert flows.stage_cell(["python", "-m", "stages.train", "d", "m", "3", "--out", "x"]) == ("d", "m", 3)
    assert flows.stage_cell(["python", "-m", "stages.prepare", "d", "--out", "x"]) == ("d", None, None)
    assert flows.stage_cell(["python", "-m", "stages.aggregate", "--evals", "e"]) == (None, None, None)


# ------------------------------------------------------------------ devices


def test_device_pool_one_task_per_gpu(monkeypatch):
    cfg = parse_params(tiny_params()).orchestration
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    pool = flows.DevicePool.detect(cfg)
    assert pool.devices == ["0", "2"]
    held, both_inside = [], threading.Barrier(2)

    def hold():
        with pool.acquire() as device:
            held.append(device)
            both_inside.wait(timeout=30)  # breaks (and fails the test) unless two tasks run at once

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held) == ["0", "2"] and not both_inside.broken  # two tasks at once, each on its own GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert flows.DevicePool.detect(cfg).devices == [None]  # no GPU: one CPU slot, cells in sequence
    explicit = parse_params(tiny_params(orchestration={"devices": "1,3"})).orchestration
    assert flows.DevicePool.detect(explicit).devices == ["1", "3"]
    packed = parse_params(tiny_params(orchestration={"devices": "1,3", "cells_per_gpu": 3})).orchestration
    assert flows.DevicePool.detect(packed).devices == ["1", "3"] * 3  # the first two tasks on different GPUs
    with pytest.raises(ConfigError, match="orchestration.devices"):
        parse_params(tiny_params(orchestration={"devices": "gpu0"}))
    with pytest.raises(ConfigError, match="orchestration.retry"):
        parse_params(tiny_params(orchestration={"retry": 2}))


def test_packed_cells_share_a_gpu_at_once(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    pool = flows.DevicePool.detect(parse_params(tiny_params(orchestration={"cells_per_gpu": 3})).orchestration)
    held, all_inside = [], threading.Barrier(3)

    def hold():
        with pool.acquire() as device:
            held.append(device)
            all_inside.wait(timeout=30)  # breaks (and fails the test) unless three tasks hold GPU 5 at once

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert held == ["5", "5", "5"] and not all_inside.broken


def call_of(argv: list[str], name: str = "train@d-m-0") -> flows.StageCall:
    return flows.StageCall(name=name, stage="train", argv=tuple(argv), upstream=(), dataset="d", model="m", seed=0,
                           up_to_date=False)


def test_stage_process_gets_its_gpu_and_failures_carry_the_error(tmp_path):
    lines: list[str] = []
    show = "import os; print('visible', os.environ['CUDA_VISIBLE_DEVICES'])"
    result = flows.execute_stage(call_of(["python", "-c", show]), str(tmp_path), flows.DevicePool(["3"]), True,
                                 lines.append)
    assert result["status"] == "done" and result["device"] == "3"
    assert "train m/d/seed0 | visible 3" in lines
    crash = "import sys; print('loss became nan'); sys.exit(4)"
    with pytest.raises(flows.StageFailed, match="status 4.*loss became nan"):
        flows.execute_stage(call_of(["python", "-c", crash]), str(tmp_path), flows.DevicePool(["0"]), True,
                            lines.append)
    skipped = flows.StageCall(**{**call_of(["false"]).__dict__, "up_to_date": True})
    assert flows.execute_stage(skipped, str(tmp_path), flows.DevicePool([None]), True, lines.append)["status"] == \
        "skipped"


def test_stage_in_process_on_cpu(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    lines: list[str] = []
    argv = ["python", "-m", "stages.prepare", "toy2d", "--out", "prepared/toy2d"]
    pool = flows.DevicePool([None])
    result = flows.execute_stage(call_of(argv, "prepare@toy2d"), str(tmp_path), pool, True, lines.append)
    assert result["status"] == "done" and (tmp_path / "prepared" / "toy2d" / "meta.json").exists()
    assert any("running on CPU (in process)" in line for line in lines)
    bad = ["python", "-m", "stages.prepare", "no_such_data", "--out", "prepared/x"]
    with pytest.raises(flows.StageFailed, match="status 2.*no_such_data"):
        flows.execute_stage(call_of(bad, "prepare@x"), str(tmp_path), pool, True, lines.append)
    assert Path.cwd() != tmp_path and sys.argv[0] != "stages.prepare"  # the process is as it was


# ------------------------------------------------------------------ failures and vector data


def test_failed_cell_row_reaches_the_table(tmp_path):
    params = parse_params(tiny_params())
    df = stages.record_failed_cell(params, "toy2d", "avae_b", 0, tmp_path / "evals" / "toy2d" / "avae_b" / "seed0",
                                   "train@toy2d-avae_b-0", "RuntimeError: boom")
    row = df.iloc[0]
    assert (row.status, row.metric, row.method, row.seed) == ("failed", "cell", "avae", 0)
    assert "train@toy2d-avae_b-0: RuntimeError: boom" == row.reason
    back = pd.read_parquet(tmp_path / "evals" / "toy2d" / "avae_b" / "seed0" / "metrics.parquet")
    assert back.status.tolist() == ["failed"]


def test_classifier_stage_on_vector_data_says_not_applicable(toy_prepared, tmp_path):
    params = parse_params(tiny_params())
    assert stages.train_classifier(params, "toy2d", tmp_path / "toy2d", tmp_path / "clf") is None
    record = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert record["applicable"] is False and "fd_data" in record["reason"]


# ------------------------------------------------------------------ a real Prefect server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a process group we started (server or worker)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class PrefectStack:
    """`prefect server start` on a free port with its own PREFECT_HOME, a process work pool
    and a worker, all ended by close()."""

    def __init__(self, work: Path, home: Path):
        self.work, self.port = work, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
                    "PREFECT_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_UI_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
                    "PREFECT_WORKER_HEARTBEAT_SECONDS": "5", "PREFECT_CLI_WRAP_LINES": "false",
                    "PYTHONPATH": str(work), "VAEGAN_REPO": str(work)}
        self.procs: list[subprocess.Popen] = []
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *cmd: str) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=self.work, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BIN / "prefect"), *args], cwd=self.work, env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
        return out

    def wait_healthy(self, timeout: float = 120) -> None:
        end = time.time() + timeout
        while time.time() < end:
            assert self.procs[0].poll() is None, (self.logs / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Prefect server not healthy after {timeout} s")

    def post(self, path: str, body: dict) -> list | dict:
        r = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def run_deployment(self, name: str, parameters: dict | None = None, timeout: float = 600) -> dict:
        """Trigger a deployment; wait for the flow run to end; return it."""
        dep = httpx.get(f"{self.api}/deployments/name/{name}", timeout=30).json()
        run = self.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": parameters or {}})
        end = time.time() + timeout
        while time.time() < end:
            run = httpx.get(f"{self.api}/flow_runs/{run['id']}", timeout=30).json()
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        raise TimeoutError(f"flow run {run['id']} still {run['state']['type']} after {timeout} s; logs in {self.logs}")

    def task_runs(self, flow_run_id: str) -> dict[str, dict]:
        runs = self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
        return {r["name"]: r for r in runs}

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


def dvc(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=work, capture_output=True, text=True,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(work.parent)})


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed (make test installs it)")
def test_grid_through_prefect_server(tmp_path):
    work = make_repo(tmp_path)
    stack = PrefectStack(work, tmp_path / "home")
    try:
        stack.start("server", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                    "--port", str(stack.port))
        stack.wait_healthy()
        stack.cli("work-pool", "create", "gpu-hosts", "--type", "process")
        stack.cli("--no-prompt", "deploy", "--all", timeout=180)
        stack.start("worker", str(BIN / "prefect"), "worker", "start", "--pool", "gpu-hosts", "--type", "process")
        # an injected fault: a file where one cell's checkpoint folder belongs fails it on every attempt
        broken = work / "checkpoints" / "toy2d" / "avae_b" / "seed1"
        broken.parent.mkdir(parents=True)
        broken.write_bytes(b"not a folder")

        t0 = time.perf_counter()
        first = stack.run_deployment("grid/nightly-grid")
        first_s = time.perf_counter() - t0
        assert first["state"]["type"] == "FAILED", first["state"]  # one cell failed, the flow says so
        tasks = stack.task_runs(first["id"])
        bad = tasks["train avae_b/toy2d/seed1"]
        assert bad["state"]["type"] == "FAILED" and bad["run_count"] == 2  # orchestration.retries = 1
        ok = [n for n, t in tasks.items() if t["state"]["type"] == "COMPLETED"]
        assert "train avae_b/toy2d/seed0" in ok and "aggregate" in ok and len(ok) >= 19
        assert not [n for n, t in tasks.items() if t["state"]["type"] not in ("COMPLETED", "FAILED", "PENDING")]

        df = pd.read_parquet(work / "metrics" / "results.parquet")
        failed = df[df.status == "failed"]
        assert failed[["dataset", "variant", "seed"]].values.tolist() == [["toy2d", "avae_b", 1]]
        assert "train@toy2d-avae_b-1 exited with status 1" in failed.reason.iloc[0]  # with the error's last lines
        for dataset, model, seed in CELLS:  # every other cell has its numbers
            rows = df[(df.dataset == dataset) & (df.variant == model) & (df.seed == seed) & (df.status == "ok")]
            assert (dataset, model, seed) == ("toy2d", "avae_b", 1) or {"mse", "kl"} <= set(rows.metric)
        assert "fd_classifier" in set(df[df.dataset == "fashion_mnist"].metric)
        assert "fd_data" in set(df[df.dataset == "toy2d"].metric)
        # dvc.lock was written once, at the end: only the failed cell is out of date
        status = json.loads(dvc(work, "status", "--json").stdout)
        assert set(status) == {"train@toy2d-row0-1", "evaluate@toy2d-avae_b-1"}, status
        n_stages = len(dvc(work, "stage", "list", "--name-only").stdout.split())

        broken.unlink()  # the fault is fixed: the next run redoes only that cell (and aggregate, and what follows)
        stale = [c.name for c in flows.plan_grid(work, load_params(work / "params.yaml")) if not c.up_to_date]
        assert {"train@toy2d-row0-1", "evaluate@toy2d-avae_b-1", "aggregate"} <= set(stale)
        assert not [n for n in stale if n.startswith(("prepare", "pretrain", "train_classifier", "evaluate@f"))]
        t0 = time.perf_counter()
        second = stack.run_deployment("grid/nightly-grid")
        second_s = time.perf_counter() - t0
        assert second["state"]["type"] == "COMPLETED", second["state"]
        tasks = stack.task_runs(second["id"])
        assert all(t["state"]["type"] == "COMPLETED" for t in tasks.values())
        artifacts = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [second["id"]]}}})
        summary = [a["data"] for a in artifacts if a["key"] == "grid-summary"][0]
        assert f"{len(stale)} done, {n_stages - len(stale)} skipped, 0 failed" in summary, summary
        assert dvc(work, "status").stdout.strip().endswith("up to date."), dvc(work, "status").stdout
        df = pd.read_parquet(work / "metrics" / "results.parquet")
        assert set(df.status) <= {"ok", "missing"}
        shown = dvc(work, "metrics", "show", "--json").stdout
        for dataset, model, _ in CELLS:
            assert f'"{model}"' in shown and f'"{dataset}"' in shown
        # the single-cell deployment: everything it needs is up to date
        cell = stack.run_deployment("cell/one-cell", {"dataset": "toy2d", "model": "avae_b", "seed": 0})
        assert cell["state"]["type"] == "COMPLETED", cell["state"]
        artifacts = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [cell["id"]]}}})
        assert "0 done, 5 skipped, 0 failed" in [a["data"] for a in artifacts if a["key"] == "grid-summary"][0]
        print(f"\ntiny grid through Prefect: first run {first_s:.1f} s ({n_stages} stages, one failing twice), "
              f"re-run {second_s:.1f} s ({len(stale)} stages, {n_stages - len(stale)} skipped)")
    finally:
        stack.close()


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on `port` (from /proc/net/tcp, state 0A = LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_the_temporary_prefect_server_listens_on_localhost_only(tmp_path, monkeypatch):
    """`python -m pipeline grid` without PREFECT_API_URL starts Prefect's temporary server:
    it must not listen on a public interface (the README says how to open it deliberately)."""
    from prefect.server.api.server import SubprocessASGIServer

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    server = SubprocessASGIServer()
    server.start()
    try:
        assert listening_addresses(server.port) == {"127.0.0.1"}
    finally:
        server.stop()
    project_files = [ROOT / "prefect.yaml", ROOT / "Makefile", *(ROOT / "pipeline").rglob("*.py")]
    assert not [f for f in project_files if "0.0.0.0" in f.read_text()]  # nothing of ours opens a wildcard bind
