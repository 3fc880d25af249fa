"""The house rules docs/development.md's "Architecture" states, read from the source: each module
imports only modules of lower layers, functions and classes stay short, tests and scripts do not
import test modules."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import ROOT

SRC = ROOT / "src"
# Bottom to top; a module may import only modules of a lower layer (docs/development.md).
LAYERS = [
    ["arnn.errors", "arnn.grid", "arnn.bounded", "arnn.report.paper", "arnn.host"],
    ["arnn.storage", "arnn.recurrence", "arnn.data.files", "arnn.window"],
    ["arnn.data.idx", "arnn.data.cifar", "arnn.data.task", "arnn.data.sampler", "arnn.results",
     "arnn.models", "arnn.optimizers", "arnn.checkpoint", "arnn.inplace"],
    ["arnn.data.tasks", "arnn.points", "arnn.halving_record"],
    ["arnn.data", "arnn.registry"],
    ["arnn.identity"],
    ["arnn.schema", "arnn.validation", "arnn.resources", "arnn.stability", "arnn.monitor",
     "arnn.dynamics", "arnn.report.jobs"],
    ["arnn.spec", "arnn.state", "arnn.presets", "arnn.report.choose"],
    ["arnn.build", "arnn.diagnostics", "arnn.report.tables"],
    ["arnn.loop", "arnn.report.figures"],
    ["arnn.record"],
    ["arnn.preemption"],
    ["arnn.run_dir", "arnn.sweeps"],
    ["arnn.cli", "arnn.collect", "arnn.bench", "arnn.gradient_flow_cli",
     "hydra_plugins.arnn_halving_sweeper", "hydra_plugins.arnn_grid_sweeper",
     "hydra_plugins.arnn_optuna_sweeper"],
]
LAYER = {module: level for level, modules in enumerate(LAYERS) for module in modules}
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 150
MAX_LOOP_LINES = 120  # the training loop: steps and evaluation, nothing else
MAX_FILE_LINES = 300


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str | None:
    """The listed module or package that `module` belongs to (the longest listed prefix)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYER:
            return ".".join(parts[:end])
    return None


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules `path` imports (for `from X import Y`: X.Y when it is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                    for a in node.names}
    return {m for m in out if _unit(m) is not None}


def upward_imports(src: Path = SRC) -> list[str]:
    """`importer (layer) -> imported (layer)` for each import of another unit of the same or a
    higher layer."""
    paths = {_module_name(p, src): p for p in sorted(src.rglob("*.py"))}
    found = []
    for module, path in paths.items():
        unit = _unit(module)
        if unit is None:
            continue
        for imported in sorted(_imports(path, module, set(paths))):
            other = _unit(imported)
            if other != unit and LAYER[other] >= LAYER[unit]:
                found.append(f"{unit} (layer {LAYER[unit]}) -> {other} (layer {LAYER[other]})")
    return found


def test_every_module_has_a_layer():
    unlisted = [_module_name(p) for p in SRC.rglob("*.py")
                if _unit(_module_name(p)) is None
                and _module_name(p) not in ("arnn", "arnn.report", "hydra_plugins")]
    assert not unlisted, f"place these in LAYERS (and docs/development.md): {unlisted}"


def test_imports_run_downward_only():
    assert upward_imports() == []


def test_an_upward_import_is_noticed(tmp_path):
    """The check itself: a copy of src/ where the results module imports the runner fails."""
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    results = copy / "arnn" / "results.py"
    results.write_text(results.read_text() + "\nfrom arnn.run_dir import run  # noqa\n")
    run_dir = LAYER["arnn.run_dir"]
    assert upward_imports(copy) == [f"arnn.results (layer 2) -> arnn.run_dir (layer {run_dir})"]


def _long_definitions(kind: type, limit: int) -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                           f"({node.end_lineno - node.lineno + 1} lines)")
    return out


def test_functions_classes_and_files_stay_short():
    assert _long_definitions((ast.FunctionDef, ast.AsyncFunctionDef), MAX_FUNCTION_LINES) == []
    assert _long_definitions(ast.ClassDef, MAX_CLASS_LINES) == []
    assert [d for d in _long_definitions(ast.ClassDef, MAX_LOOP_LINES)
            if d.startswith("src/arnn/loop.py") and " Loop " in d] == []
    long_files = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sorted(SRC.rglob("*.py"))
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert long_files == []


