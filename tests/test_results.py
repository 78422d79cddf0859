"""Parquet schema validation, atomic writes and the aggregated table."""

import math

import pandas as pd
import pytest

from pipeline import report, results


def frame(**over):
    row = {"dataset": "fashion_mnist", "method": "avae", "variant": "avae_b", "seed": 0, "metric": "mse",
           "value": 0.05, "split": "test", "scale": "[0,1]", "n_samples": 100, "features": "", "status": "ok",
           "reason": "", "time_s": 0.1, "git_rev": "abc", "params_hash": "h", "checkpoint": "run@1"}
    row.update(over)
    return pd.DataFrame([row])


def test_roundtrip_keeps_schema_version(tmp_path):
    results.write_metrics(frame(), tmp_path / "m.parquet")
    back = results.read_metrics(tmp_path / "m.parquet")
    assert back.loc[0, "value"] == 0.05 and back.loc[0, "seed"] == 0


@pytest.mark.parametrize("bad,match", [
    (frame().drop(columns=["status"]), "missing columns \\['status'\\]"),
    (frame().assign(extra=1), "unexpected columns \\['extra'\\]"),
    (frame(seed="zero"), "does not match schema"),
    (frame(status="great"), "unknown status"),
    (frame(value=float("nan")), "status 'ok' has no value"),
])
def test_writer_rejects_bad_frames(bad, match, tmp_path):
    with pytest.raises(results.SchemaError, match=match):
        results.write_metrics(bad, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_missing_metric_row_is_valid_with_reason(tmp_path):
    results.write_metrics(frame(metric="fid", value=math.nan, status="missing", reason="no weights"),
                          tmp_path / "m.parquet")


def test_aggregate_mean_std_and_table(tmp_path):
    files = []
    for seed, value in [(0, 0.1), (1, 0.3)]:
        avae = pd.concat([frame(seed=seed, value=value),
                          frame(seed=seed, metric="fid", value=math.nan, status="missing", reason="no weights")])
        gan = frame(seed=seed, variant="gan", method="gan", metric="fd_classifier", value=10.0 + seed)
        for name, df in (("avae_b", avae), ("gan", gan)):
            files.append(results.write_metrics(df, tmp_path / f"{name}{seed}.parquet"))
    report.aggregate(files, tmp_path / "out", ["vae", "gan", "avae_b"])
    summary = __import__("json").loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["fashion_mnist"]["avae_b"]["mse"]["mean"] == pytest.approx(0.2)
    assert summary["fashion_mnist"]["avae_b"]["mse"]["std"] == pytest.approx(0.141421, rel=1e-4)
    table = (tmp_path / "out" / "table.md").read_text()
    generation = table[table.index("### Generation"):]
    assert generation.index("| gan |") < generation.index("| avae_b |")  # params order
    assert "0.200 ± 0.141" in table and "- fid missing: no weights" in table
    assert len(results.read_metrics(tmp_path / "out" / "results.parquet")) == 6


def write_cell(path, variant, seed, value):
    results.write_metrics(pd.concat([frame(variant=variant, seed=seed, value=value),
                                     frame(variant=variant, seed=seed, metric="kl", value=value * 10)]), path)
    return path


def test_rerunning_one_cell_replaces_its_rows_and_no_others(tmp_path):
    cells = [("vae", 0, 0.1), ("vae", 1, 0.2), ("avae_b", 0, 0.3)]
    files = [write_cell(tmp_path / f"{v}{s}.parquet", v, s, x) for v, s, x in cells]
    before = report.aggregate(files, tmp_path / "out", ["vae", "avae_b"])
    write_cell(files[1], "vae", 1, 0.9)  # re-run of one cell
    after = report.aggregate(files, tmp_path / "out", ["vae", "avae_b"])
    assert len(after) == len(before) == 6
    key = ["variant", "seed", "metric"]
    merged = before.merge(after, on=key, suffixes=("_before", "_after"))
    changed = merged[merged["value_before"] != merged["value_after"]]
    assert sorted(map(tuple, changed[key].values)) == [("vae", 1, "kl"), ("vae", 1, "mse")]
    on_disk = results.read_metrics(tmp_path / "out" / "results.parquet")
    assert on_disk.loc[(on_disk.variant == "vae") & (on_disk.seed == 1) & (on_disk.metric == "mse"), "value"].item() == 0.9


def test_a_cell_in_two_files_or_two_cells_in_one_file_is_rejected(tmp_path):
    a = write_cell(tmp_path / "a.parquet", "vae", 0, 0.1)
    b = write_cell(tmp_path / "b.parquet", "vae", 0, 0.2)
    with pytest.raises(results.SchemaError, match="appears in both"):
        results.collect([a, b])
    two = tmp_path / "two.parquet"
    results.write_metrics(pd.concat([frame(seed=0), frame(seed=1)]), two)
    with pytest.raises(results.SchemaError, match="holds 2 cells"):
        results.collect([two])


def test_an_old_schema_version_asks_for_a_rerun(tmp_path):
    import pyarrow.parquet as pq

    table = results.validate(frame()).replace_schema_metadata({"schema_version": "1"})
    pq.write_table(table, tmp_path / "old.parquet")
    with pytest.raises(results.SchemaError, match="schema version 1.*re-run evaluate"):
        results.read_metrics(tmp_path / "old.parquet")
