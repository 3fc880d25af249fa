"""docs/presets.md's preset table, generated from conf/preset: one row per (model, dataset) with
the values that pair composes to and where they come from (the header comment of the preset it
uses).

    python scripts/preset_table.py      # prints the table; tests/test_presets.py compares
"""

from __future__ import annotations

import re
from pathlib import Path

from arnn.data.tasks import DATASETS
from arnn.models import CELLS
from arnn.schema import compose_config, default_config_dir, preset_for

HEADER = ("| model | task | optimizer | lr | eps | gamma | sigma_w | steps | "
          "where the values come from |")


def _shown(value: object) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:g}"


def provenance(path: Path) -> str:
    """A preset file's header comment (after `# @package`), without its `<model> on <task>: `."""
    lines = []
    for line in path.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return re.sub(r"^\w+ on [^:]+: ", "", " ".join(lines))


def preset_table(config_dir: Path | None = None) -> str:
    config_dir = Path(config_dir or default_config_dir())
    rows = [HEADER, "|" + "---|" * 9]
    for dataset in DATASETS:
        for model in CELLS:
            cfg = compose_config([f"model={model}", f"dataset={dataset}"], config_dir)
            used = preset_for(config_dir, model, dataset)
            source = provenance(config_dir / "preset" / f"{used}.yaml")
            if used != f"{model}_{dataset}":
                source = f"{used}'s preset (no file of its own; {used}: {source})"
            cells = [model, dataset, cfg.optimizer.name, _shown(cfg.optimizer.lr),
                     _shown(cfg.model.eps), _shown(cfg.model.gamma), _shown(cfg.model.sigma_w),
                     _shown(cfg.train.steps), source]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
