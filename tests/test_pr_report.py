"""`python -m pipeline pr-report` on real commits of a small git + DVC repository (a changed
param, a changed method file, no change at all), and a lint of the CI workflow files."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipeline import diff
from pipeline.pr_report import pr_report

ROOT = Path(__file__).resolve().parents[1]

# The small repository's stage: per model and seed, metrics from the params and the model's method
# file (1 % seed noise: 3 seeds give a std), a samples.png whose grey levels follow the metrics (top
# half: 255·mse, bottom half: fd_classifier), and metrics/summary.json in the pipeline's layout.
# Cheap: no training.
EVALUATE = textwrap.dedent("""\
    import importlib, json, os, statistics
    import yaml
    from PIL import Image

    params = yaml.safe_load(open("params.yaml"))
    summary = {}
    for model in params["grid"]["models"]:
        method = importlib.import_module(f"methods.{model}")
        per_seed = {}
        for seed in params["grid"]["seeds"]:
            noise = 1 + 0.01 * (seed - 1)
            values = {"mse": method.mse(params["train"]["iterations"]) * noise,
                      "fd_classifier": method.fd(params["train"]["iterations"]) * noise, "kl": 20.0 * noise}
            for k, v in values.items():
                per_seed.setdefault(k, []).append(v)
            out = f"evals/toy/{model}/seed{seed}"
            os.makedirs(out, exist_ok=True)
            grid = Image.new("L", (34, 34), int(255 * values["mse"]))
            grid.paste(int(values["fd_classifier"]), (0, 17, 34, 34))
            grid.save(f"{out}/samples.png")
        summary.setdefault("toy", {})[model] = {
            k: {"mean": round(statistics.mean(v), 6), "std": round(statistics.stdev(v), 6), "n": len(v)}
            for k, v in per_seed.items()}
    os.makedirs("metrics", exist_ok=True)
    json.dump(summary, open("metrics/summary.json", "w"), indent=1, sort_keys=True)
""")
DVC_YAML = textwrap.dedent("""\
    stages:
      evaluate:
        cmd: python evaluate.py
        deps: [evaluate.py, methods]
        params: [grid, train]
        outs: [evals]
        metrics:
          - metrics/summary.json:
              cache: false
