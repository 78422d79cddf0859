"""A researcher's own image folder, labelled (class subfolders) or not (flat): the train_classifier
stage on unlabelled data trains the autoencoder and says why there is no classifier, a cell's
classifier metrics are `missing` with that reason while the rest is computed, and
`python -m pipeline check` says up front which metrics each grid dataset cannot have and why."""

import json

import numpy as np
import pytest
import yaml

from pipeline import data as datamod
from pipeline import evaluate
from pipeline import run as stages
from pipeline.cli import main
from pipeline.config import parse_params
from pipeline.sections import DatasetConfig
from tests.conftest import tiny_params
from tests.shapes import write_shapes
from tests.test_metrics_evaluate import NEEDS_WEIGHTS, build, cfg, no_weights  # noqa: F401 (a fixture)

CLASSIFIER_ROWS = {row for spec in evaluate.METRICS.values() if "classifier" in spec.needs for row in spec.row_names}
SMALL = {"classifier": {"epochs": 1, "batch_size": 16, "width": 4, "feature_dim": 8},
         "autoencoder": {"epochs": 1, "batch_size": 16, "width": 4, "feature_dim": 8}}


def own_params(tmp_path, folders: dict, **grid) -> dict:
    """tiny_params with image_folder datasets {name: folder} (32 px) in the grid."""
    raw = tiny_params(**SMALL)
    for name, folder in folders.items():
        raw["datasets"][name] = {"loader": "image_folder", "source": str(folder), "resolution": 32, "crop": "none"}
    raw["grid"].update({"datasets": list(folders), **grid})
    return raw


def prepared(raw: dict, name: str, tmp_path):
    cfg_ = parse_params(raw).dataset(name)
    return datamod.load_prepared(datamod.prepare(name, cfg_, tmp_path / "prepared" / name))


@pytest.fixture
def flat(tmp_path):
    return write_shapes(tmp_path / "flat", 20, labelled=False)


@pytest.fixture
def labelled(tmp_path):
    return write_shapes(tmp_path / "labelled", 20, labelled=True)


def test_the_classifier_stage_on_an_unlabelled_folder_trains_the_autoencoder_and_says_why(flat, tmp_path):
    raw = own_params(tmp_path, {"flat": flat})
    prepared(raw, "flat", tmp_path)
    out = tmp_path / "classifiers" / "flat"
    assert stages.train_classifier(parse_params(raw), "flat", tmp_path / "prepared" / "flat", out) is None
    record = json.loads((out / "classifier.json").read_text())
    assert record["applicable"] is False
    assert record["reason"].startswith("flat has no labels (its images lie directly in the folder, not in class "
                                       "subfolders): the classifier-based metrics need a labelled dataset")
    assert record["autoencoder"]["n_train"] == 36 and record["autoencoder"]["config"]["feature_dim"] == 8
    assert not (out / "classifier.pt").exists() and stages.load_classifier_dir(out) == (None, None)
    ae = stages.load_autoencoder_dir(out)
    assert ae.stats[0].shape == (8,) and ae.label.startswith("autoencoder:flat:seed=0:sha256=")


def test_an_unlabelled_cell_has_missing_classifier_rows_and_every_other_metric(flat, tmp_path, no_weights):
    raw = own_params(tmp_path, {"flat": flat})
    data = prepared(raw, "flat", tmp_path)
    stages.train_classifier(parse_params(raw), "flat", tmp_path / "prepared" / "flat", tmp_path / "clf")
    autoencoder = stages.load_autoencoder_dir(tmp_path / "clf")
    for model in ("vae", "gan"):
        rows = evaluate.Cell(build(model, data.info), data, cfg(tmp_path, n_samples=36), autoencoder=autoencoder).rows()
        by = {r.metric: r for r in rows}
        for name in CLASSIFIER_ROWS:
            if by[name].status == "n/a":  # no encoder: the model's lack comes first
                assert model == "gan" and "no encoder" in by[name].reason
                continue
            assert by[name].status == "missing" and "flat has no labels" in by[name].reason, (model, by[name])
        assert by["fd_autoencoder"].status == "ok" and np.isfinite(by["fd_autoencoder"].value)
        for name in set(by) - CLASSIFIER_ROWS - NEEDS_WEIGHTS:
            assert by[name].status in ("ok", "n/a"), (model, by[name])
        assert {n for n, r in by.items() if r.status == "ok"} >= {"fd_autoencoder", "diversity", "indep_critic"}
    assert by["recon_accuracy"].status == "n/a" and by["fd_classifier"].status == "missing"  # gan


