"""table.md and report.html render from a fixture results frame."""

import base64
import math

import pandas as pd
import pytest
from PIL import Image

from pipeline import report
from pipeline.evaluate import registry

COLUMNS = dict(split="test", scale="[0,1]", n_samples=100, features="", reason="", time_s=0.1, git_rev="abc",
               params_hash="h", checkpoint="r@1")


def row(variant, seed, metric, value, method=None, status="ok", reason="", dataset="fashion_mnist"):
    return {**COLUMNS, "dataset": dataset, "method": method or variant, "variant": variant, "seed": seed,
            "metric": metric, "value": value, "status": status, "reason": reason}


def fixture_frame() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        rows += [row("vae", seed, "mse", 0.02 + 0.01 * seed), row("avae_b", seed, "mse", 0.05 + 0.01 * seed, "avae"),
                 row("vae", seed, "fd_classifier", 30.0 + seed), row("gan", seed, "fd_classifier", 10.0 + seed),
                 row("avae_b", seed, "fd_classifier", 12.0 + seed, "avae"),
                 row("vae", seed, "fid", math.nan, status="missing", reason="Inception weights not found"),
                 row("vae", seed, "diversity", 0.3), row("gan", seed, "diversity", 0.4),
                 row("vae", seed, "diversity_test", 0.35), row("gan", seed, "diversity_test", 0.35)]
        for lam, mse in ((0.1, 0.09), (1.0, 0.07), (10.0, 0.05)):
            rows.append(row(f"lsr_l{lam}", seed, "mse", mse + 0.001 * seed, "lsr_gan"))
    return pd.DataFrame(rows)


RAW_PARAMS = {"models": {"vae": {"method": "vae", "beta": {"fashion_mnist": 1.0}},
                         **{f"lsr_l{lam}": {"method": "lsr_gan", "lam": lam} for lam in (0.1, 1.0, 10.0)}},
              "grid": {"stage2": [{"model": m, "export": "vae"} for m in ("lsr_l0.1", "lsr_l1.0", "lsr_l10.0")]}}


def test_markdown_bold_best_per_column_and_reference_row():
    md = report.markdown(fixture_frame(), ["vae", "gan", "avae_b"])
    assert "| vae | **0.0250 ± 0.0071**" in md  # lowest mse in bold
    gan_line = next(line for line in md.splitlines() if line.startswith("| gan |"))
    assert "**10.50 ± 0.71**" in gan_line  # lowest fd_classifier
    assert "| test data |" in md and "| test data | — | — | 0.350 ± 0.000 |" in md  # diversity beside the test set's own
    assert "- fid missing: Inception weights not found" in md
    generation = md[md.index("### Generation"):]
    assert generation.index("| vae |") < generation.index("| gan |") < generation.index("| avae_b |")  # params order


def test_headers_carry_the_sample_count():
    df = fixture_frame()
    df.loc[df["metric"] == "fd_classifier", "n_samples"] = 50_000
    df.loc[(df["metric"] == "diversity") & (df["variant"] == "gan"), "n_samples"] = 2500
    md = report.markdown(df, ["vae", "gan", "avae_b"])
    assert "| model | mse (100) ↓ |" in md
    assert "fd_classifier (50k) ↓" in md and "diversity (100–2.5k) |" in md
    assert "fid (100) ↓" in md  # missing rows still say what they would have used
    page = report.html_report(df, ["vae", "gan", "avae_b"])
    assert "<th>fd_classifier (50k) ↓</th>" in page


def test_sweeps_are_found_from_params():
    settings = report.variant_settings(RAW_PARAMS, "fashion_mnist")
    assert settings["lsr_l1.0"] == {"vae.beta": 1.0, "lam": 1.0}
    sweeps = report.find_sweeps(fixture_frame(), "fashion_mnist", settings)
    assert sweeps == [("lsr_gan", "lam", ["lsr_l0.1", "lsr_l1.0", "lsr_l10.0"])]


def png(path, color):
    Image.new("RGB", (20, 20), color).save(path)


def test_html_report_is_self_contained(tmp_path):
    cell = tmp_path / "evals" / "fashion_mnist" / "vae" / "seed0"
    cell.mkdir(parents=True)
    for name, color in (("samples.png", "red"), ("interpolation.png", "blue")):
        png(cell / name, color)
    page = report.html_report(fixture_frame(), ["vae", "gan", "avae_b"], tmp_path / "evals", RAW_PARAMS)
    assert "<b>0.0250 ± 0.0071</b>" in page
    assert "src=\"http" not in page and "src='http" not in page  # nothing fetched from outside
    uris = [part.split("'")[0].split('"')[0] for part in page.split("data:image/png;base64,")[1:]]
    assert len(uris) >= 6  # bar charts, the sweep figure, the two cell pictures
    assert base64.b64decode(uris[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "No sweep in these results" not in page  # the λ sweep is drawn
    assert "latent interpolation" in page and "no pictures found" in page  # other cells have none


def test_html_report_without_sweep_says_so():
    df = fixture_frame()
    page = report.html_report(df[~df["variant"].str.startswith("lsr")], ["vae", "gan"])
    assert "No sweep in these results" in page


@pytest.mark.parametrize("metric,lower", [("mse", True), ("fid", True), ("inception_score", False),
                                          ("indep_critic", False), ("kid", True), ("fid_random", True),
                                          ("precision", False), ("coverage_classifier", False)])
def test_directions(metric, lower):
    assert registry.better(metric) == (registry.LOWER if lower else registry.HIGHER)
    assert report.arrow(metric) == (" ↓" if lower else " ↑")
