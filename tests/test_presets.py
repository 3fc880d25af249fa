"""Presets per (model, task), and one source for every default and every name."""

import dataclasses
import itertools
import re

import pytest
import yaml
from omegaconf import MISSING

from arnn import schema
from arnn.data.tasks import DATASETS, DatasetSpec
from arnn.errors import ConfigError
from arnn.grid import ADAPTIVE_LR, APPENDIX_C
from arnn.models import CELLS
from arnn.optimizers import OPTIMIZERS
from arnn.presets import preset_table
from arnn.schema import preset_for
from arnn.validation import validate
from tests.fixtures import CONF, compose_cfg

PAPER_TASKS = {"mnist": 50000, "pmnist": 50000, "cifar10": 50000, "noise_cifar10": 10000}


def _options(group):
    return {p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")}


def test_config_files_mirror_the_registries():
    assert _options("model") == set(CELLS)
    assert _options("dataset") == set(DATASETS)
    assert _options("optimizer") == set(OPTIMIZERS)
    assert _options("preset") <= {f"{m}_{d}" for m in CELLS for d in DATASETS}
    for model, dataset in itertools.product(CELLS, DATASETS):  # every pair has a preset
        assert preset_for(CONF, model, dataset) in _options("preset"), (model, dataset)


def test_a_pair_without_a_preset_takes_its_datasets_presets_from():
    """pmnist, fashion_mnist: MNIST's presets; noise_cifar10: CIFAR-10's; a dataset that
    names none: the digits'."""
    assert not (CONF / "preset" / "arnn_pmnist.yaml").exists()
    assert preset_for(CONF, "arnn", "pmnist") == "arnn_mnist"
    assert preset_for(CONF, "lstm", "noise_cifar10") == "lstm_cifar10"
    assert preset_for(CONF, "gated_arnn", "mnist") == "gated_arnn_mnist"  # a file of its own
    assert DatasetSpec(DATASETS["digits"].reader, 1.0).presets_from == "digits"


def test_unknown_names_are_refused_with_the_registry_names(capsys):
    from arnn.cli import check_group_choices

    with pytest.raises(ConfigError, match=r"model='rnn' is invalid: allowed: ablation, arnn, "
                                          r"gated_arnn, lstm \(did you mean arnn\?\)$"):
        check_group_choices(["model=rnn"], CONF)
    with pytest.raises(ConfigError, match=r"allowed: .*lstm$"):  # nothing close: no guess
        check_group_choices(["model=transformer"], CONF)
    with pytest.raises(ConfigError, match="preset='_none' is invalid"):
        check_group_choices(["preset=_none"], CONF)
    cfg = compose_cfg()
    cfg.optimizer.name = "lamb"
    with pytest.raises(ConfigError, match="optimizer='lamb' is invalid: allowed: sgd, adagrad, "
                                          "adam, adamw, rmsprop"):
        validate(cfg)


def test_the_schema_holds_types_and_no_values():
    """Every value lives in YAML: a schema default is MISSING, or None (a setting that a
    model, dataset or optimizer does not have, or no limit)."""
    for node in (schema.ModelConfig, schema.DatasetConfig, schema.OptimizerConfig,
                 schema.TrainConfig, schema.Config):
        for f in dataclasses.fields(node):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            assert default is MISSING or default is None, (node.__name__, f.name, default)


def test_model_files_only_define_the_model():
    """Tuned values (eps, gamma, sigma_w, lr) live in the presets, not in conf/model."""
    for path in (CONF / "model").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        assert set(data) <= {"name", "backend", "eps", "gamma"}, path.name
        assert all(data[k] is None for k in ("eps", "gamma") if k in data), path.name
    for path in (CONF / "optimizer").glob("*.yaml"):
        assert "lr" not in yaml.safe_load(path.read_text()), path.name


@pytest.mark.parametrize("model,dataset", list(itertools.product(sorted(CELLS), sorted(DATASETS))))
def test_every_pair_has_a_preset_on_the_appendix_c_grid(model, dataset):
    """Every preset is a point of the Appendix C grid, its optimizer one of the paper's two; or,
    with an optimizer of the field's (the LSTM's RMSprop), a point of the adaptive grid
    (`+sweep=adaptive`). The sweep over that grid holds the preset."""
    cfg = compose_cfg(f"model={model}", f"dataset={dataset}")
    validate(cfg)
    paper = OPTIMIZERS[cfg.optimizer.name].paper
    assert cfg.optimizer.lr in (APPENDIX_C["lr"] if paper else ADAPTIVE_LR)
    assert cfg.model.sigma_w in APPENDIX_C["sigma_w"]
    hyper = CELLS[model].settings
    assert (cfg.model.eps in APPENDIX_C["eps"]) if "eps" in hyper else cfg.model.eps is None
    assert (cfg.model.gamma in APPENDIX_C["gamma"]) if "gamma" in hyper else cfg.model.gamma is None
    if dataset in PAPER_TASKS:  # the command is the paper's experiment
        assert cfg.train.steps == PAPER_TASKS[dataset]
        assert cfg.train.eval_every == 1000
    # The sweep of its grid holds the preset: each axis of the sweep contains its value.
    params = compose_cfg(f"+sweep={'appendix_c' if paper else 'adaptive'}", f"model={model}",
                         f"dataset={dataset}", return_hydra_config=True).hydra.sweeper.params
    for key, value in (("model.sigma_w", cfg.model.sigma_w), ("optimizer", cfg.optimizer.name),
                       ("optimizer.lr", cfg.optimizer.lr), ("model.eps", cfg.model.eps),
                       ("model.gamma", cfg.model.gamma), ("train.grad_clip", cfg.train.grad_clip)):
        if key in params:
            axis = [yaml.safe_load(v) for v in params[key].split(",")]
            assert value in axis, (key, value, axis)


def test_the_paper_tasks_do_not_inherit_the_digits_values():
    """The digits values (eps 0.1, gamma 0.1) explode over 1024 steps: every pair on a paper
    task has its own, with Euler growth rho^T under the warning threshold (arnn.stability)."""
    digits = compose_cfg("model=arnn", "dataset=digits").model
    cifar = compose_cfg("model=arnn", "dataset=cifar10").model
    assert (digits.eps, digits.gamma) == (0.1, 0.1)
    assert (cifar.eps, cifar.gamma) != (digits.eps, digits.gamma)


def test_the_command_line_wins_over_the_preset():
    cfg = compose_cfg("model=arnn", "dataset=cifar10", "optimizer=sgd", "model.eps=0.1",
                      "optimizer.lr=0.5", "train.steps=100")
    assert (cfg.optimizer.name, cfg.optimizer.momentum, cfg.optimizer.lr) == ("sgd", 0.9, 0.5)
    assert (cfg.model.eps, cfg.train.steps) == (0.1, 100)
    preset = compose_cfg("model=arnn", "dataset=cifar10")
    assert cfg.model.gamma == preset.model.gamma  # what was not overridden stays the preset's
    other = compose_cfg("model=arnn", "dataset=cifar10", "preset=arnn_digits")
    assert (other.model.eps, other.optimizer.name) == (0.1, "sgd")


def test_a_preset_that_takes_another_pairs_values_includes_it(tmp_path):
    """Headers saying "<pair>'s values" include that pair's preset: re-tuning it (here
    arnn_mnist's lr, ablation_cifar10's eps) carries over to the pairs that borrow it."""
    import shutil

    for path in (CONF / "preset").glob("*.yaml"):
        text = path.read_text()
        borrowed = [p for p in re.findall(r"(\w+)'s values", text.splitlines()[1])
                    if p in _options("preset")]
        assert all(f"  - {p}\n" in text for p in borrowed), path.name
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    for name, key, new in (("arnn_mnist", "lr", "0.75"), ("ablation_cifar10", "eps", "0.1")):
        path = conf / "preset" / f"{name}.yaml"
        text, count = re.subn(rf"^(  {key}): \S+$", rf"\1: {new}", path.read_text(),
                              flags=re.MULTILINE)
        assert count == 1, (name, key)
        path.write_text(text)
    from arnn.schema import compose_config

    assert compose_config(["model=arnn", "dataset=pmnist"], conf).optimizer.lr == 0.75
    for dataset in ("mnist", "pmnist", "noise_cifar10"):
        assert compose_config(["model=ablation", f"dataset={dataset}"], conf).model.eps == 0.1
    assert compose_config(["model=ablation", "dataset=mnist"], conf).model.hidden_size == 128


def test_fashion_mnist_takes_the_mnist_presets():
    for model in CELLS:
        a = compose_cfg(f"model={model}", "dataset=fashion_mnist")
        b = compose_cfg(f"model={model}", "dataset=mnist")
        assert (a.model, a.optimizer, a.train) == (b.model, b.optimizer, b.train)


@pytest.mark.parametrize("override,message", [
    ("model.eps=0.1", r"model.eps=0.1 is invalid: model=lstm has no eps"),
    ("model.gamma=0.1", r"model.gamma=0.1 is invalid: model=lstm has no gamma"),
    ("optimizer.momentum=0.5", r"optimizer.momentum=0.5 is invalid: optimizer=adagrad has no"),
])
def test_a_setting_the_model_does_not_have_is_refused(override, message):
    extra = ["optimizer=adagrad"] if override.startswith("optimizer") else []
    cfg = compose_cfg("model=lstm", "dataset=mnist", *extra, override)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
    cfg = compose_cfg("model=ablation", "dataset=mnist", "model.gamma=0.1")
    with pytest.raises(ConfigError, match="model=ablation has no gamma"):
        validate(cfg)


def test_the_docs_preset_table_is_the_one_conf_preset_generates():
    """docs/presets.md's table is `python scripts/preset_table.py`'s output: one row per pair,
    the values it composes to, and where they come from."""
    table = preset_table(CONF)
    assert table in (CONF.parent / "docs" / "presets.md").read_text(), \
        "run scripts/preset_table.py"
    rows = [r for r in table.splitlines()[2:]]
    assert len(rows) == len(CELLS) * len(DATASETS)
    def row(task: str) -> list[str]:
        return next(r for r in rows if r.startswith(f"| arnn | {task} |")).split(" | ")

    # pMNIST borrows MNIST's values and says so
    assert row("pmnist")[2:8] == row("mnist")[2:8]
    assert row("pmnist")[8].startswith("arnn_mnist's preset (no file of its own")


def test_the_docs_list_every_dataset():
    """Each dataset of the registry is a choice in docs/running.md's usage table and a row of
    docs/data.md's Datasets table (docs/development.md, "Adding a dataset")."""
    docs = CONF.parent / "docs"
    choices = next(line for line in (docs / "running.md").read_text().splitlines()
                   if line.startswith("| `dataset` |"))
    rows = {line.split("|")[1].strip().strip("`") for line in
            (docs / "data.md").read_text().split("| dataset | T x m |")[1].split("\n\n")[0]
            .splitlines()[2:]}
    for name in DATASETS:
        assert f"`{name}`" in choices, name
        assert name in rows, name


def test_the_adaptive_sweep_is_the_adaptive_grid():
    params = compose_cfg("+sweep=adaptive", return_hydra_config=True).hydra.sweeper.params
    assert [float(v) for v in params["optimizer.lr"].split(",")] == list(ADAPTIVE_LR)
    assert params["optimizer"].split(",") == [n for n, s in OPTIMIZERS.items() if not s.paper]
