"""`python -m pipeline pr-report --base REV`: the whole pull-request report as Markdown.

Sections: the significance-marked metric diff and the params diff (pipeline/diff.py), the
papers' orderings whose verdict changed between base and head (pipeline/findings.py), and the
sample grids of changed cells, base and head side by side in one PNG per cell, which
`cml comment create` uploads because the Markdown links them by relative path.

The head is the workspace (after `dvc repro`) unless --head names a revision. A revision's
grids, evals/<dataset>/<model>/seed<k>/samples.png, are read through DVC (git for the
revision, the DVC cache or remote for the files), or from a folder laid out like evals/.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from pipeline import diff, findings
from pipeline.io import atomic_write, atomic_write_text
from pipeline.significance import format_p

GRID = "samples.png"  # the 8×8 sample grid pipeline/evaluate/pictures.py writes per cell
MAX_GRIDS = 6  # combined PNGs per report (a comment stays readable)


class GridSource:
    """One revision's sample grids: `folder` laid out like evals/ (the workspace's, or a copy),
    or `rev` of the DVC repository at `repo`."""

    def __init__(self, label: str, folder: Path | None = None, repo: Path | None = None, rev: str | None = None):
        self.label = label
        if folder is None:
            from dvc.api import DVCFileSystem

            self.fs, self.root = DVCFileSystem(str(repo), rev=rev), "evals"
        else:
            from fsspec.implementations.local import LocalFileSystem

            self.fs, self.root = LocalFileSystem(), str(Path(folder).resolve())

    def seeds(self, dataset: str, model: str) -> list[int]:
        """The seeds with a folder for this cell ([] when the cell has none)."""
        folder = f"{self.root}/{dataset}/{model}"
        try:
            names = [Path(p).name for p in self._guard(lambda f: self.fs.ls(f, detail=False), folder)]
        except FileNotFoundError:
            return []
        return sorted(int(n[4:]) for n in names if n.startswith("seed") and n[4:].isdigit())

    def read(self, dataset: str, model: str, seed: int) -> bytes:
        """The grid's bytes; GridUnavailable when it is absent or its DVC objects are in neither the
        cache nor a remote."""
        path = f"{self.root}/{dataset}/{model}/seed{seed}/{GRID}"
        try:
            return self._guard(self.fs.read_bytes, path)
        except FileNotFoundError as e:
            raise GridUnavailable(f"{path} at {self.label}: {e.strerror or e}") from None

    def _guard(self, call, path: str):
        from dvc_data.index import DataIndexError

        try:
            return call(path)
        except DataIndexError as e:  # an output folder's listing (.dir object) is in no cache or remote
            raise GridUnavailable(f"{path} at {self.label}: {e}") from None


class GridUnavailable(OSError):
    """A revision's grid that exists in its DVC outputs but whose bytes cannot be had here."""


def changed_cells(changes: list[diff.Change]) -> list[tuple[tuple[str, str], float | None, bool]]:
    """Cells (dataset, model) with a new or changed row: (cell, smallest p, any significant),
    significant ones first, then by smallest p (cells without a p last)."""
    cells: dict[tuple[str, str], list[diff.Change]] = {}
    for c in changes:
        if c.new is not None and (c.delta is None or c.delta != 0):
            cells.setdefault(c.cell, []).append(c)
    rows = []
    for cell, cs in cells.items():
        ps = [c.p for c in cs if c.p is not None]
        rows.append((cell, min(ps) if ps else None, any(c.significant for c in cs)))
    return sorted(rows, key=lambda r: (not r[2], r[1] is None, r[1] or 0.0, r[0]))


