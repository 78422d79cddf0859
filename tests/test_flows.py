"""Prefect flows of the grid (pipeline/flows.py) through a real Prefect server, process work
pool and workers: the grid on one host, and the grid spread over two checkouts ("hosts") that
share only the server and a DVC remote folder, one of them killed mid-cell."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from pipeline import plan
from pipeline import run as stages
from pipeline.config import load_params, parse_params
from pipeline.datasets.fashion_mnist import FASHION_MNIST_DEFAULT, FASHION_MNIST_ENV
from pipeline.remote import PREFIX
from tests.conftest import ROOT, tiny_params
from tests.grid_repo import BIN, dvc, make_repo, tiny_grid

CELLS = [(d, m, s) for d in ("toy2d", "fashion_mnist") for m in ("vae", "avae_b") for s in (0, 1)]


def fashion_mnist_available() -> bool:
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT, "t10k-labels-idx1-ubyte.gz").exists()


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


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc: flow runs start in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started and everything it started (a host lost at once)."""
    for _ in range(2):  # a second pass for anything started while the first one ran
        for pid in process_tree(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait()


class PrefectStack:
    """`prefect server start` on a free port of 127.0.0.1 with its own PREFECT_HOME, and the
    workers started against it, each in a checkout of its own; close() ends them all."""

    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, name: str, work: Path | None = None) -> dict:
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.home), "PREFECT_HOME": str(self.home / name),
               "PREFECT_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_UI_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
               "PREFECT_WORKER_HEARTBEAT_SECONDS": "5", "PREFECT_CLI_WRAP_LINES": "false",
               "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "5",  # lost leases freed within 5 s
               "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
        if work is not None:
            env.update({"PYTHONPATH": str(work), "VAEGAN_REPO": str(work)})
        return env

    def start(self, name: str, cmd: list[str], work: Path | None = None) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=work or self.home, env=self.env(name, work), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_server(self, timeout: float = 120) -> None:
        self.start("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)])
        end = time.time() + timeout
        while time.time() < end:
            assert self.procs["server"].poll() is None, (self.logs / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Prefect server not healthy after {timeout} s")

    def cli(self, work: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BIN / "prefect"), *args], cwd=work, env=self.env("cli", work), capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
        return out

    def request(self, method: str, path: str, body: dict | None = None) -> list | dict:
        """One API call; a 503 (SQLite busy under load: Prefect's clients retry those too) is retried."""
        for attempt in range(10):
            r = httpx.request(method, f"{self.api}{path}", json=body, timeout=30)
            if r.status_code != 503:
                break
            time.sleep(1 + attempt)
        r.raise_for_status()
        return r.json()

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, body: dict) -> list | dict:
        return self.request("POST", path, body)

    def create_run(self, name: str, parameters: dict | None = None) -> str:
        dep = self.get(f"/deployments/name/{name}")
        return self.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": parameters or {}})["id"]

    def wait(self, run_id: str, timeout: float = 600) -> dict:
        """Wait for a flow run to end; return it. Every started process but the server is a
        worker: when all of them have exited, nothing will run it, so stop waiting."""
        end = time.time() + timeout
        while time.time() < end:
            workers = [p for name, p in self.procs.items() if name != "server"]
            if workers and all(p.poll() is not None for p in workers):
                raise RuntimeError("every worker exited: " + " / ".join(
                    f"{name}: {(self.logs / f'{name}.log').read_text()[-500:]}" for name in self.procs if name != "server"))
            run = self.get(f"/flow_runs/{run_id}")
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        raise TimeoutError(f"flow run {run_id} still {run['state']['type']} after {timeout} s; logs in {self.logs}")

    def run_deployment(self, name: str, parameters: dict | None = None, timeout: float = 600) -> dict:
        return self.wait(self.create_run(name, parameters), timeout)

    def task_runs(self, flow_run_id: str) -> dict[str, dict]:
        runs = self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
        return {r["name"]: r for r in runs}

    def flow_runs(self, flow_name: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}, "limit": 200})

    def artifact(self, flow_run_id: str, key: str) -> str:
        found = self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        return [a["data"] for a in found if a["key"] == key][0]

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            kill_tree(proc)


