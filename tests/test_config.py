"""Bad params stop the run before training, naming the key and what is allowed."""

import pytest
import yaml

from pipeline.config import load_params, parse_params
from pipeline.schema import ConfigError
from tests.conftest import ROOT, tiny_params


PAPER_FILES = sorted((ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *PAPER_FILES], ids=lambda p: p.name)
def test_repository_params_files_are_valid(path):
    load_params(path)


def test_there_is_a_params_file_per_paper():
    assert {p.stem for p in PAPER_FILES} >= {"avae", "alpha_gan", "lsr_gan", "avae_s"}


def test_unknown_key_is_named_with_allowed_keys():
    raw = tiny_params(train={"iterations": 10, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*allowed keys.*iterations"):
        parse_params(raw)


def test_unknown_method_key_is_named():
    raw = tiny_params()
    raw["models"]["avae_b"]["lz"] = "b"
    with pytest.raises(ConfigError, match=r"models\.avae_b\.lz"):
        parse_params(raw)


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError, match=r"train\.batch_size.*>= 2"):
        parse_params(tiny_params(train={"batch_size": 1}))
    with pytest.raises(ConfigError, match=r"networks\.width"):
        parse_params(tiny_params(networks={"width": 0}))


def test_bad_choice_lists_the_choices():
    raw = tiny_params()
    raw["models"]["avae_b"]["latent_loss"] = "c"
    with pytest.raises(ConfigError, match=r"latent_loss.*\['a', 'b'\]"):
        parse_params(raw)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"train\.iterations.*integer"):
        parse_params(tiny_params(train={"iterations": "many"}))


def test_unknown_method_lists_registered_methods():
    raw = tiny_params()
    raw["models"]["gan"]["method"] = "stylegan"
    with pytest.raises(ConfigError, match=r"registered: .*avae.*gan.*vae"):
        parse_params(raw)


