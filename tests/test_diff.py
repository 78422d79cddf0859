"""`python -m pipeline diff`: Welch's t-test + Benjamini–Hochberg on hand-computed values, a
"different CPU, no code change" table that must mark nothing, and two revisions of a git + dvc
repository read with the dvc beside the interpreter."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import diff
from pipeline.evaluate import registry
from pipeline.significance import TOO_FEW, Stats, bh_significant, welch_p

ROOT = Path(__file__).resolve().parents[1]


def test_welch_p_hand_computed():
    # n = 2 each, std 1 each, means 1 and 3: t = -2, Welch df = 2; P(|T_2| > t) = 1 - t / sqrt(t² + 2)
    assert welch_p(Stats(1, 1, 2), Stats(3, 1, 2)) == pytest.approx(1 - 2 / math.sqrt(6), rel=1e-9)
    # one side without spread: df = n2 - 1 = 1 (Cauchy), t = 1 / sqrt(2/2) = 1; P(|T_1| > 1) = 1 - (2/π)·atan(1)
    assert welch_p(Stats(0, 0, 2), Stats(1, math.sqrt(2), 2)) == pytest.approx(0.5, rel=1e-9)
    # unequal n and std: t = 0.3 / sqrt(0.04/3 + 0.01/5), Welch-Satterthwaite df, from the t distribution's sf
    from scipy.stats import t as student_t

    va, vb = 0.04 / 3, 0.01 / 5
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 4)
    expected = 2 * student_t.sf(0.3 / math.sqrt(va + vb), df)
    assert welch_p(Stats(1.0, 0.2, 3), Stats(1.3, 0.1, 5)) == pytest.approx(expected, rel=1e-9)


def test_welch_p_cannot_tell():
    assert welch_p(Stats(1, 0.1, 1), Stats(2, 0.1, 5)) is None  # a single seed on one side
    assert welch_p(Stats(1, 0, 3), Stats(2, 0, 3)) is None  # no seed spread on either side
    assert welch_p(Stats(1, 0, 3), Stats(1, 0, 3)) == 1.0  # identical and spread-free: nothing changed


def test_benjamini_hochberg_step_up():
    # m = 4, q = 0.05: thresholds k·q/m = 0.0125, 0.025, 0.0375, 0.05. 0.03 > 0.025, but 0.035 <= 0.0375
    # at rank 3, so the three smallest are all rejected (step-up; Holm would stop at rank 2)
    assert bh_significant([0.5, 0.035, 0.001, 0.03]) == [False, True, True, True]
    # 0.04 > 0.0375 and 0.5 > 0.05: only ranks 1-2 (0.01 <= 0.0125, 0.02 <= 0.025)
    assert bh_significant([0.04, 0.01, 0.5, 0.02]) == [False, True, False, True]
    assert bh_significant([0.02] * 3) == [True] * 3  # 0.02 <= 3·0.05/3
    assert bh_significant([]) == []


def entry(mean, std, n):
    return {"mean": mean, "std": std, "n": n}


def test_render_marks_only_survivors_and_says_n_too_small():
    old = {"d": {"m": {"mse": entry(0.05, 0.001, 5), "kl": entry(3.0, 0.1, 5), "fid": entry(40.0, 2.0, 5),
                       "lpips": entry(0.2, 0.0, 1)}}}
    new = {"d": {"m": {"mse": entry(0.04, 0.001, 5), "kl": entry(3.0, 0.1, 5), "fid": entry(41.0, 2.0, 5),
                       "lpips": entry(0.3, 0.0, 1), "cosine": entry(0.9, 0.01, 5)}}}
    changes = {c.metric: c for c in diff.compare(old, new)}
    assert changes["mse"].p == pytest.approx(welch_p(Stats(0.05, 0.001, 5), Stats(0.04, 0.001, 5)))
    assert changes["mse"].significant and not changes["fid"].significant and not changes["kl"].significant
    assert changes["lpips"].p is None and changes["cosine"].old is None
    metrics_diff = {"metrics/summary.json": {
        f"d.m.{k}.{f}": {"old": old["d"]["m"].get(k, {}).get(f), "new": new["d"]["m"][k][f]}
        for k in new["d"]["m"] for f in ("mean", "std", "n")}}
    assert diff.summaries(metrics_diff) == (old, new)
    md = diff.render(metrics_diff, {"params.yaml": {"train.iterations": {"old": 1, "new": 2}}}, "a", "b")
    assert f"| d | m | mse | 0.05 ± 0.001 | 0.04 ± 0.001 | -0.01 | {changes['mse'].p:.2g} ⚠ |" in md
    assert f"| d | m | fid | 40 ± 2 | 41 ± 2 | +1 | {changes['fid'].p:.2g} |" in md
    assert f"| d | m | lpips | 0.2 | 0.3 | +0.1 | {TOO_FEW} |" in md
    assert "| d | m | cosine | — | 0.9 ± 0.01 | — | new |" in md
    assert "| kl |" not in md  # unchanged metrics are left out by default
    assert "**1 of 3 rows changed significantly**" in md and f"1 rows: {TOO_FEW}" in md
    assert md.index("| cosine |") < md.index("| mse |") < md.index("| fid |") < md.index("| lpips |")
    assert "| params.yaml | train.iterations | 1 | 2 |" in md


def noise_table(rng: np.random.Generator, models: int = 14, metrics: int = 17, seeds: int = 2) -> tuple[dict, dict]:
    """Two summaries of the same runs on two CPUs: every row's seeds drawn from one distribution."""
    old: dict = {"fashion_mnist": {}}
    new: dict = {"fashion_mnist": {}}
    for i in range(models):
        for j in range(metrics):
            mu, sigma = rng.uniform(0.01, 500), rng.uniform(0.001, 0.2)
            for side in (old, new):
                x = rng.normal(mu, sigma * mu, seeds)
                side["fashion_mnist"].setdefault(f"model{i}", {})[f"metric{j}"] = entry(x.mean(), x.std(ddof=1), seeds)
    return old, new


