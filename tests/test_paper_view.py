"""pipeline/published.yaml (read by pipeline/published.py) and pipeline/paper_view.py: the papers'
numbers as printed, the scale conversion, the order agreement, the rendered view, and the aggregate
stage writing it."""

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import paper_view, report, results
from pipeline.paper_view import Results, order_checks
from pipeline.published import PUBLISHED, TEST_DATA, Column, PublishedError, load, parse_cell
from pipeline.significance import Stats

ROOT = Path(__file__).resolve().parents[1]
# the seed papers sit in ../shared/seeds beside the main checkout (one level further up from a worktree)
SEEDS = next((p for p in (ROOT.parent / "shared" / "seeds", ROOT.parents[1] / "shared" / "seeds") if p.is_dir()),
             ROOT.parent / "shared" / "seeds")
RAW = yaml.safe_load(PUBLISHED.read_text())["papers"]


def flat(text: str) -> str:
    """Whitespace collapsed; hyphens dropped, so a word hyphenated across a line break still matches."""
    return " ".join(text.replace("-\n", "").replace("-", "").split())


def seed_table(text: str, caption: str, n_label: int) -> dict[tuple, list[str]]:
    """{leading label cells: value cells} of the tab-separated table after the caption; an empty first
    cell carries the row label of the line above (AVAE Table 1 prints a model's name once)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if caption[:40] in line)
    rows, label, started = {}, "", False
    for line in lines[start + 1:]:
        if "\t" not in line:
            if started and line.strip():
                break
            continue
        started = True
        cells = [re.sub(r"</?b>", "", c).strip() for c in line.split("\t")]
        while cells and not cells[-1]:
            cells.pop()
        label = cells[0] or label
        rows[(label, *cells[1:n_label])] = cells[n_label:]
    return rows


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed papers (../shared/seeds) are not beside this checkout")
def test_every_printed_number_is_the_papers_and_every_table_row_is_in_the_file():
    papers = {p.name[:3]: p.read_text() for p in SEEDS.glob("*.txt")}
    for name, paper in RAW.items():
        text = papers[paper["seed"]]
        for table in paper["tables"]:
            assert flat(table["caption"]) in flat(text), (name, table["id"])
            labelled = [line for line in table["lines"] if "label" in line]
            if labelled:
                rows = seed_table(text, table["caption"], len(labelled[0]["label"]))
                for line in labelled:
                    assert rows[tuple(line["label"])] == line["printed"], (name, table["id"], line["label"])
                numeric = {k for k, cells in rows.items() if any(re.match(r"\d", c) for c in cells)}
                assert numeric == {tuple(line["label"]) for line in labelled}, (name, table["id"])  # none left out
            for line in table["lines"]:
                if "passage" in line:
                    assert flat(line["passage"]) in flat(text), (name, line["passage"])
                    at = 0
                    for cell in line["printed"]:  # the printed cells, in order, in the passage
                        at = line["passage"].index(cell, at) + len(cell)


def test_the_data_file_names_real_metrics_and_every_cell_reads():
    from pipeline.evaluate import METRICS

    rows = {r for m in METRICS.values() for r in m.row_names}
    papers = load()
    assert list(papers) == ["avae", "alpha_gan", "lsr_gan", "avae_s"]
    for paper in papers.values():
        for table in paper.tables:
            for cell in table.cells:
                assert cell.metric in rows and cell.our_metric in rows | {None}, (paper.name, table.id, cell)
    avae = {(c.dataset, c.model, c.metric): c for c in papers["avae"].tables[0].cells}
    assert len(avae) == 19 * 5
    bigan = avae[("cifar10", "bigan", "mse")]
    assert (bigan.value, bigan.spread) == (0.31, 0.02)  # on [-1, 1]: AVAE Table 1 (001)
    lsr = {(c.model, c.metric): c for t in papers["lsr_gan"].tables for c in t.cells}
    assert lsr[("lsr_gan_b0p01", "mse")].value is None and lsr[("lsr_gan_b0p01", "mse")].printed == "Model Collapse"
    assert lsr[("lsr_gan_l0p5", "recon_accuracy")].value == 46.96
    t3 = {(c.model, c.metric): c for c in papers["avae_s"].tables[1].cells}
    assert t3[(TEST_DATA, "sharpness_laplace_recon")].our_metric == "sharpness_laplace_test"
    assert t3[(TEST_DATA, "mse")].our_metric is None and t3[(TEST_DATA, "fid")].our_metric is None


def test_parse_cell_on_the_papers_notations():
    assert parse_cell("0.06 ± 0.00", "x") == (0.06, 0.0)
    assert parse_cell("3.03e - 5 ± 2.44e - 7", "x") == (3.03e-5, 2.44e-7)
    assert parse_cell("43.75 ± 0.25%%", "x") == (43.75, 0.25)
    assert parse_cell("0.05 ± 3e - 4", "x") == (0.05, 3e-4)
    assert parse_cell("45.4467", "x") == (45.4467, None)
    assert parse_cell("Model Collapse", "x") == parse_cell("-", "x") == (None, None)
    with pytest.raises(PublishedError, match=r"t.lines\[2\]: cannot read the printed cell '0.O5'"):
        parse_cell("0.O5", "t.lines[2]")


def test_scale_conversion_on_hand_values():
    def paper(column: Column, mean: float, std: float) -> tuple:
        s = column.to_paper(Stats(mean, std, 3))
        return s.mean, s.std, s.n

    papers = load()
    avae_mse = papers["avae"].tables[0].columns["mse"]
    lsr = papers["lsr_gan"].tables[0].columns
    assert paper(avae_mse, 0.0125, 0.001) == pytest.approx((0.05, 0.004, 3))  # per-pixel [0, 1] -> [-1, 1]
    assert paper(lsr["mse"], 0.0182, 0.0) == pytest.approx((55.9104, 0.0, 3))  # summed over 32·32·3 values
    assert paper(lsr["recon_variance"], 1e-4, 1e-5) == pytest.approx((6.5025, 0.65025, 3))  # [0, 255]²
    assert paper(lsr["recon_accuracy"], 0.4408, 0.002) == pytest.approx((44.08, 0.2, 3))  # percent
    shifted = Column("m", "M", "s", -2.0, 1.0, "", "")  # offset, and a negative factor keeps std positive
    assert paper(shifted, 0.25, 0.1) == pytest.approx((0.5, 0.2, 3))


COLUMNS = dict(split="test", scale="[0,1]", n_samples=100, features="", reason="", time_s=0.1, git_rev="abc",
               params_hash="h", checkpoint="r@1")


def frame(values: dict[str, list[float]], dataset="cifar10", metric="mse") -> pd.DataFrame:
    """One ok row per model and seed."""
    return pd.DataFrame([{**COLUMNS, "dataset": dataset, "method": m, "variant": m, "seed": s, "metric": metric,
                          "value": v, "status": "ok"} for m, vs in values.items() for s, v in enumerate(vs)])


def mse_check(values: dict[str, list[float]]):
    avae = load()["avae"]
    return order_checks(avae, Results(frame(values)))[("Table 1", "cifar10", "mse")]


def test_order_agreement_same_order_one_flip_a_missing_row_and_paper_ties():
    # published on cifar10 (×1/4 to ours): vae 0.05 < avae_* 0.09 < vae_gan 0.14 < bigan 0.31
    same = mse_check({"vae": [0.012, 0.013, 0.011], "avae_b": [0.022, 0.023, 0.021],
                      "vae_gan": [0.035, 0.036, 0.034], "bigan": [0.080, 0.081, 0.079]})
    assert (same.n, len(same.pairs), same.tau) == (4, 6, pytest.approx(1.0))
    assert same.text() == "same order as the paper (τ 1.00, 4 rows)"

    flip = mse_check({"vae": [0.012, 0.013, 0.011], "avae_b": [0.022, 0.023, 0.021],
                      "vae_gan": [0.080, 0.081, 0.079], "bigan": [0.035, 0.036, 0.034]})
    flipped = [p for p in flip.pairs if p.flipped]
    assert [(p.a, p.b, p.significant) for p in flipped] == [("vae_gan", "bigan", True)]
    assert flip.tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert flip.text().startswith("τ 0.67, 4 rows: 1 of 6 pairs flip: vae_gan ↔ bigan (p ") and "⚠)" in flip.text()

    missing = mse_check({"vae": [0.012, 0.013], "vae_gan": [0.080, 0.081], "bigan": [0.035]})  # avae_* not run
    assert missing.n == 3 and missing.text().endswith("vae_gan ↔ bigan (p n too small to tell)")  # bigan: 1 seed

    ties = mse_check({"vae": [0.012, 0.013], "avae_a": [0.03, 0.031], "avae_b": [0.02, 0.021]})
    assert ties.n == 3 and {(p.a, p.b) for p in ties.pairs} == {("vae", "avae_a"), ("vae", "avae_b")}  # 0.09 = 0.09
    assert not any(p.flipped for p in ties.pairs)
    tied = mse_check({"avae_a": [0.03, 0.031], "avae_b": [0.02, 0.021]})
    assert tied.text() == "the paper prints the 2 rows run as equal: nothing to order"


def test_the_view_shows_not_run_aliases_statuses_and_the_test_split():
    df = pd.concat([frame({"vae": [0.012, 0.013], "bigan": [0.08, 0.082]}),
                    frame({"vae": [0.3, 0.31]}, metric="lpips"),
                    pd.DataFrame([{**COLUMNS, "dataset": "cifar10", "method": "gan", "variant": "gan", "seed": 0,
                                   "metric": "fid", "value": math.nan, "status": "missing", "reason": "no weights"}])])
    papers = load()
    md = paper_view.markdown(paper_view.paper_blocks(papers["avae"], df), "avae")
    assert ("| vae | 0.05 ± 0.00 | 0.05 ± 0.0028 (2) | 0.26 ± 0.00 | 0.305 ± 0.0071 (2) | 136.75 ± 0.57 | "
            "not measured |") in md
    assert "| gan |  |  |  |  | 32.01 ± 0.41 | missing |" in md
    assert "| avae_b | 0.09 ± 0.00 | not run |" in md
    assert "lsun_bedroom: not run (19 published values)." in md
    assert "mse: same order as the paper (τ 1.00, 2 rows)" in md and "paper = 4 × ours" in md

    lsr = paper_view.markdown(paper_view.paper_blocks(papers["lsr_gan"], df), "lsr_gan")
    assert "| vae_b1 | 55.9 ± 0.3 | 38.4 ± 2.2 (2) as vae |" in lsr  # (0.0125 ± 0.0007) × 3072, read as vae
    assert "| lsr_gan_b0p01 | Model Collapse | not run |" in lsr

    face = pd.concat([frame({"vae": [0.010, 0.011], "avae_finetune": [0.009, 0.0095]}, dataset="celeba96"),
                      frame({"vae": [0.10, 0.12], "avae_finetune": [0.11, 0.13]}, dataset="celeba96",
                            metric="sharpness_laplace_test")])
    s = paper_view.markdown(paper_view.paper_blocks(papers["avae_s"], face), "avae_s")
    assert "| wae | 0.006 | not in this benchmark |" in s
    assert "| test data | 0.112015 | 0.115 ± 0.013 (4) | 1 | no metric of ours |" in s  # pooled over the 4 cells
    assert "| avae | 0.031597 | not measured | 0.978675 | not measured | 0.009804 | 0.00925 ± 0.00035 (2) as " \
           "avae_finetune |" in s


def test_a_malformed_data_file_is_named(tmp_path):
    good = yaml.safe_load(PUBLISHED.read_text())

    def broken(edit) -> Path:
        raw = yaml.safe_load(yaml.safe_dump(good))
        edit(raw["papers"]["avae"]["tables"][0])
        path = tmp_path / "published.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        return path

    cases = [(lambda t: t["lines"][0]["printed"].pop(), r"papers.avae.tables\[0\].lines\[0\]: 4 printed cells for 5 "
                                                        r"places: give one cell per dataset"),
             (lambda t: t["lines"][1].update(metric="psnr"), r"lines\[1\]: metric 'psnr' is not among"),
             (lambda t: t["metrics"]["mse"].pop("factor"), r"tables\[0\].metrics.mse: 'factor' is missing"),
             (lambda t: t["lines"][2]["printed"].__setitem__(0, "12,5"), r"cannot read the printed cell '12,5'"),
             (lambda t: t["lines"][3].update(test_metirc="x"), r"lines\[3\]: unknown key\(s\) \['test_metirc'\]"),
             (lambda t: t["metrics"].update(fid=[1]), r"metrics.fid: expected a mapping")]
    for edit, message in cases:
        with pytest.raises(PublishedError, match=message):
            load(broken(edit))
    (tmp_path / "bad.yaml").write_text("papers: [unclosed")
    with pytest.raises(PublishedError, match="not valid YAML"):
        load(tmp_path / "bad.yaml")


def test_aggregate_writes_the_paper_views_and_the_report_shows_them(tmp_path):
    cells = []
    for model, values in {"vae": [0.012, 0.013], "bigan": [0.08, 0.082]}.items():
        for seed, value in enumerate(values):
            one = frame({model: [value]}).assign(seed=seed)
            cells.append(results.write_metrics(one, tmp_path / "evals" / model / f"seed{seed}" / "metrics.parquet"))
    df = report.aggregate(cells, tmp_path / "out", ["vae", "bigan"])
    papers = tmp_path / "out" / "papers"
    assert sorted(p.name for p in papers.iterdir()) == ["avae.md", "index.md", "lsr_gan.md"]  # lsr_gan: vae as vae_b1
    assert "- alpha_gan: not run: these results hold none of its rows (datasets: celeba, cifar10)" in \
           (papers / "index.md").read_text()
    assert "| bigan | 0.31 ± 0.02 | 0.324 ± 0.0057 (2) |" in (papers / "avae.md").read_text()
    page = report.html_report(df, ["vae", "bigan"])
    assert "<h2>Paper view: published vs ours</h2>" in page and "<summary><b>avae</b>" in page
    assert "<td>0.324 ± 0.0057 (2)</td>" in page

    faces = [results.write_metrics(frame({"gan": [0.6]}, dataset="celeba", metric="diversity_test"),
                                   tmp_path / "celeba.parquet")]  # α-GAN prints only the test split's own values
    report.aggregate(faces, tmp_path / "out", ["gan"])
    assert sorted(p.name for p in papers.iterdir()) == ["alpha_gan.md", "avae.md", "index.md"]  # avae: gan, celeba
    assert "| test data | 0.621 | 0.6 (1 seed) |" in (papers / "alpha_gan.md").read_text()

    other = [results.write_metrics(frame({"vae": [0.01]}, dataset="fashion_mnist"), tmp_path / "fm.parquet")]
    report.aggregate(other, tmp_path / "out", ["vae"])  # no paper dataset: the old views go, the index stays
    assert sorted(p.name for p in papers.iterdir()) == ["index.md"]
    assert "Not run (none of their rows in these results): avae, alpha_gan, lsr_gan, avae_s" in \
           report.html_report(results.read_metrics(tmp_path / "out" / "results.parquet"), ["vae"])