def test_a_labelled_cell_without_its_classifier_given_is_missing_not_na(labelled, tmp_path):
    raw = own_params(tmp_path, {"labelled": labelled})
    data = prepared(raw, "labelled", tmp_path)
    assert data.info.n_classes == 2 and data.meta["labels"]["classes"] == ["disc", "square"]
    chosen = cfg(tmp_path, metrics=["fd_classifier", "fd_autoencoder"])
    rows = evaluate.Cell(build("vae", data.info), data, chosen).rows()
    assert [(r.metric, r.status) for r in rows] == [("fd_classifier", "missing"), ("fd_autoencoder", "missing")]
    assert "no dataset classifier was given (evaluate --classifier" in rows[0].reason
    assert "no dataset autoencoder was given" in rows[1].reason


def test_a_single_class_folder_gets_no_classifier(tmp_path):
    root = tmp_path / "one"
    write_shapes(root / "only", 10, labelled=False)  # one class subfolder
    raw = own_params(tmp_path, {"one": root})
    prepared(raw, "one", tmp_path)
    stages.train_classifier(parse_params(raw), "one", tmp_path / "prepared" / "one", tmp_path / "clf")
    reason = json.loads((tmp_path / "clf" / "classifier.json").read_text())["reason"]
    assert reason == "one has a single class: a classifier has nothing to learn (give it two classes or more)"


# ------------------------------------------------------------------ python -m pipeline check


def check(tmp_path, capsys, raw: dict) -> tuple[int, str, str]:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    code = main(["--params", str(path), "check", "--prepared", str(tmp_path / "prepared")])
    out, err = capsys.readouterr()
    return code, out, err