""")
VAE = "def mse(iterations):\n    return 0.5 / (1 + iterations / 100)\n\n\n" \
      "def fd(iterations):\n    return 100 / (1 + iterations / 100) + 50\n"
GAN = "def mse(iterations):\n    return 0.9\n\n\n" \
      "def fd(iterations):\n    return 20 / (1 + iterations / 1000) + {offset}\n"


def sh(repo: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    """Four commits: base; train.iterations 100 -> 400; methods/gan.py changed; a README-only commit."""
    repo = tmp_path_factory.mktemp("small") / "repo"
    (repo / "methods").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "t@example.com")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, diff.dvc_executable(), "init", "-q")
    (repo / "evaluate.py").write_text(EVALUATE)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "methods" / "__init__.py").write_text("")
    (repo / "methods" / "vae.py").write_text(VAE)
    (repo / "methods" / "gan.py").write_text(GAN.format(offset=70))

    def commit(message: str, iterations: int) -> str:
        (repo / "params.yaml").write_text(f"grid:\n  models: [vae, gan]\n  seeds: [0, 1, 2]\ntrain:\n"
                                          f"  iterations: {iterations}\n")
        sh(repo, diff.dvc_executable(), "repro", "-q", env=env)
        sh(repo, "git", "add", "-A")
        sh(repo, "git", "commit", "-q", "-m", message)
        return sh(repo, "git", "rev-parse", "HEAD").strip()

    revs = {"base": commit("base", 100), "param": commit("train.iterations 100 -> 400", 400)}
    (repo / "methods" / "gan.py").write_text(GAN.format(offset=40))
    revs["method"] = commit("gan: a better method", 400)
    (repo / "README.md").write_text("docs only\n")
    revs["none"] = commit("README only", 400)
    return repo, revs


@pytest.mark.slow  # git + dvc subprocesses, four `dvc repro`s of a cheap stage
def test_changed_param(small_repo, tmp_path):
    repo, revs = small_repo
    out = tmp_path / "report" / "report.md"
    md = pr_report(revs["base"], revs["param"], cwd=repo, out=out)
    assert out.read_text() == md
    assert "**3 of 6 rows changed significantly**" in md
    assert re.search(r"\| toy \| vae \| mse \| 0\.25 ± 0\.0025 \| 0\.1 ± 0\.001 \| -0\.15 \| [0-9.e-]+ ⚠ \|", md)
    assert "| kl |" not in md and "| toy | gan | mse |" not in md  # unchanged rows are left out
    assert "| params.yaml | train.iterations | 100 | 400 |" in md
    # gan's fd_classifier was below the VAE's (AVAE T1 holds) and is now above it
    assert ("| fd_classifier: gan < vae | AVAE (001) Table 1, FID rows | toy | holds, significant | "
            "fails, significant |") in md
    for model in ("vae", "gan"):
        link = f"grids/toy-{model}-seed0.png"
        assert f"]({link})" in md
        with Image.open(out.parent / link) as image:  # base | head side by side, each 34 px wide
            assert image.width == 2 * 34 + 3 * 6 and image.height == 34 + 16 + 2 * 6
            grey = {"vae": 63, "gan": 227}[model]  # base, top half: int(255 · mse of seed 0)
            assert image.getpixel((6 + 17, 6 + 16 + 8)) == (grey, grey, grey)
    assert "No sample grid changed." not in md


@pytest.mark.slow
def test_changed_method_file(small_repo, tmp_path):
    repo, revs = small_repo
    md = pr_report(revs["param"], revs["method"], cwd=repo, out=tmp_path / "report.md")
    assert "**1 of 6 rows changed significantly**" in md
    row = r"\| toy \| gan \| fd_classifier \| 84\.29 ± 0\.84 \| 54\.29 ± 0\.54 \| -30 \| [0-9.e-]+ ⚠ \|"
    assert re.search(row, md)
    assert "| toy | vae |" not in md and "No params changed." in md
    assert "| toy | fails, significant | holds, significant |" in md
    assert "](grids/toy-gan-seed0.png)" in md and "toy-vae" not in md  # only the changed method's grid


@pytest.mark.slow
def test_rows_in_other_feature_networks_are_not_tested(small_repo, tmp_path, monkeypatch):
    repo, revs = small_repo
    seen = []
    networks = {("toy", "gan"): "classifiers/toy: aaaaaaa → bbbbbbb"}
    monkeypatch.setattr(diff, "changed_networks",  # dvc.lock's side: test_diff.py reads it from real revisions
                        lambda a, b, cwd: seen.append((a, b)) or networks)
    md = pr_report(revs["param"], revs["method"], cwd=repo, out=tmp_path / "report.md")
    assert seen == [(revs["param"], revs["method"])]
    assert "**Nothing is significant**" in md and "⚠ |" not in md
    assert "**1 rows not tested: other feature networks** (classifiers/toy: aaaaaaa → bbbbbbb)" in md
    assert re.search(r"\| toy \| gan \| fd_classifier \| 84\.29 ± 0\.84 \| 54\.29 ± 0\.54 \| -30 \| "
                     r"other feature networks \|", md)
    assert "(base left, head right; no p-value: new, n too small to tell or other feature networks)" in md


@pytest.mark.slow
def test_no_change_says_nothing_is_significant(small_repo, tmp_path):
    repo, revs = small_repo
    md = pr_report(revs["method"], revs["none"], cwd=repo, out=tmp_path / "report.md")
    assert "No metric changed. **Nothing is significant**" in md
    assert "⚠" not in md[:md.index("## Paper orderings")] and "No params changed." in md
    assert "No ordering changed" in md and "No sample grid changed." in md


@pytest.mark.slow
def test_cli_on_the_workspace_without_dvc_on_path(small_repo, tmp_path):
    """The command as CI runs it: head = the workspace, dvc found beside the interpreter, base grids
    from a folder when the base revision's are in no cache."""
    repo, revs = small_repo
    base_evals = tmp_path / "base-evals"
    (base_evals / "toy" / "vae" / "seed0").mkdir(parents=True)
    Image.new("L", (34, 34), 200).save(base_evals / "toy" / "vae" / "seed0" / "samples.png")
    out = tmp_path / "ci" / "report.md"
    cli = subprocess.run([sys.executable, "-m", "pipeline", "pr-report", "--base", revs["base"], "--out", str(out),
                          "--base-evals", str(base_evals)], cwd=repo, capture_output=True,
                         text=True, env={**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr
    md = out.read_text()
    assert md.startswith(f"# Metrics report: {revs['base']} → workspace")
    assert "**3 of 6 rows changed significantly**" in md
    assert "**toy / vae**, seed 0 (base left, head right;" in md
    assert "**toy / gan**, seed 0 (head only: no base grid;" in md  # not in the given folder
    assert "Base grids unavailable for 1 changed cells (e.g. " in md and "--base-evals" in md
    with Image.open(out.parent / "grids" / "toy-vae-seed0.png") as image:
        assert image.getpixel((6 + 17, 6 + 16 + 8)) == (200, 200, 200)  # the given folder's base grid
    with Image.open(out.parent / "grids" / "toy-gan-seed0.png") as image:
        assert image.width == 34 + 2 * 6
    capped = pr_report(revs["base"], cwd=repo, out=tmp_path / "capped.md", base_evals=base_evals, max_grids=1)
    assert capped.count("](grids/toy-") == 1 and "1 more changed cells not shown (--max-grids 1): toy/" in capped


@pytest.mark.slow
def test_a_clone_without_the_dvc_cache_says_the_grids_are_unavailable(small_repo, tmp_path):
    repo, revs = small_repo
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))  # git only: no DVC cache, no evals/
    md = pr_report(revs["base"], revs["param"], cwd=clone, out=tmp_path / "at-revs.md")
    assert "**3 of 6 rows changed significantly**" in md  # summary.json is in git
    assert "No grid shown.\nHead grids unavailable for 2 changed cells (e.g. evals/toy/" in md
    md = pr_report(revs["base"], cwd=clone, out=tmp_path / "workspace.md")
    assert "Head grids unavailable for 2 changed cells (e.g. no " in md and "No sample grid changed." not in md