def test_no_code_change_on_another_cpu_marks_nothing():
    old, new = noise_table(np.random.default_rng(0))
    # the row: BiGAN cosine 0.467 -> 0.643 with 2 seeds, "4.51 std" under the old |Δ|/std rule
    old["fashion_mnist"]["bigan"] = {"cosine": entry(0.467, 0.039, 2)}
    new["fashion_mnist"]["bigan"] = {"cosine": entry(0.643, 0.030, 2)}
    changes = diff.compare(old, new)
    old_rule = [c for c in changes if abs(c.delta) >= 2 * max(c.old.std, c.new.std)]
    assert len(old_rule) >= 14  # what "Δ / std >= 2" used to flag in such a table
    assert not any(c.significant for c in changes)
    md = diff.render_metrics(changes, "a", "b")
    assert "**Nothing is significant** (Welch's t-test" in md and "across the 239 rows present in both" in md
    # Benjamini–Hochberg keeps the chance of any false mark at q = 5 % per table under no change:
    # over 20 such tables at most 3 may have one (P(>= 4 of 20) = 1.6 % for a correct procedure)
    flagged = sum(any(c.significant for c in diff.compare(*noise_table(np.random.default_rng(s))))
                  for s in range(1, 21))
    assert flagged <= 3


def test_a_real_change_among_noise_is_marked():
    old, new = noise_table(np.random.default_rng(0), seeds=3)
    new["fashion_mnist"]["model0"]["metric0"] = entry(old["fashion_mnist"]["model0"]["metric0"]["mean"] * 0.5,
                                                      old["fashion_mnist"]["model0"]["metric0"]["std"], 3)
    old["fashion_mnist"]["model0"]["metric0"]["std"] *= 1e-3  # a tight metric that halves
    new["fashion_mnist"]["model0"]["metric0"]["std"] *= 1e-3
    marked = [c for c in diff.compare(old, new) if c.significant]
    assert [(c.model, c.metric) for c in marked] == [("model0", "metric0")]