def deploy(stack: PrefectStack, work: Path) -> None:
    stack.cli(work, "work-pool", "create", "gpu-hosts", "--type", "process")
    stack.cli(work, "--no-prompt", "deploy", "--all")


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed (make test installs it)")
def test_grid_through_prefect_server(tmp_path):
    """The whole grid as tasks of one flow run on one host (spread: false)."""
    work = make_repo(tmp_path)
    stack = PrefectStack(tmp_path / "home")
    try:
        stack.start_server()
        deploy(stack, work)
        stack.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "gpu-hosts", "--type", "process"],
                    work)
        # an injected fault: a file where one cell's checkpoint folder belongs fails it on every attempt
        broken = work / "checkpoints" / "toy2d" / "avae_b" / "seed1"
        broken.parent.mkdir(parents=True)
        broken.write_bytes(b"not a folder")
        bad_train = next(c for c in plan.plan_grid(work, load_params(work / "params.yaml"), ["toy2d"], [1], ["avae_b"],
                                                   aggregate=False) if c.model == "avae_b" and c.stage != "evaluate")

        t0 = time.perf_counter()
        first = stack.run_deployment("grid/nightly-grid", {"spread": False})
        first_s = time.perf_counter() - t0
        assert first["state"]["type"] == "FAILED", first["state"]  # one cell failed, the flow says so
        tasks = stack.task_runs(first["id"])
        bad = tasks[bad_train.label]
        assert bad["state"]["type"] == "FAILED" and bad["run_count"] == 2  # orchestration.retries = 1
        ok = [n for n, t in tasks.items() if t["state"]["type"] == "COMPLETED"]
        assert "aggregate" in ok and len(ok) >= 19
        assert not [n for n, t in tasks.items() if t["state"]["type"] not in ("COMPLETED", "FAILED", "PENDING")]

        df = pd.read_parquet(work / "metrics" / "results.parquet")
        failed = df[df.status == "failed"]
        assert failed[["dataset", "variant", "seed"]].values.tolist() == [["toy2d", "avae_b", 1]]
        assert f"{bad_train.name} exited with status 1" in failed.reason.iloc[0]  # with the error's last lines
        for dataset, model, seed in CELLS:  # every other cell has its numbers
            rows = df[(df.dataset == dataset) & (df.variant == model) & (df.seed == seed) & (df.status == "ok")]
            assert (dataset, model, seed) == ("toy2d", "avae_b", 1) or {"mse", "kl"} <= set(rows.metric)
        assert "fd_classifier" in set(df[df.dataset == "fashion_mnist"].metric)
        assert "fd_data" in set(df[df.dataset == "toy2d"].metric)
        # dvc.lock was written once, at the end: only the failed cell is out of date
        status = json.loads(dvc(work, "status", "--json").stdout)
        assert set(status) == {bad_train.name, "evaluate@toy2d-avae_b-1"}, status
        n_stages = len(dvc(work, "stage", "list", "--name-only").stdout.split())

        broken.unlink()  # the fault is fixed: the next run redoes only that cell (and aggregate, and what follows)
        stale = [c.name for c in plan.plan_grid(work, load_params(work / "params.yaml")) if not c.up_to_date]
        assert {bad_train.name, "evaluate@toy2d-avae_b-1", "aggregate"} <= set(stale)
        assert not [n for n in stale if n.startswith(("prepare", "pretrain", "train_classifier", "evaluate@f"))]
        t0 = time.perf_counter()
        second = stack.run_deployment("grid/nightly-grid", {"spread": False})
        second_s = time.perf_counter() - t0
        assert second["state"]["type"] == "COMPLETED", second["state"]
        tasks = stack.task_runs(second["id"])
        assert all(t["state"]["type"] == "COMPLETED" for t in tasks.values())
        summary = stack.artifact(second["id"], "grid-summary")
        assert f"{len(stale)} done, {n_stages - len(stale)} skipped, 0 failed" in summary, summary
        assert dvc(work, "status").stdout.strip().endswith("up to date."), dvc(work, "status").stdout
        df = pd.read_parquet(work / "metrics" / "results.parquet")
        assert set(df.status) <= {"ok", "missing"}
        shown = dvc(work, "metrics", "show", "--json").stdout
        for dataset, model, _ in CELLS:
            assert f'"{model}"' in shown and f'"{dataset}"' in shown
        # the single-cell deployment: everything it needs is up to date
        cell = stack.run_deployment("cell/one-cell", {"dataset": "toy2d", "model": "avae_b", "seed": 0, "spread": False})
        assert cell["state"]["type"] == "COMPLETED", cell["state"]
        assert "0 done, 5 skipped, 0 failed" in stack.artifact(cell["id"], "grid-summary")
        print(f"\ntiny grid through Prefect: first run {first_s:.1f} s ({n_stages} stages, one failing twice), "
              f"re-run {second_s:.1f} s ({len(stale)} stages, {n_stages - len(stale)} skipped)")
    finally:
        stack.close()


