"""Random malformed params files never produce a traceback or any output file.

Each example mutates the repository's params.yaml (keys deleted, unknown keys added, values
replaced by YAML values of other types or by out-of-range numbers, unknown method and dataset
names) or replaces the whole file by text that is no params mapping (garbage, not YAML, not
UTF-8, empty). Then `check`, `prepare`, `train` and `evaluate` run in-process in a folder that
holds only that file: each must end in `error:` lines and a non-zero exit, and leave the folder
as it was. A mutation may leave the params valid: `check` then succeeds, and the other commands
fail for another clear reason (no raw files, no prepared data) before writing anything.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from tests.conftest import ROOT

N_EXAMPLES = 300  # params files tried per run (each through the four commands); ~15 s on 2 cores

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = "data/prepared/fashion_mnist"
COMMANDS = {
    "check": ["check"],
    "prepare": ["prepare", "fashion_mnist", "--out", DATA],
    "train": ["train", "fashion_mnist", "vae", "0", "--data", DATA, "--out", "models/vae", "--checkpoints",
              "checkpoints/vae"],
    "evaluate": ["evaluate", "fashion_mnist", "vae", "0", "--data", DATA, "--model-dir", "models/vae",
                 "--out", "evals/vae"],
}

SCALARS = (st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.floats() | st.text(max_size=12)
           | st.sampled_from(["2e-4", "1e3", "auto", "cuda:x", "vae", "", "0.5"]))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3), max_leaves=6)
OUT_OF_RANGE = st.sampled_from([-1, 0, 1, -10**9, 10**15, -0.5, 0.0, 1.5, 1e308, float("nan"), float("inf"),
                                float("-inf")])
UNKNOWN_KEYS = st.sampled_from(["zz_unknown", "learning_rate", "Iterations", "lr ", ""]) | st.integers() | st.booleans()
UNKNOWN_NAMES = st.sampled_from(["stylegan", "VAE", "vae ", "imagenet", "ghost_model", ""])
NOT_PARAMS = st.sampled_from([
    "", "  \n", "{unclosed: [1, 2", "key: value: other", "\t- tab indented", "- a\n- b\n", "42", "null", "~",
    "!!python/object/apply:os.system ['true']", "datasets: &a [*a]", "train:\n  iterations: 10\n iterations: 2",
    "models: {vae: {method: vae}, vae: 5}", "\x00\x01\x02", "? [1, 2]\n: x",
]) | st.text(max_size=60)


def key_paths(node, prefix: tuple = ()) -> list[tuple]:
    """Every path (mapping keys and list indices) below the root of a YAML tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, child in items:
        found += [prefix + (key,), *key_paths(child, prefix + (key,))]
    return found


def node_at(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@st.composite
def mutated_params(draw) -> bytes:
    """params.yaml after 1-3 random mutations, as the bytes of a YAML file."""
    tree = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(tree)
        kind = draw(st.sampled_from(["delete", "add_key", "retype", "out_of_range", "unknown_name"]))
        if kind == "delete" and paths:
            path = draw(st.sampled_from(paths))
            node_at(tree, path[:-1]).pop(path[-1])
        elif kind == "add_key":
            mappings = [p for p in [(), *paths] if isinstance(node_at(tree, p), dict)]
            node_at(tree, draw(st.sampled_from(mappings)))[draw(UNKNOWN_KEYS)] = draw(YAML_VALUES)
        elif kind == "retype" and paths:
            path = draw(st.sampled_from(paths))
            old = node_at(tree, path)
            node_at(tree, path[:-1])[path[-1]] = draw(YAML_VALUES.filter(lambda v: type(v) is not type(old)))
        elif kind == "out_of_range":
            numbers = [p for p in paths if is_number(node_at(tree, p))]
            if numbers:
                path = draw(st.sampled_from(numbers))
                node_at(tree, path[:-1])[path[-1]] = draw(OUT_OF_RANGE)
        elif kind == "unknown_name":  # a model's method, or a name in a grid list
            names = [p for p in paths if p[-1] == "method" or p[:1] == ("grid",) and isinstance(p[-1], int)]
            if names:
                path = draw(st.sampled_from(names))
                node_at(tree, path[:-1])[path[-1]] = draw(UNKNOWN_NAMES)
    return yaml.safe_dump(tree, sort_keys=False).encode()


PARAMS_FILES = (mutated_params() | NOT_PARAMS.map(str.encode)
                | st.binary(max_size=40))


def run_cli(argv: list[str]) -> int:
    """pipeline.cli.main's exit code; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# function-scoped fixtures are shared by the examples: each example makes its own folder under tmp_path
# and reads capsys after each command; database=None: hypothesis writes no .hypothesis folder into the cwd
@settings(max_examples=N_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params_file=PARAMS_FILES)
def test_malformed_params_fail_cleanly_and_write_nothing(params_file, tmp_path, monkeypatch, capsys):
    workdir = Path(tempfile.mkdtemp(dir=tmp_path))
    path = workdir / "params.yaml"
    path.write_bytes(params_file)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(workdir / "raw_absent"))  # prepare finds no raw files
    for name, command in COMMANDS.items():
        code = run_cli(["--params", str(path), *command])
        out, err = capsys.readouterr()
        event(f"{name} exit {code}")  # --hypothesis-show-statistics: how many files were valid params
        assert "Traceback" not in err, (name, err)
        assert files_under(workdir) == ["params.yaml"], (name, err)
        if name == "check" and code == 0:  # the mutation left the params valid
            assert ": ok (" in out and err == ""
            continue
        assert code != 0, (name, out)
        assert any(line.startswith("error: ") for line in err.splitlines()), (name, err)


def test_every_problem_of_a_params_file_is_listed(tmp_path, monkeypatch, capsys):
    raw = copy.deepcopy(BASE)
    raw["train"]["iterations"] = 0  # out of range
    raw["train"]["learning_rate"] = 0.1  # unknown key
    raw["networks"]["width"] = 2.5  # a float where an int belongs
    raw["evaluate"]["n_recon"] = True  # a bool where an int belongs
    raw["models"]["gan"]["method"] = "stylegan"  # unknown to the registry
    raw["models"]["vae"]["train"] = {"batch_size": 1}  # a model's out-of-range override
    raw["grid"]["datasets"] = ["fashion_mnist", "imagenet"]  # an undefined dataset
    del raw["models"]["age"]  # the grid still names it
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(path), "check"]) == 2
    lines = capsys.readouterr().err.splitlines()
    expected = ["'train.iterations' = 0 must be >= 1", "'train.learning_rate' is not a known key",
                "'networks.width' = 2.5 must be an integer", "'evaluate.n_recon' = True must be an integer",
                "'models.gan.method' = 'stylegan' is not a registered method",
                "'models.vae.train.batch_size' = 1 must be >= 2", "'datasets.imagenet' is not defined",
                "'models.age' is not defined"]
    for problem in expected:
        assert sum(problem in line for line in lines) == 1, (problem, lines)
    assert len(lines) == len(expected) and all(line.startswith("error: params: ") for line in lines), lines


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "{unclosed: [1"])
def test_a_file_that_is_no_params_mapping_is_one_error(tmp_path, capsys, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert main(["--params", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