def test_grid_references_are_checked():
    raw = tiny_params()
    raw["grid"]["evaluate"] = ["vae", "bigan"]
    with pytest.raises(ConfigError, match=r"models\.bigan.*not defined"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["baselines"] = ["avae_b"]
    with pytest.raises(ConfigError, match=r"grid\.baselines.*stage2"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["stage2"] = [{"model": "gan", "export": "vae"}]
    with pytest.raises(ConfigError, match=r"grid\.stage2\[0\] \(gan\).*baselines"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["stage2"] = [{"model": "avae_b", "export": "vae_s"}]
    with pytest.raises(ConfigError, match=r"grid\.stage2\[0\]\.export \(vae_s\).*not a stage-1 model"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["stage2"].append({"model": "avae_b", "export": "vae"})
    with pytest.raises(ConfigError, match=r"trains \['avae_b'\] more than once"):
        parse_params(raw)
    raw = tiny_params()
    del raw["grid"]["baselines"]
    with pytest.raises(ConfigError, match=r"grid\.baselines' is missing.*baselines: \[\]"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["datasets"] = ["cifar10"]
    with pytest.raises(ConfigError, match=r"datasets\.cifar10"):
        parse_params(raw)


def test_per_dataset_values_resolve_for_each_grid_dataset():
    raw = tiny_params()
    raw["grid"]["datasets"] = ["toy2d", "fashion_mnist"]
    raw["models"]["vae"]["beta"] = {"toy2d": 0.5, "fashion_mnist": 4.0}
    raw["models"]["gan"]["train"] = {"iterations": {"toy2d": 10, "fashion_mnist": 30}}
    params = parse_params(raw)
    assert params.model("vae", "toy2d").config.beta == 0.5 and params.model("vae", "fashion_mnist").config.beta == 4.0
    assert params.model("gan", "toy2d").train.iterations == 10
    assert params.model("gan", "fashion_mnist").train.iterations == 30
    assert params.model("vae", "toy2d").train.iterations == 40  # not per dataset: the train section's


def test_a_grid_dataset_without_a_per_dataset_value_fails_naming_the_key_and_the_dataset():
    raw = tiny_params()
    raw["datasets"]["cifar10"] = {}
    raw["models"]["vae"]["beta"] = {"cifar10": 10.0}
    raw["models"]["gan"]["train"] = {"iterations": {"cifar10": 10}}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert "'models.vae.beta' has no value for dataset 'toy2d'" in str(err.value)
    assert "'models.gan.train.iterations' has no value for dataset 'toy2d'" in str(err.value)


def test_per_dataset_keys_must_be_dataset_names():
    raw = tiny_params()
    raw["models"]["vae"]["beta"] = {"toy2d": 1.0, "bedroom": 4.0}  # the registry's name is lsun_bedroom
    with pytest.raises(ConfigError, match=r"models\.vae\.beta' names \['bedroom'\], not datasets"):
        parse_params(raw)


def test_cli_check_reports_bad_key(tmp_path, capsys):
    from pipeline.cli import main

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(evaluate={"n_sample": 5})))
    assert main(["--params", str(path), "check"]) == 2
    assert "evaluate.n_sample" in capsys.readouterr().err


def test_cli_check_notes_a_model_in_no_grid_list(tmp_path, capsys):
    from pipeline.cli import main

    raw = tiny_params()
    raw["models"]["wgan"] = {"method": "wgan_gp"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(path), "check", "--prepared", str(tmp_path / "prepared")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("note: wgan is defined under models: but in no grid list (grid.pretrain, baselines, "
                        "stage2, evaluate): nothing trains or evaluates it")
    raw["grid"]["baselines"].append("wgan")
    path.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(path), "check", "--prepared", str(tmp_path / "prepared")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_yaml_scientific_notation_is_a_number():
    raw = tiny_params()
    raw["models"]["gan"]["lr"] = "2e-4"
    assert parse_params(raw).model("gan", "toy2d").config.lr == pytest.approx(2e-4)


# ---------------------------------------------------------------- every problem, no traceback


@pytest.mark.parametrize("key, value, named", [
    ("models", 5, "'models' = 5 must be a mapping"),
    ("train", [1, 2], "'train' must be a mapping of TrainConfig fields"),
    ("grid", None, "'grid.evaluate' must name at least one model"),  # null = the default grid, which names none
    ("networks", {"width": 4.0}, "'networks.width' = 4.0 must be an integer"),
    ("train", {"iterations": True}, "'train.iterations' = True must be an integer"),
    ("evaluate", {"metrics": [{"a": [1, {2: 3}]}]}, "'evaluate.metrics[0]'"),
    ("datasets", {1: {}, "toy2d": {}}, "'datasets.1' has a name of type int"),
    ("train", {1: 2}, "'train.1' is not a known key"),
    (7, {}, "'7' is not a known section"),
    ("models", {"gan": {"method": ["gan"]}}, "'models.gan.method' = ['gan'] is not a registered method"),
    ("models", {"gan": {"method": "gan", "lr": float("nan")}}, "'models.gan.lr' = nan must be a finite number"),
    ("models", {"gan": {"method": "gan", "train": [1]}}, "'models.gan.train' = [1] must be a mapping"),
])
def test_malformed_structure_is_a_config_error(key, value, named):
    raw = tiny_params()
    raw[key] = value
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    assert named in str(caught.value)
    assert all(line.startswith("params: '") for line in str(caught.value).splitlines())


def test_every_failed_range_check_of_a_section_is_reported():
    with pytest.raises(ConfigError) as caught:
        parse_params(tiny_params(train={"iterations": 0, "batch_size": 1, "threads": -1, "lr": 1}))
    lines = str(caught.value).splitlines()
    for key in ("train.iterations", "train.batch_size", "train.threads", "train.lr"):
        assert sum(f"'{key}'" in line for line in lines) == 1, (key, lines)


def test_a_bad_model_entry_hides_no_other_and_is_not_called_undefined():
    raw = tiny_params()
    raw["models"]["gan"]["method"] = "stylegan"
    raw["models"]["avae_b"]["latent_loss"] = "c"
    raw["models"]["vae"]["train"] = {"batch_size": 1}
    raw["datasets"]["toy2d"]["chunk"] = 0
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert "'models.gan.method' = 'stylegan'" in message and "'models.avae_b.latent_loss' = 'c'" in message
    assert "'models.vae.train.batch_size' = 1 must be >= 2" in message  # a model's override names the model
    assert "'datasets.toy2d.chunk' must be >= 1" in message  # a dataset's check names the dataset
    assert "is not defined" not in message and len(message.splitlines()) == 4


def write_params(folder, raw) -> str:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("command, dataset", [
    (["train", "toy2d", "vae", "0", "--out", "m", "--checkpoints", "c"], "toy2d"),
    (["evaluate", "toy2d", "vae", "0", "--model-dir", "m", "--out", "e"], "toy2d"),
    (["train-classifier", "fashion_mnist", "--out", "c"], "fashion_mnist"),
    (["toy", "--models", "m", "--figure", "f.png", "--summary", "s.json"], "toy2d"),
])
@pytest.mark.parametrize("prepared", ["absent", "empty"])
def test_stage_without_prepared_data_stops_before_anything(tmp_path, monkeypatch, capsys, command, dataset, prepared):
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, tiny_params())
    if prepared == "empty":
        (tmp_path / "prep").mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert main(["--params", params, *command, "--data", "prep"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--data prep" in err
    assert f"`dvc repro prepare@{dataset}`" in err and f"`python -m pipeline prepare {dataset} --out prep`" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_full_disk_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import errno

    from pipeline import run as stages
    from pipeline.cli import main

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "data/prepared/toy2d")

    monkeypatch.setattr(stages, "prepare_dataset", disk_full)
    assert main(["--params", write_params(tmp_path, tiny_params()), "prepare", "toy2d", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full (data/prepared/toy2d)" in err and "nothing was overwritten" in err


def test_programming_errors_are_not_swallowed(tmp_path, monkeypatch):
    from pipeline import run as stages
    from pipeline.cli import main

    def bug(*args):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(stages, "prepare_dataset", bug)
    with pytest.raises(KeyError):
        main(["--params", write_params(tmp_path, tiny_params()), "prepare", "toy2d", "--out", "x"])


def test_params_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"train: {device: \xff}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_params(path)
