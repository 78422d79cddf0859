"""Bad params stop the run before training, naming the key and what is allowed."""

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_params
from tests.conftest import ROOT, tiny_params


def test_repository_params_files_are_valid():
    load_params(ROOT / "params.yaml")
    load_params(ROOT / "params" / "paper.yaml")


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
    raw["grid"]["stage2"] = {"vae": ["gan"]}
    with pytest.raises(ConfigError, match=r"grid\.stage2\.vae \(gan\).*baselines"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["stage2"] = {"vae_s": ["avae_b"]}
    with pytest.raises(ConfigError, match=r"grid\.stage2\.vae_s.*not a stage-1 model"):
        parse_params(raw)
    raw = tiny_params()
    raw["grid"]["datasets"] = ["cifar10"]
    with pytest.raises(ConfigError, match=r"datasets\.cifar10"):
        parse_params(raw)


def test_missing_beta_for_a_grid_dataset_fails_before_training(tmp_path):
    from pipeline.run import check_grid

    raw = tiny_params()
    raw["models"]["vae"]["beta"] = {"cifar10": 10.0}
    with pytest.raises(ConfigError, match=r"no value for dataset 'toy2d'"):
        check_grid(parse_params(raw))


def test_cli_check_reports_bad_key(tmp_path, capsys):
    from pipeline.cli import main

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(evaluate={"n_sample": 5})))
    assert main(["--params", str(path), "check"]) == 2
    assert "evaluate.n_sample" in capsys.readouterr().err


def test_yaml_scientific_notation_is_a_number():
    raw = tiny_params()
    raw["models"]["gan"]["lr"] = "2e-4"
    assert parse_params(raw).models["gan"].config.lr == pytest.approx(2e-4)