def section(out: str, dataset: str) -> list[str]:
    """The lines check prints about one dataset."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {dataset}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def test_check_names_the_metrics_a_dataset_cannot_have_before_it_is_prepared(flat, labelled, tmp_path, capsys,
                                                                             no_weights):
    raw = own_params(tmp_path, {"flat": flat, "labelled": labelled})
    raw["grid"]["datasets"].append("toy2d")
    code, out, _ = check(tmp_path, capsys, raw)
    assert code == 0
    flat_lines = section(out, "flat")
    assert flat_lines[0] == f"  flat: image data, no labels (from its raw folder {flat})"
    classifier_line = next(line for line in flat_lines if "fd_classifier" in line)
    assert classifier_line.startswith("    missing: recon_accuracy, recon_accuracy_relative, fd_classifier, ")
    assert set(classifier_line.split(" -- ")[0].removeprefix("    missing: ").split(", ")) == CLASSIFIER_ROWS
    assert "flat has no labels (its images lie directly in the folder, not in class subfolders)" in classifier_line
    inception = next(line for line in flat_lines if line.startswith("    missing: fid, "))
    assert "Inception (clean-fid) weights not found" in inception
    assert any(line.startswith("    missing: lpips -- AlexNet (LPIPS v0.1) weights not found") for line in flat_lines)
    labelled_lines = section(out, "labelled")
    assert labelled_lines[0] == f"  labelled: image data, 2 classes (from its raw folder {labelled})"
    assert not any("fd_classifier" in line for line in labelled_lines)
    toy = section(out, "toy2d")
    assert toy[0] == "  toy2d: vector data" and toy[1].startswith("    not computed: lpips, cosine, ")
    assert toy[1].endswith("-- vector data: image metrics have no column") and len(toy) == 2


def test_check_reads_the_prepared_meta_json_and_ignores_a_stale_one(flat, tmp_path, capsys):
    raw = own_params(tmp_path, {"flat": flat})
    raw["evaluate"]["metrics"] = ["mse", "fd_classifier", "fd_autoencoder"]  # no weights involved
    prepared(raw, "flat", tmp_path)
    flat.rename(tmp_path / "moved")  # the prepared folder alone tells now
    code, out, _ = check(tmp_path, capsys, raw)
    meta = tmp_path / "prepared" / "flat" / "meta.json"
    assert code == 0 and section(out, "flat") == [
        f"  flat: image data, no labels (from {meta})",
        "    missing: fd_classifier -- flat has no labels (its images lie directly in the folder, not in class "
        "subfolders): the classifier-based metrics need a labelled dataset (image_folder: class subfolders "
        "<class>/<image>, or a split_file with a label column)"]
    raw["datasets"]["flat"]["resolution"] = 64  # prepared from other settings: not what dvc repro will use
    code, out, _ = check(tmp_path, capsys, raw)
    lines = section(out, "flat")
    assert lines[0].startswith("  flat: image data, labels unknown (from no raw folder yet (looked in ")
    assert "labels unknown until the raw folder is there" in lines[1] and "fd_classifier" in lines[1]


def test_check_says_every_metric_when_nothing_is_lacking_and_fails_on_a_folder_prepare_will_refuse(
        labelled, tmp_path, capsys):
    raw = own_params(tmp_path, {"labelled": labelled})
    raw["evaluate"]["metrics"] = ["mse", "fd_classifier", "fd_autoencoder"]
    code, out, _ = check(tmp_path, capsys, raw)
    assert code == 0 and section(out, "labelled") == [
        f"  labelled: image data, 2 classes (from its raw folder {labelled}): every metric"]
    write_shapes(labelled, 1, labelled=False)  # two images directly in it besides the class subfolders
    code, out, err = check(tmp_path, capsys, raw)
    assert code == 1 and "prepare will refuse it" in section(out, "labelled")[1]
    assert err.startswith("error: DatasetCorrupt: datasets.labelled: ")
    assert "put every image in a class subfolder" in err
    assert "Traceback" not in err


def test_check_on_a_declared_dataset_uses_its_declaration(tmp_path, capsys):
    raw = tiny_params(**SMALL)
    raw["datasets"]["celeba"] = {}
    raw["grid"]["datasets"] = ["celeba", "fashion_mnist"]
    raw["evaluate"]["metrics"] = ["fd_classifier", "fd_autoencoder"]
    code, out, _ = check(tmp_path, capsys, raw)
    assert code == 0
    assert section(out, "celeba")[0] == "  celeba: image data, no labels (from the celeba declaration)"
    assert section(out, "celeba")[1].startswith("    missing: fd_classifier -- celeba has no labels: ")
    assert section(out, "fashion_mnist") == [
        "  fashion_mnist: image data, 10 classes (from the fashion_mnist declaration): every metric"]


def test_expected_labels_agree_with_what_prepare_records(flat, labelled, tmp_path):
    from pipeline.datasets import DATASETS

    for root in (flat, labelled):
        entry = DatasetConfig(source=str(root), loader="image_folder", resolution=32, crop="none")
        expected = DATASETS["image_folder"].expected(entry, root.name)
        meta = datamod.load_prepared(datamod.prepare(root.name, entry, tmp_path / "p" / root.name)).meta
        assert (expected.n_classes, expected.labels) == (meta["info"]["n_classes"], meta["labels"])


def test_check_reads_labels_from_a_split_file_while_the_folder_is_absent(tmp_path, capsys):
    split = tmp_path / "split.txt"
    split.write_text("a.png train 0\nb.png train 1\n\nc.png test 1\n")
    raw = own_params(tmp_path, {"mine": tmp_path / "absent"})
    raw["datasets"]["mine"]["split_file"] = str(split)
    raw["evaluate"]["metrics"] = ["fd_classifier"]
    code, out, _ = check(tmp_path, capsys, raw)
    assert code == 0 and section(out, "mine") == [
        f"  mine: image data, 2 classes (from its split_file {split}; no raw folder yet): every metric"]
    split.write_text("a.png train\nc.png test\n")  # no label column: the folder's layout will decide
    code, out, _ = check(tmp_path, capsys, raw)
    assert section(out, "mine")[0].startswith("  mine: image data, labels unknown (from no raw folder yet")
