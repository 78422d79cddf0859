"""`auto` speed options resolve by what the CPU computes natively, and the bench's nominal
peaks follow the CPU's instruction sets, cores and clock."""

import json

import pytest
import torch

from pipeline import machine
from pipeline.config import parse_params
from pipeline.run import train_cell
from pipeline.sections import TrainConfig
from pipeline.training import resolve_speed_options
from tests.conftest import tiny_params

CPU = torch.device("cpu")
PLAIN_AVX512 = {"avx512_f": True, "avx2": True, "fma3": True, "avx512_bf16": False, "amx_bf16": False,
                "num_physical_cores": 4}


def with_caps(monkeypatch, **caps):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**PLAIN_AVX512, **caps})


@pytest.mark.parametrize("caps, native", [({}, False), ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True)])
def test_auto_is_bf16_only_where_the_cpu_computes_bf16_and_channels_last_on_every_cpu(monkeypatch, caps, native):
    with_caps(monkeypatch, **caps)
    cfg = resolve_speed_options(TrainConfig(autocast="auto", channels_last="auto"), CPU)
    assert (cfg.autocast, cfg.channels_last) == (("bf16", True) if native else ("off", True))


@pytest.mark.parametrize("native", [False, True])
def test_auto_on_a_gpu_is_bf16_and_channels_last_only_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr("pipeline.training.native_bf16", lambda device: native)
    cfg = resolve_speed_options(TrainConfig(autocast="auto", channels_last="auto"), torch.device("cuda"))
    assert (cfg.autocast, cfg.channels_last) == (("bf16", True) if native else ("off", False))


def test_explicit_speed_options_are_kept(monkeypatch):
    with_caps(monkeypatch, avx512_bf16=True)
    cfg = resolve_speed_options(TrainConfig(autocast="off", channels_last=False), CPU)
    assert (cfg.autocast, cfg.channels_last) == ("off", False)
    with_caps(monkeypatch)
    cfg = resolve_speed_options(TrainConfig(autocast="bf16", channels_last=True), CPU)
    assert (cfg.autocast, cfg.channels_last) == ("bf16", True)


def test_auto_is_an_allowed_value_and_others_are_not():
    params = parse_params(tiny_params(train={"autocast": "auto", "channels_last": "auto"}))
    assert (params.train.autocast, params.train.channels_last) == ("auto", "auto")
    with pytest.raises(ValueError, match="autocast"):
        parse_params(tiny_params(train={"autocast": "fp16"}))


@pytest.mark.parametrize("caps, fp32, bf16", [({}, 64, 64), ({"avx512_bf16": True}, 64, 128),
                                              ({"amx_bf16": True}, 64, 1024),
                                              ({"avx512_f": False}, 32, 32)])
def test_nominal_peak_is_cores_times_clock_times_flops_per_cycle(monkeypatch, caps, fp32, bf16):
    with_caps(monkeypatch, **caps)
    monkeypatch.setattr(machine, "cpu_clock_hz", lambda: 2.0e9)
    assert machine.peak_flops(CPU, "off", threads=2) == 2 * 2.0e9 * fp32
    assert machine.peak_flops(CPU, "bf16", threads=2) == 2 * 2.0e9 * bf16
    assert machine.peak_flops(CPU, "off", threads=16) == 4 * 2.0e9 * fp32  # at most the physical cores
    assert "nominal peak" in machine.describe_cpu(threads=2)


def test_unknown_clock_gives_no_peak(monkeypatch):
    monkeypatch.setattr(machine, "cpu_clock_hz", lambda: None)
    assert machine.peak_flops(CPU, "off") is None
    assert "clock unknown" in machine.describe_cpu()


def test_run_json_records_the_resolved_options(image_prepared, tmp_path):
    params = parse_params(tiny_params(networks={"width": 4, "latent_dim": 4},
                                      train={"iterations": 2, "batch_size": 8, "log_every": 1, "device": "cpu",
                                             "autocast": "auto", "channels_last": "auto"}))
    train_cell(params, "fashion_mnist", "vae", 0, tmp_path / "fmnist", tmp_path / "out", tmp_path / "ck")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    native = machine.native_bf16(CPU)
    assert (run["train"]["autocast"], run["train"]["channels_last"]) == ("bf16" if native else "off", True)
    assert run["cpu"] == machine.cpu_name() and run["threads"] == torch.get_num_threads()