def test_rows_measured_in_other_feature_networks_are_not_tested():
    halved = entry(50.0, 0.5, 3), entry(25.0, 0.5, 3)  # a change Welch's test finds at p < 1e-4
    old = {"fashion_mnist": {"vae": {"mse": entry(0.05, 0.0005, 3), "fd_classifier": halved[0],
                                     "fd_autoencoder": halved[0], "recon_accuracy": entry(0.8, 0.01, 3)},
                             "gan": {"fd_classifier": halved[0]}}}
    new = {"fashion_mnist": {"vae": {"mse": entry(0.025, 0.0005, 3), "fd_classifier": halved[1],
                                     "fd_autoencoder": halved[1], "recon_accuracy": entry(0.4, 0.01, 3),
                                     "precision_classifier": entry(0.5, 0.01, 3)},
                             "gan": {"fd_classifier": halved[1]}}}
    same = {(c.model, c.metric): c for c in diff.compare(old, new)}
    assert all(c.significant for c in same.values() if c.old)  # in one set of networks every row is marked
    networks = {("fashion_mnist", "vae"): "classifiers/fashion_mnist: 40ba905 → 731c1df"}
    changes = diff.compare(old, new, networks=networks)
    by = {(c.model, c.metric): c for c in changes}
    for metric in ("fd_classifier", "fd_autoencoder", "recon_accuracy"):  # measured in the dataset's networks
        c = by["vae", metric]
        assert c.other_networks == networks["fashion_mnist", "vae"] and c.p is None and not c.significant
    assert by["vae", "mse"].significant and not by["vae", "mse"].other_networks
    assert by["gan", "fd_classifier"].significant  # its evaluations read the same networks at both revisions
    md = diff.render_metrics(changes, "a", "b")
    assert "**2 of 2 rows changed significantly**" in md and "across the 2 rows present in both and tested" in md
    assert ("**3 rows not tested: other feature networks** (classifiers/fashion_mnist: 40ba905 → 731c1df)"
            in md)  # the new precision_classifier row is not counted: it has nothing to compare
    assert "| fashion_mnist | vae | fd_classifier | 50 ± 0.5 | 25 ± 0.5 | -25 | other feature networks |" in md
    assert "| fashion_mnist | vae | precision_classifier | — | 0.5 ± 0.01 | — | new |" in md
    with pytest.raises(ValueError, match=r"rows_needing\('image'\): name pretrained weights"):
        registry.rows_needing("image")


LOCK = """\
schema: '2.0'
stages:
  train_classifier@fashion_mnist:
    cmd: python -m stages.train_classifier fashion_mnist
    outs:
    - path: classifiers/fashion_mnist
      hash: md5
      md5: 0000000000000000000000000000000f.dir
  evaluate@fashion_mnist-vae-0:
    cmd: python -m stages.evaluate fashion_mnist vae 0
    deps:
    - path: data/prepared/fashion_mnist
      hash: md5
      md5: 3a1697118d346e004f48128256993c72.dir
    - path: classifiers/fashion_mnist
      hash: md5
      md5: {vae0}.dir
    outs:
    - path: evals/fashion_mnist/vae/seed0
      hash: md5
      md5: 11111111111111111111111111111111.dir
  evaluate@fashion_mnist-vae-1:
    cmd: python -m stages.evaluate fashion_mnist vae 1
    deps:
    - path: classifiers/fashion_mnist
      hash: md5
      md5: {vae1}.dir
    outs:
    - path: evals/fashion_mnist/vae/seed1
      hash: md5
      md5: 22222222222222222222222222222222.dir
  evaluate@fashion_mnist-gan-0:
    cmd: python -m stages.evaluate fashion_mnist gan 0
    deps:
    - path: classifiers/fashion_mnist
      hash: md5
      md5: {gan0}.dir
    outs:
    - path: evals/fashion_mnist/gan/seed0
      hash: md5
      md5: 33333333333333333333333333333333.dir
"""


def lock(vae0: str, vae1: str, gan0: str) -> str:
    return LOCK.format(vae0=vae0, vae1=vae1, gan0=gan0)


def test_feature_networks_are_what_each_cells_evaluations_read():
    a, b = "a" * 32, "b" * 32
    assert diff.feature_networks(lock(a, b, a)) == {("fashion_mnist", "vae"): {f"{a}.dir", f"{b}.dir"},
                                                    ("fashion_mnist", "gan"): {f"{a}.dir"}}
    assert diff.feature_networks(None) == {} and diff.feature_networks("schema: '2.0'\n") == {}