@pytest.mark.parametrize("folder", ["tests", "scripts"])
def test_no_module_imports_a_test_module(folder):
    offenders = []
    for path in sorted((ROOT / folder).rglob("*")):
        if path.suffix not in (".py", ".sh") or path.name == "test_architecture.py":
            continue
        text = path.read_text()
        if "from tests.test_" in text or "import tests.test_" in text or (
                folder == "scripts" and "from tests" in text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


TOY_CELL = '''

class LeakyTanhCell(RecurrentCell):
    """h_t = (1 - alpha) h_{t-1} + alpha tanh(W h_{t-1} + V x_t + b): the walk-through's model."""

    settings = ("alpha", "sigma_w")
    ranges = {"alpha": Range(0, strict=True)}

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.5,
                 sigma_w: float = 1.0) -> None:
        super().__init__()
        self.hidden_size, self.alpha = hidden_size, alpha
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / input_size ** 0.5)
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) * sigma_w
                                      / hidden_size ** 0.5)
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def recurrent_matrix(self) -> Tensor:
        return self.weight_hh

    def step_states(self, x: Tensor) -> list[Tensor]:
        h, states = x.new_zeros(x.shape[0], self.hidden_size), []
        for t in range(x.shape[1]):
            pre = h @ self.weight_hh.t() + x[:, t] @ self.weight_ih.t() + self.bias
            h = (1 - self.alpha) * h + self.alpha * torch.tanh(pre)
            states.append(h)
        return states

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(self.step_states(x))


CELLS["toy"] = LeakyTanhCell
'''
TOY_DATASET = '''

def _mirrored_digits(cfg: DictConfig, root: Path) -> dict[str, np.ndarray]:
    arrays = _digits(cfg)
    if cfg.mirror:
        for key in ("train_images", "test_images"):
            arrays[key] = arrays[key][:, :, ::-1].copy()
    return arrays


DATASETS["mirror_digits"] = DatasetSpec(_mirrored_digits, 1.0 / 16,
                                        {**DIGITS_SPLIT, "mirror": bool})
'''


def _regenerated_preset_table(root: Path) -> Callable[[str], str]:
    """docs/presets.md with its table made by scripts/preset_table.py in the copy at `root`."""
    def edit(text: str) -> str:
        table = subprocess.run([sys.executable, "scripts/preset_table.py"], cwd=root,
                               env={**os.environ, "PYTHONPATH": str(root / "src")},
                               capture_output=True, text=True, check=True).stdout.strip()
        start = text.index("| model | task | optimizer |")
        return text[:start] + table + text[text.index("\n\n", start):]
    return edit


def _walkthrough_files(section: str, name: str) -> set[str]:
    """The files docs/development.md's "Adding a <section>" names (<name>, <dataset> as the
    test's)."""
    text = (ROOT / "docs" / "development.md").read_text()
    start = text.index(f"### Adding a {section}")
    part = text[start:text.index("\n## ", start)].split("\n### ")[0]
    named = re.findall(r"^\d+\. `([^`]+)`", part, flags=re.MULTILINE)
    return {n.replace("<name>", name).replace("<dataset>", "digits") for n in named}


def _copy_of_the_project(root: Path) -> Callable[..., subprocess.CompletedProcess]:
    """src/, conf/, scripts/, tests/, train.py, README.md and the docs pages copied to `root`;
    returns a runner of `python <args>` there, on the copy's code."""
    for part in ("src/arnn", "conf", "scripts", "tests"):
        shutil.copytree(ROOT / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "docs").mkdir()
    for page in (ROOT / "docs").glob("*.md"):
        shutil.copy(page, root / "docs" / page.name)
    for name in ("train.py", "README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)

    def python(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        return subprocess.run([sys.executable, *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
    return python


def _edit(root: Path, edits: dict[str, Callable[[str], str]]) -> None:
    for name, edit in edits.items():
        path = root / name
        before = path.read_text() if path.exists() else ""
        path.write_text(edit(before))
        assert path.read_text() != before, name


def _trained(python: Callable[..., subprocess.CompletedProcess], run_dir: Path, *args: str
             ) -> dict:
    """`python train.py <args>` for 60 steps in the copy: its results.json, completed."""
    proc = python("train.py", *args, "train.steps=60", "train.eval_every=30",
                  f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "completed"
    return result


@pytest.mark.slow
def test_adding_a_model_touches_the_files_the_guide_names(tmp_path):
    """A cell with a new hyperparameter, added by editing only the files the walk-through of
    docs/development.md names (README not among them), trains through train.py; its setting is
    validated and recorded like the others, and the suite's checks of the docs still pass."""
    python = _copy_of_the_project(tmp_path)
    edits = {
        "src/arnn/models.py": lambda text: text.replace(
            "from arnn.errors import invalid", "from arnn.errors import Range, invalid") + TOY_CELL,
        "conf/model/toy.yaml": lambda text: "name: toy\nbackend: null\n",
        "conf/preset/toy_digits.yaml": lambda text: (
            "# @package _global_\n# toy on the 8x8 digits: the walk-through's values\n"
            "defaults:\n  - /optimizer: adagrad\n  - _self_\n\n"
            "model:\n  hidden_size: 16\n  alpha: 0.5\n  sigma_w: 1.0\noptimizer:\n  lr: 0.1\n"),
    }
    _edit(tmp_path, edits)
    _edit(tmp_path, {"docs/presets.md": _regenerated_preset_table(tmp_path)})
    assert _walkthrough_files("model", "toy") == {*edits, "docs/presets.md"}
    result = _trained(python, tmp_path / "run", "model=toy")
    assert result["model"] == "toy"
    assert result["config"]["model"] == {"name": "toy", "hidden_size": 16, "alpha": 0.5,
                                         "sigma_w": 1.0}
    assert result["test_accuracy"] > 0.2  # it learns (chance 0.1)
    bad = python("train.py", "model=toy", "model.alpha=0", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "model.alpha=0.0 is invalid: must be a number > 0" in bad.stderr
    other = python("train.py", "model=arnn", "model.alpha=0.5",
                   f"hydra.run.dir={tmp_path / 'other'}")
    assert other.returncode == 2 and "model=arnn has no alpha" in other.stderr
    mnist = python("train.py", "model=toy", "dataset=pmnist", "--cfg", "job", "--resolve")
    assert mnist.returncode == 0 and "alpha: 0.5" in mnist.stdout  # the digits' preset
    checks = python("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_presets.py",
                    "-k", "docs or mirror or every_pair")
    assert checks.returncode == 0, checks.stdout[-3000:]


@pytest.mark.slow
def test_adding_a_dataset_touches_the_files_the_guide_names(tmp_path):
    """Mirrored digits with a setting of their own (`mirror`), added by editing only the files
    the walk-through of docs/development.md names: they train through train.py with the digits'
    presets, their setting is typed, validated and recorded, and the docs checks pass."""
    python = _copy_of_the_project(tmp_path)
    edits = {
        "src/arnn/data/tasks.py": lambda text: text + TOY_DATASET,
        "conf/dataset/mirror_digits.yaml": lambda text: (
            "name: mirror_digits\ninput_size: 1\nseq_len: 64\nnum_classes: 10\n"
            "standardize: false\ndownload: false\nval_size: 0.1\nval_seed: 0\n"
            "test_fraction: 0.25\nsplit_seed: 0\nmirror: true\n"),
        "docs/running.md": lambda text: text.replace(
            "| `dataset` | `digits` (default, offline), ",
            "| `dataset` | `digits` (default, offline), `mirror_digits`, "),
        "docs/data.md": lambda text: text.replace(
            "\n| `mnist` | 784 x 1 |",
            "\n| `mirror_digits` | 64 x 1 | the digits, each image mirrored | none |"
            "\n| `mnist` | 784 x 1 |"),
        "docs/presets.md": _regenerated_preset_table(tmp_path),
    }
    _edit(tmp_path, edits)
    assert _walkthrough_files("dataset", "mirror_digits") == set(edits)
    result = _trained(python, tmp_path / "run", "dataset=mirror_digits")
    assert result["dataset"] == "mirror_digits"
    assert result["config"]["dataset"]["mirror"] is True and result["test_accuracy"] > 0.2
    assert result["config"]["model"]["hidden_size"] == 32  # gated_arnn_digits' preset
    other = python("train.py", "dataset=digits", "dataset.mirror=true",
                   f"hydra.run.dir={tmp_path / 'other'}")
    assert other.returncode == 2 and "dataset=digits has no mirror" in other.stderr
    typed = python("train.py", "dataset=mirror_digits", "dataset.mirror=maybe",
                   f"hydra.run.dir={tmp_path / 'typed'}")
    assert typed.returncode != 0 and "mirror" in typed.stderr
    checks = python("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_presets.py",
                    "-k", "readme or every_pair")
    assert checks.returncode == 0, checks.stdout[-3000:]
