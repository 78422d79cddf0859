"""What the machine a run is on can compute: its CPU's name, instruction sets, cores and clock,
whether it computes bf16 natively, and its nominal peak FLOP/s (the bench's "% of peak")."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

# dense bf16 / fp32 tensor-core peaks in FLOP/s (vendor data sheets, SXM parts)
GPU_PEAK = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12),
            "L40S": (362e12, 91.6e12), "RTX 4090": (165e12, 82.6e12)}


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or torch.cpu.get_capabilities().get("cpu_name", "unknown CPU")


def cpu_clock_hz() -> float | None:
    """The CPU's maximum clock (cpufreq), else its current one (/proc/cpuinfo); None when unknown."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) * 1e3
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) * 1e6
    except (OSError, ValueError):
        pass
    return None


def cpu_flops_per_cycle() -> tuple[int, int, str]:
    """Nominal (fp32, bf16) FLOPs per cycle of one core from its instruction sets, with two FMA
    units per core (one-unit or double-pumped cores reach half): AVX-512 16 fp32 lanes, AVX2 8;
    AVX512-BF16's dot products twice the fp32 rate; AMX-BF16 1,024 (Intel's figure per core);
    without native bf16 the fp32 rate. The third item names the instruction sets."""
    caps = torch.cpu.get_capabilities()
    if caps.get("avx512_f"):
        fp32, isa = 2 * 2 * 16, "AVX-512"
    elif caps.get("avx2") and caps.get("fma3"):
        fp32, isa = 2 * 2 * 8, "AVX2+FMA"
    else:
        fp32, isa = 2 * 4, "SSE"
    if caps.get("amx_bf16"):
        return fp32, 1024, isa + " + AMX-BF16"
    if caps.get("avx512_bf16"):
        return fp32, 2 * fp32, isa + " + AVX512-BF16"
    return fp32, fp32, isa


def native_bf16(device: torch.device) -> bool:
    """The device computes bf16 natively: a CPU with AVX512-BF16 or AMX-BF16 instructions, a
    CUDA GPU that supports bf16 (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def peak_flops(device: torch.device, autocast: str, threads: int | None = None) -> float | None:
    """Nominal peak FLOP/s of `device` at the precision `autocast` computes in (bf16 / off): a
    GPU's data-sheet figure (None for one not in GPU_PEAK); a CPU's cores in use (`threads`, at
    most the physical cores) x clock x FLOPs per cycle (None when the clock is unknown)."""
    bf16 = autocast == "bf16"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next(((b if bf16 else f) for key, (b, f) in GPU_PEAK.items() if key in name), None)
    clock = cpu_clock_hz()
    if clock is None:
        return None
    fp32, bf16_rate, _ = cpu_flops_per_cycle()
    cores = torch.cpu.get_capabilities().get("num_physical_cores") or 1
    return min(threads or torch.get_num_threads(), cores) * clock * (bf16_rate if bf16 else fp32)


def describe_cpu(threads: int | None = None) -> str:
    """One line: the CPU, the cores in use, clock, instruction sets and nominal peaks."""
    clock = cpu_clock_hz()
    fp32, bf16, isa = cpu_flops_per_cycle()
    cores = torch.cpu.get_capabilities().get("num_physical_cores") or 1
    used = min(threads or torch.get_num_threads(), cores)
    if clock is None:
        return f"CPU: {cpu_name()}, {used} of {cores} cores, {isa}; clock unknown: no peak"
    cpu = torch.device("cpu")
    return (f"CPU: {cpu_name()}, {used} of {cores} cores at {clock / 1e9:.2f} GHz, {isa}: nominal peak "
            f"{peak_flops(cpu, 'off', threads) / 1e9:.0f} GFLOP/s fp32, "
            f"{peak_flops(cpu, 'bf16', threads) / 1e9:.0f} GFLOP/s bf16 "
            f"({fp32} and {bf16} FLOP/cycle/core, two FMA units assumed)")