def test_changed_networks_between_revisions_and_the_workspace(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "README").write_text("no dvc.lock yet\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "no lock")
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    for vae in (a, b):
        (repo / "dvc.lock").write_text(lock(vae, vae, c))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", vae)
    (repo / "dvc.lock").write_text(lock(b, a, c).replace("evaluate@fashion_mnist-gan-0", "gone").replace(
        "evals/fashion_mnist/gan/seed0", "elsewhere"))  # the workspace: seed 1 of vae re-evaluated; gan not
    assert diff.changed_networks("HEAD~1", "HEAD", repo) == {
        ("fashion_mnist", "vae"): "classifiers/fashion_mnist: aaaaaaa → bbbbbbb"}
    assert diff.changed_networks("HEAD", None, repo) == {  # a cell only one lock has is left out
        ("fashion_mnist", "vae"): "classifiers/fashion_mnist: bbbbbbb → aaaaaaa/bbbbbbb"}
    assert diff.changed_networks("HEAD~2", None, repo) == {}  # a revision without dvc.lock: nothing to compare
    assert diff.changed_networks("HEAD~1", "HEAD~1", repo) == {}
    with pytest.raises(RuntimeError, match="git cannot read revision 'no-such-rev'.*git fetch"):
        diff.changed_networks("no-such-rev", None, repo)


def test_dvc_beside_the_interpreter(tmp_path, monkeypatch):
    (tmp_path / "dvc").write_text("")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "")
    assert diff.dvc_executable() == str(tmp_path / "dvc")
    (tmp_path / "dvc").unlink()
    with pytest.raises(RuntimeError, match="neither beside the interpreter .* nor on PATH: .*make setup"):
        diff.dvc_executable()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def two_revisions(tmp_path):
    """A git + dvc repository with two commits of metrics/summary.json (3 seeds) and params.yaml."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    subprocess.run([diff.dvc_executable(), "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/summary.json\nparams:\n  - params.yaml\n")
    (repo / "metrics").mkdir()
    for mse, fd, iterations in ((0.050, 12.0, 1500), (0.044, 12.5, 3000)):
        summary = {"fashion_mnist": {"vae": {"mse": entry(mse, 0.001, 3), "kl": entry(20.0, 0.5, 3)},
                                     "gan": {"fd_classifier": entry(fd, 1.0, 3)}}}
        (repo / "metrics" / "summary.json").write_text(json.dumps(summary))
        (repo / "params.yaml").write_text(f"train:\n  iterations: {iterations}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"iterations {iterations}")
    return repo


@pytest.mark.slow  # git + dvc subprocesses
def test_diff_between_two_fixture_revisions(two_revisions):
    repo = two_revisions
    md = diff.diff("HEAD~1", "HEAD", cwd=repo)
    p_mse = welch_p(Stats(0.05, 0.001, 3), Stats(0.044, 0.001, 3))
    p_fd = welch_p(Stats(12.0, 1.0, 3), Stats(12.5, 1.0, 3))
    assert f"| fashion_mnist | vae | mse | 0.05 ± 0.001 | 0.044 ± 0.001 | -0.006 | {p_mse:.2g} ⚠ |" in md
    assert f"| fashion_mnist | gan | fd_classifier | 12 ± 1 | 12.5 ± 1 | +0.5 | {p_fd:.2g} |" in md
    assert "| kl |" not in md
    assert "| params.yaml | train.iterations | 1500 | 3000 |" in md
    assert md.index("| mse |") < md.index("| fd_classifier |")  # smallest p first
    # the CLI with no dvc on PATH: the one beside the interpreter is used
    cli = subprocess.run([sys.executable, "-m", "pipeline", "diff", "HEAD~1", "HEAD"], cwd=repo, capture_output=True,
                         text=True, env={**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == md


@pytest.mark.slow
def test_diff_reads_each_revisions_feature_networks(two_revisions):
    repo = two_revisions
    for gan in ("a" * 32, "b" * 32):  # the same metrics; gan's evaluation read other networks
        (repo / "dvc.lock").write_text(lock("c" * 32, "c" * 32, gan))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"gan evaluated in {gan[0]}")
    md = diff.diff("HEAD~1", "HEAD", cwd=repo)
    assert md.startswith("## Metrics: HEAD~1 → HEAD\n\nNo metric changed. **Nothing is significant**")
    assert "across the 2 rows present in both and tested); **1 rows not tested: other feature networks** " \
           "(classifiers/fashion_mnist: aaaaaaa → bbbbbbb)" in md
    assert "rows not tested" not in diff.diff("HEAD~2", "HEAD~1", cwd=repo)  # HEAD~2 has no dvc.lock


@pytest.mark.slow
def test_diff_bad_revision_is_a_clear_error(two_revisions):
    with pytest.raises(RuntimeError, match="dvc metrics diff"):
        diff.diff("no-such-rev", cwd=two_revisions)
    cli = subprocess.run([sys.executable, "-m", "pipeline", "diff", "no-such-rev"], cwd=two_revisions,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("error: RuntimeError: `dvc metrics diff")