@pytest.mark.slow
def test_bad_input_is_a_clear_error(small_repo, tmp_path):
    repo, _ = small_repo
    for args, error in ((["--base", "no-such-rev"], "error: RuntimeError: `dvc metrics diff"),
                        (["--base", "HEAD", "--base-evals", str(tmp_path / "nowhere")],
                         f"error: ValueError: --base-evals {tmp_path / 'nowhere'}: no such folder"),
                        (["--base", "HEAD", "--max-grids", "-1"], "error: ValueError: --max-grids -1: must be 0")):
        cli = subprocess.run([sys.executable, "-m", "pipeline", "pr-report", *args], cwd=repo,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert cli.returncode == 1 and cli.stderr.startswith(error) and "Traceback" not in cli.stderr, cli.stderr
    assert not (repo / "pr-report-grids").exists()  # nothing written


# ---- the CI workflow files: valid YAML, the repo's own commands, no inline logic --------------------

WORKFLOW = ROOT / ".github" / "workflows" / "pr-metrics.yml"
GITLAB = ROOT / ".gitlab-ci.yml"
ALLOWED = ("make ", "sudo make ", ".venv/bin/dvc ", ".venv/bin/python -m pipeline ", "cml comment ",
           "npm install -g @dvcorg/cml")
REPORT = ".venv/bin/python -m pipeline pr-report --base "


def commands(lines: list) -> list[str]:
    """CI shell lines (nested lists flattened, as GitLab does), each a single call of a repo command."""
    flat = [x for line in lines for x in (commands(line) if isinstance(line, list) else [line])]
    for line in flat:
        assert "\n" not in line.strip(), f"multi-line shell in a CI step: {line!r}"
        assert not re.search(r"&&|;|\||`|\$\(|>", line), f"inline shell logic in a CI step: {line!r}"
        assert line.startswith(ALLOWED), f"a CI step that is not one of the repo's commands: {line!r}"
    return flat


def in_order(runs: list[str], prefixes: list[str]) -> list[int]:
    idx = [next(i for i, r in enumerate(runs) if r.startswith(p)) for p in prefixes]
    assert idx == sorted(idx), runs
    return idx


def assert_posts_the_report(report: str, comment: str) -> None:
    out = report.split()[report.split().index("--out") + 1]
    assert comment.startswith("cml comment update --target=pr --watermark-title=") and comment.endswith(f" {out}")


def test_github_workflow():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in wf[True]  # PyYAML reads the key `on` as True
    assert wf["permissions"]["pull-requests"] == "write"
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    runs = commands([s["run"] for s in steps if "run" in s])
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses[0] == "actions/checkout" and steps[0]["with"]["fetch-depth"] == 0 and "iterative/setup-cml" in uses
    idx = in_order(runs, ["sudo make dataset", "make setup", ".venv/bin/dvc pull", "make repro", REPORT,
                          "cml comment update"])
    assert_posts_the_report(runs[idx[4]], runs[idx[5]])
    remote = [s for s in steps if "run" in s and s["run"].startswith(".venv/bin/dvc ")]
    assert len(remote) == 3 and all(s["if"] == "env.DVC_REMOTE_URL != ''" for s in remote)  # only with a remote
    assert job["env"]["DVC_REMOTE_URL"] == "${{ secrets.DVC_REMOTE_URL }}"


def test_gitlab_pipeline():
    ci = yaml.safe_load(GITLAB.read_text())
    jobs = {k: v for k, v in ci.items() if not k.startswith(".") and isinstance(v, dict)}
    assert set(jobs) == {"pr-metrics", "pr-metrics-with-remote", "pr-comment"}
    for name in ("pr-metrics", "pr-metrics-with-remote"):
        job = {**ci[jobs[name]["extends"]], **jobs[name]}
        assert "merge_request_event" in job["rules"][0]["if"] and job["artifacts"]["paths"] == ["pr-report/"]
        runs = commands(job["script"])
        with_remote = name.endswith("remote")
        assert ("$DVC_REMOTE_URL == null" not in job["rules"][0]["if"]) == with_remote
        idx = in_order(runs, ["make setup", *([".venv/bin/dvc pull"] if with_remote else []), "make repro", REPORT])
        report = runs[idx[-1]]
    comment = commands(jobs["pr-comment"]["script"])
    assert comment[0] == "npm install -g @dvcorg/cml"
    assert_posts_the_report(report, comment[-1])
    assert {n["job"] for n in jobs["pr-comment"]["needs"]} == {"pr-metrics", "pr-metrics-with-remote"}


def test_readme_documents_the_ci_and_its_setup_command():
    readme = (ROOT / "README.md").read_text()
    assert "make setup" in readme and "\nsetup:" in (ROOT / "Makefile").read_text()
    section = readme[readme.index("## Metric diffs in pull requests"):]
    for needed in ("DVC_REMOTE_URL", "REPO_TOKEN", "pr-metrics.yml", ".gitlab-ci.yml", "minutes"):
        assert needed in section, needed
