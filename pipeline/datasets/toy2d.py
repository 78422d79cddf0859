"""toy2d: the 2-D points of AVAE §5.1, generated (no raw files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datainfo import DataInfo
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Expected, Plan, Split
from pipeline.sections import DatasetConfig


def toy2d_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """AVAE §5.1: z1, z2, eps ~ N(0,1); x = (3 z1 + 0.1 eps, cos(3 z1) + tanh(3 z2) + 0.1 eps)."""
    z1, z2, eps = rng.standard_normal((3, n))
    return np.stack([3 * z1 + 0.1 * eps, np.cos(3 * z1) + np.tanh(3 * z2) + 0.1 * eps], 1).astype(np.float32)


@register
class Toy2d(Dataset):
    name = "toy2d"
    origin = "AVAE §5.1 (generated)"
    env = "TOY2D_DIR"
    files = "nothing (generated from datasets.toy2d.seed)"

    def candidates(self, cfg: DatasetConfig) -> list[tuple[str, Path]]:
        return [("generated", Path("."))]  # no raw files

    def present(self, root: Path) -> bool:
        return True

    def expected(self, cfg: DatasetConfig, name: str) -> Expected:
        return Expected("vector", 0, "the toy2d declaration")

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        rng = np.random.default_rng(cfg.seed)
        arrays = {"train": toy2d_sample(cfg.n_train or 20_000, rng), "test": toy2d_sample(cfg.n_test or 5_000, rng)}
        splits = {k: Split(len(a), (2,), lambda s, e, a=a: (a[s:e], None), labelled=False, dtype="float32")
                  for k, a in arrays.items()}
        return Plan(DataInfo(name, "vector", (2,), "raw", 0), splits,
                    {"sources": {"generator": "AVAE §5.1", "seed": cfg.seed}, "source_dir": ""})