def side_by_side(base_png: bytes | None, head_png: bytes, base_title: str, head_title: str):
    """One PIL image: the base grid left, the head grid right, each under its title."""
    from PIL import Image, ImageDraw

    head = Image.open(io.BytesIO(head_png)).convert("RGB")
    base = Image.open(io.BytesIO(base_png)).convert("RGB") if base_png else None
    pad, title_h = 6, 16
    panels = [(base_title, base), (head_title, head)] if base else [(head_title, head)]
    width = sum(p.width for _, p in panels) + pad * (len(panels) + 1)
    out = Image.new("RGB", (width, max(p.height for _, p in panels) + title_h + 2 * pad), "white")
    draw, x = ImageDraw.Draw(out), pad
    for title, panel in panels:
        while len(title) > 1 and draw.textlength(title) > panel.width:
            title = title[:-1]  # cut to the panel's width
        draw.text((x, pad // 2), title, fill="black")
        out.paste(panel, (x, pad + title_h))
        x += panel.width + pad
    return out


def read_cell(base: GridSource, head: GridSource, dataset: str, model: str,
              unavailable: dict[str, list[str]]) -> tuple[int, bytes | None, bytes] | None:
    """(seed, base grid or None, head grid) at the cell's lowest head seed; None without a head
    grid. What cannot be read is noted in unavailable['base' | 'head'] (every cell of summary.json
    has its grids in evals/, so a changed cell without them at head is unavailable, not unchanged)."""
    try:
        seeds = head.seeds(dataset, model)
        if not seeds:
            raise GridUnavailable(f"no {head.root}/{dataset}/{model}/seed<k> at {head.label}")
        head_png = head.read(dataset, model, seeds[0])
    except GridUnavailable as e:
        unavailable["head"].append(str(e))
        return None
    try:
        return seeds[0], base.read(dataset, model, seeds[0]), head_png
    except GridUnavailable as e:
        unavailable["base"].append(str(e))
        return seeds[0], None, head_png


def grids_section(changes: list[diff.Change], base: GridSource, head: GridSource, grids_dir: Path,
                  link_root: Path, max_grids: int = MAX_GRIDS) -> str:
    """Markdown linking a base | head PNG per changed cell (lowest seed at head), written under grids_dir."""
    lines, shown, skipped = ["## Sample grids of changed cells", ""], 0, []
    unavailable: dict[str, list[str]] = {"base": [], "head": []}
    for (dataset, model), p, significant in changed_cells(changes):
        if shown == max_grids:
            skipped.append(f"{dataset}/{model}")
            continue
        cell = read_cell(base, head, dataset, model, unavailable)
        if cell is None or cell[1] == cell[2]:
            continue
        seed, base_png, head_png = cell
        image = side_by_side(base_png, head_png, f"base {base.label}", f"head {head.label}")
        png = atomic_write(grids_dir / f"{dataset}-{model}-seed{seed}.png", lambda t: image.save(t, format="PNG"))
        link = Path(os.path.relpath(png, link_root)).as_posix()
        where = "base left, head right" if base_png else "head only: no base grid"
        pnote = (f"smallest p {format_p(p, significant)}" if p is not None
                 else "no p-value: new, n too small to tell or other feature networks")
        lines += [f"**{dataset} / {model}**, seed {seed} ({where}; {pnote})", "",
                  f"![{dataset} {model} seed {seed}: base vs head]({link})", ""]
        shown += 1
    if not shown:
        lines.append("No grid shown." if unavailable["head"] else "No sample grid changed.")
    if skipped:
        lines.append(f"{len(skipped)} more changed cells not shown (--max-grids {max_grids}): {', '.join(skipped)}.")
    fixes = {"base": "`dvc pull` the base revision's evals from a remote, or pass --base-evals with a folder "
                     "laid out like evals/", "head": "run `dvc repro` (or `dvc pull`) for the head first"}
    for side, problems in unavailable.items():
        if problems:
            lines.append(f"{side.capitalize()} grids unavailable for {len(problems)} changed cells "
                         f"(e.g. {problems[0]}): {fixes[side]}.")
    return "\n".join(lines).rstrip() + "\n"


def orderings_section(old: dict, new: dict) -> str:
    """The papers' orderings whose verdict changed, then every ordering at head (folded)."""
    head = findings.check(new)
    return "\n".join(["## Paper orderings that changed", "", findings.render_changes(findings.check(old), head),
                      "<details><summary>Every ordering at head</summary>", "",
                      findings.render_markdown(head), "</details>", ""])


def pr_report(base: str, head: str | None = None, cwd: str | Path = ".", out: Path | None = None,
              grids_dir: Path | None = None, base_evals: Path | None = None, max_grids: int | None = None) -> str:
    """The report's Markdown for base vs head (None: the workspace); written to `out` when given.
    Grids go to grids_dir (default: `grids` beside `out`, else `pr-report-grids`), linked relative
    to `out`'s folder (else to cwd)."""
    cwd = Path(cwd)
    if base_evals and not Path(base_evals).is_dir():
        raise ValueError(f"--base-evals {base_evals}: no such folder; give one laid out like evals/ "
                         "(<dataset>/<model>/seed<k>/samples.png)")
    if max_grids is not None and max_grids < 0:
        raise ValueError(f"--max-grids {max_grids}: must be 0 or more")
    metrics_diff, params_diff = diff.fetch(base, head, cwd)
    old, new = diff.summaries(metrics_diff)
    networks = diff.changed_networks(base, head, cwd)
    changes = diff.compare(old, new, networks=networks)
    head_label = head or "workspace"
    link_root = out.resolve().parent if out else cwd.resolve()
    grids_dir = grids_dir or (link_root / "grids" if out else cwd / "pr-report-grids")
    base_src = GridSource(base, folder=base_evals) if base_evals else GridSource(base, repo=cwd, rev=base)
    head_src = GridSource(head, repo=cwd, rev=head) if head else GridSource(head_label, folder=cwd / "evals")
    text = "\n".join([f"# Metrics report: {base} → {head_label}", "",
                      diff.render_metrics(changes, base, head_label), diff.render_params(params_diff),
                      orderings_section(old, new),
                      grids_section(changes, base_src, head_src, Path(grids_dir), link_root,
                                    MAX_GRIDS if max_grids is None else max_grids)])
    if out:
        atomic_write_text(out, text)
    return text