# ------------------------------------------------------------------ the grid spread over two hosts


def spread_grid(raw: dict) -> dict:
    """tiny_grid on toy2d alone, one seed; avae_b trains long enough (a few seconds, a checkpoint every
    150 iterations) for a host to be killed in the middle of it."""
    raw = tiny_grid(raw)
    raw["datasets"] = {"toy2d": raw["datasets"]["toy2d"]}
    raw["grid"].update({"datasets": ["toy2d"], "seeds": [0]})
    raw["models"]["avae_b"]["train"] = {"iterations": 1500, "checkpoint_every": 150}
    raw["evaluate"]["metrics"] = ["mse", "kl", "fd_data"]
    raw["orchestration"] = {"retries": 1, "retry_delay_s": 0, "lost_after_s": 45}
    return raw


def make_hosts(tmp_path: Path, names: list[str]) -> tuple[dict[str, Path], Path]:
    """The project committed with a DVC remote folder as its default remote, cloned once per host."""
    origin = make_repo(tmp_path, spread_grid)
    remote = tmp_path / "dvc-remote"
    assert dvc(origin, "remote", "add", "-d", "shared", str(remote)).returncode == 0
    (origin / ".gitignore").write_text("".join(f"/{p}\n" for p in ("data", "models", "checkpoints", "classifiers",
                                                                    "evals", "cache", "metrics/report.html")))
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=origin, check=True, capture_output=True)
    hosts = {}
    for name in names:
        hosts[name] = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(hosts[name])], check=True, capture_output=True)
    return hosts, remote


class Killer(threading.Thread):
    """Kills the worker of the first host caught training an avae_b cell that has pushed a
    checkpoint to the remote and not finished, with every process it started."""

    def __init__(self, stack: PrefectStack, hosts: dict[str, Path], remote: Path, seeds: list[int]):
        super().__init__(daemon=True)
        self.stack, self.hosts, self.remote, self.seeds = stack, hosts, remote, seeds
        self.done = threading.Event()
        self.killed: tuple[str, int, int] | None = None  # host, seed, newest pushed step

    def pushed_step(self, seed: int) -> int:
        mirror = self.remote / PREFIX / "files" / "checkpoints" / "toy2d" / "avae_b" / f"seed{seed}"
        steps = [int(p.name.split("-")[1].split(".")[0]) for p in mirror.glob("step-*.pt.sha256")]
        return max(steps, default=0)

    def run(self) -> None:
        while not self.done.is_set() and self.killed is None:
            for host, work in self.hosts.items():
                for seed in self.seeds:
                    cell = Path("toy2d") / "avae_b" / f"seed{seed}"
                    training = any((work / "checkpoints" / cell).glob("step-*.pt"))
                    if training and not (work / "models" / cell / "model.pt").exists() and self.pushed_step(seed):
                        step = self.pushed_step(seed)
                        kill_tree(self.stack.procs[host])
                        self.killed = (host, seed, step)
                        return
            time.sleep(0.1)


