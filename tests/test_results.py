"""Parquet schema validation, atomic writes and the aggregated table."""

import math

import pandas as pd
import pytest

from pipeline import results


def frame(**over):
    row = {"dataset": "fashion_mnist", "method": "avae", "variant": "avae_b", "seed": 0, "metric": "mse",
           "value": 0.05, "split": "test", "scale": "[0,1]", "n_samples": 100, "features": "", "status": "ok",
           "reason": "", "time_s": 0.1, "git_rev": "abc", "params_hash": "h"}
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
        f = tmp_path / f"s{seed}.parquet"
        df = pd.concat([frame(seed=seed, value=value),
                        frame(seed=seed, metric="fid", value=math.nan, status="missing", reason="no weights"),
                        frame(seed=seed, variant="gan", method="gan", metric="fd_classifier", value=10.0 + seed)])
        results.write_metrics(df, f)
        files.append(f)
    results.aggregate(files, tmp_path / "out", ["vae", "gan", "avae_b"])
    summary = __import__("json").loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["fashion_mnist"]["avae_b"]["mse"]["mean"] == pytest.approx(0.2)
    assert summary["fashion_mnist"]["avae_b"]["mse"]["std"] == pytest.approx(0.141421, rel=1e-4)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| gan |" in table and table.index("| gan |") < table.index("| avae_b |")  # params order
    assert "0.200 ± 0.141" in table and "- fid missing: no weights" in table
    assert len(results.read_metrics(tmp_path / "out" / "results.parquet")) == 6