@pytest.mark.slow
def test_grid_spread_over_two_hosts_survives_a_lost_host(tmp_path):
    """One deployment run spreads the grid's stages over two workers in separate checkouts that
    share only the Prefect server and a DVC remote folder; one worker is killed in the middle of
    a cell; the cell resumes on the other from its pushed checkpoint and the grid completes, the
    aggregating host (a third checkout, whose worker takes grid runs) holding every output."""
    hosts, remote = make_hosts(tmp_path, ["host_a", "host_b", "aggregator"])
    workers = {h: hosts[h] for h in ("host_a", "host_b")}
    aggregator = hosts["aggregator"]
    stack = PrefectStack(tmp_path / "home")
    killer = Killer(stack, workers, remote, [0])
    try:
        t0 = time.perf_counter()
        stack.start_server()
        deploy(stack, aggregator)
        for host, work in workers.items():
            stack.start(host, [str(BIN / "python"), "-m", "pipeline", "worker"], work)
        stack.start("aggregator", [str(BIN / "python"), "-m", "pipeline", "worker", "--grid"], aggregator)
        ready_s = time.perf_counter() - t0
        killer.start()
        grid = stack.run_deployment("grid/nightly-grid", timeout=900)
        wall_s = time.perf_counter() - t0
        killer.done.set()
        assert grid["state"]["type"] == "COMPLETED", (grid["state"], stack.logs)
        assert killer.killed is not None, "no host was caught in the middle of an avae_b cell: train it longer"
        lost_host, seed, pushed = killer.killed

        records = {p.name[: -len(".yaml")]: yaml.safe_load(p.read_text())
                   for p in (remote / PREFIX / "stages").glob("*.yaml")}
        where = {name: Path(r["ran_on"].split(":", 1)[1]).name for name, r in records.items()}
        assert {"host_a", "host_b"} <= set(where.values())  # both workers ran stages
        lost_cell = next(c for c in plan.plan_grid(aggregator, load_params(aggregator / "params.yaml"), ["toy2d"],
                                                   [seed], ["avae_b"], aggregate=False)
                         if c.model == "avae_b" and c.stage != "evaluate")
        survivor = where[lost_cell.name]
        assert survivor != lost_host and records[lost_cell.name]["resumed_from"] >= pushed > 0
        runs = [r for r in stack.flow_runs("stage") if r["name"].startswith(lost_cell.label)]
        states = sorted(r["state"]["type"] for r in runs)
        assert states == ["COMPLETED", "CRASHED"], [(r["name"], r["state"]) for r in runs]
        crashed = next(r for r in runs if r["state"]["type"] == "CRASHED")
        assert "no heartbeat" in crashed["state"]["message"]

        # the aggregating host holds what `dvc repro` of the same params gives
        assert dvc(aggregator, "status", "--json").stdout.strip() == "{}", dvc(aggregator, "status").stdout
        shown = json.loads(dvc(aggregator, "metrics", "show", "--json").stdout)
        df = pd.read_parquet(aggregator / "metrics" / "results.parquet")
        for model in ("vae", "avae_b"):
            rows = df[(df.dataset == "toy2d") & (df.variant == model) & (df.seed == 0)]
            assert set(rows.status) == {"ok"} and {"mse", "kl", "fd_data"} <= set(rows.metric), model
            assert f'"{model}"' in json.dumps(shown)
        summary = stack.artifact(grid["id"], "grid-summary")
        print(f"\n{summary}\nstages by host: " + ", ".join(f"{n} -> {h}" for n, h in sorted(where.items())) +
              f"\nkilled {lost_host} while it trained {lost_cell.name} (step {pushed} pushed); "
              f"{survivor} resumed it from step {records[lost_cell.name]['resumed_from']}; crashed run: "
              f"{crashed['state']['message']}\nwall time {wall_s:.0f} s ({ready_s:.0f} s to start the server, "
              f"deploy and start the workers)")
    finally:
        killer.done.set()
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


def test_grid_command_turns_the_temporary_servers_telemetry_off_unless_asked(tmp_path, monkeypatch):
    """Prefect reads PREFECT_SERVER_ANALYTICS_ENABLED when imported: `pipeline grid` sets its
    default (off) before the flows module imports prefect; a user's own value stays."""
    import sys
    import types

    from pipeline.cli import main

    seen = []
    flows = types.ModuleType("pipeline.flows")
    flows.grid_flow = lambda **_: seen.append(os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED"))
    monkeypatch.setitem(sys.modules, "pipeline.flows", flows)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params()))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")  # restored after the test
    assert main(["--params", str(path), "grid"]) == 0
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED")
    assert main(["--params", str(path), "grid"]) == 0
    assert seen == ["true", "false"]
