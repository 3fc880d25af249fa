"""The entry point end to end: the offline default run, results.json, bad input."""

import json

import pytest
from omegaconf import OmegaConf

from arnn.errors import ConfigError
from arnn.models import SequenceClassifier, build_cell, count_parameters
from arnn.validation import validate
from tests.fixtures import compose_cfg, run_cli, run_config

RESULT_KEYS = {"status", "test_accuracy", "best_test_accuracy", "params", "steps", "model",
               "dataset", "wall_time_s"}


@pytest.mark.slow
def test_default_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train.steps=60", "train.eval_every=30", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= result.keys()
    assert result["status"] == "completed"
    assert (result["model"], result["dataset"], result["steps"]) == ("gated_arnn", "digits", 60)
    cfg = compose_cfg()
    cell = build_cell("gated_arnn", 1, cfg.model.hidden_size)
    assert result["params"] == count_parameters(SequenceClassifier(cell, 10))
    assert 0.0 <= result["test_accuracy"] <= result["best_test_accuracy"] <= 1.0
    assert [e[0] for e in result["evaluations"]] == [30, 60]
    assert result["wall_time_s"] > 0
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / "checkpoints" / "last.pt").is_file()
    assert "eval step 60" in (out / "train.log").read_text()


def test_a_short_run_learns(tmp_path):
    """Training must descend: the loss falls and test accuracy clearly beats chance (0.1).
    A sign error in the step (gradient ascent) or a model that ignores its input fails this."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_cfg("train.steps=150", "train.log_every=25", "train.eval_every=150",
                      "device=cpu")
    best = run_config(cfg, tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 6 and losses[0] > 2.0  # cross-entropy starts near log(10) = 2.3
    assert losses[-1] < 0.6 * losses[0], losses
    assert best >= 0.5, best


def test_zero_steps_builds_evaluates_and_writes_results(tmp_path):
    best = run_config(compose_cfg("train.steps=0"), tmp_path)
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "completed" and result["steps"] == 0
    assert result["val_accuracy"] == best and 0.0 <= best <= 1.0
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert len(result["evaluations"]) == 1


BAD_VALUES = [
    ("model.eps=0", "model.eps=0.0"),
    ("model.eps=-0.5", "model.eps=-0.5"),
    ("model.gamma=-0.01", "model.gamma=-0.01"),
    ("model.hidden_size=0", "model.hidden_size=0"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("optimizer.lr=0", "optimizer.lr=0.0"),
    ("optimizer.lr=-1", "optimizer.lr=-1.0"),
    ("train.steps=-1", "train.steps=-1"),
    ("model.sigma_w=-1", "model.sigma_w=-1.0"),
    ("train.resume=maybe", "train.resume='maybe'"),
    ("train.lr_schedule=linear", "train.lr_schedule='linear'"),
    ("device=tpu", "device='tpu'"),
    ("model.backend=cudnn", "model.backend='cudnn'"),
    ("seed=-1", "seed=-1"),
    ("seed=4294967296", "seed=4294967296"),
    ("dataset.num_classes=1", "dataset.num_classes=1"),
    ("train.patience=0", "train.patience=0"),
]


@pytest.mark.parametrize("override,named", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused_naming_key_and_value(override, named):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(override))
    message = str(info.value)
    assert message.startswith(named) and "\n" not in message
    assert "must be" in message or "allowed" in message


def test_fewer_classes_than_the_labels_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"^dataset.num_classes=5 is invalid: the labels of "
                                          r"digits go up to 9; it needs at least 10$"):
        run_config(compose_cfg("dataset.num_classes=5", "device=cpu"), tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()


def test_patience_without_a_validation_split_is_refused():
    with pytest.raises(ConfigError, match=r"^train.patience=3 is invalid: must be null without a "
                                          r"validation split \(dataset.val_size=0\)"):
        validate(compose_cfg("train.patience=3", "dataset.val_size=0"))


BOUNDARY_VALUES = ["model.eps=1e-9", "model.gamma=0", "model.hidden_size=1", "seed=0",
                   "seed=4294967295", "dataset.num_classes=10", "dataset.val_seed=4294967295",
                   "train.steps=0", "model.sigma_w=0", "optimizer.weight_decay=0",
                   "train.patience=1"]


@pytest.mark.parametrize("override", BOUNDARY_VALUES)
def test_values_at_the_edge_of_their_range_pass(override):
    """The ranges' edges are allowed: a bound set one off would refuse these."""
    cfg = compose_cfg("model=arnn", override)
    validate(cfg)
    key, value = override.split("=")
    assert float(OmegaConf.select(cfg, key)) == float(value)


CLI_CASES = [
    ("model.eps=0", "model.eps=0.0 is invalid: must be a number > 0"),
    ("model=rnn", "model='rnn' is invalid: allowed: ablation, arnn, gated_arnn, lstm"),
    ("dataset=imagenet", "dataset='imagenet' is invalid: allowed: cifar10, digits"),
    ("optimizer=lamb", "optimizer='lamb' is invalid: allowed: adagrad, adam, adamw, rmsprop, "
                       "sgd"),
    ("optimizer=adam optimizer.betas=[1.5,0.9]", "optimizer.betas=[1.5, 0.9] is invalid: must "
                                                 "be 2 numbers, each < 1"),
    ("device=cuda", "device='cuda' is invalid: no CUDA GPU"),
    ("dataset.seq_len=abc", "dataset.seq_len=abc is invalid: Value 'abc' of type 'str' could "
                            "not be converted to Integer"),
    ("optimizer.lr=" + "9" * 401, "optimizer.lr is invalid: int too large to convert to float"),
    ("model.hidden_size=60000", "model.hidden_size=60000 is invalid: with"),
]


@pytest.mark.slow
@pytest.mark.parametrize("override,expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_one_line_nonzero_exit_nothing_written(tmp_path, override, expected):
    import torch

    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present: device=cuda is valid here")
    out = tmp_path / "run"
    proc = run_cli(*override.split(), "train.steps=1", f"hydra.run.dir={out}")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), proc.stderr
    assert not out.exists()


OPTIMIZER_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "adam": "Adam", "adamw": "AdamW",
                     "rmsprop": "RMSprop"}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CLASSES))
def test_each_optimizer_is_torchs_own_with_the_configured_settings(name):
    """The registry builds torch's class of that name, and its first steps are those of that
    class built by hand with the configuration's values (weight decay on, so that AdamW's
    decoupled decay and Adam's L2 term differ)."""
    import torch

    from arnn.optimizers import build_optimizer

    cfg = compose_cfg(f"optimizer={name}", "optimizer.lr=0.01", "optimizer.weight_decay=0.1")
    o = OmegaConf.to_container(cfg.optimizer)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in o.items()
                if k not in ("name", "lr") and v is not None}
    results = []
    for build in (lambda p: build_optimizer(cfg.optimizer, p),
                  lambda p: getattr(torch.optim, OPTIMIZER_CLASSES[name])(p, lr=o["lr"],
                                                                          **settings)):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(5))
        optimizer = build([weight])
        for _ in range(3):
            optimizer.zero_grad()
            (weight ** 3).sum().backward()
            optimizer.step()
        results.append((type(optimizer).__name__, weight.detach().clone()))
    assert results[0][0] == OPTIMIZER_CLASSES[name]
    assert torch.equal(results[0][1], results[1][1])


def test_adagrads_accumulator_starts_at_the_configured_value():
    """optimizer.initial_accumulator_value against Adagrad's update written out in float64:
    G_t = v0 + sum of squared gradients, w <- w - lr g_t / (sqrt(G_t) + 1e-10). At v0 = 0.1
    (TensorFlow's default) the first step is lr g / sqrt(0.1 + g^2), not torch's lr sign(g)."""
    import torch

    from arnn.optimizers import build_optimizer

    cfg = compose_cfg("optimizer=adagrad", "optimizer.lr=0.4",
                      "optimizer.initial_accumulator_value=0.1")
    torch.manual_seed(0)
    start = torch.randn(5, dtype=torch.float64) * 0.1
    weight = torch.nn.Parameter(start.clone())
    optimizer = build_optimizer(cfg.optimizer, [weight])
    expected, accumulator = start.clone(), torch.full_like(start, 0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (weight ** 3).sum().backward()
        optimizer.step()
        grad = 3 * expected ** 2
        accumulator += grad ** 2
        expected -= 0.4 * grad / (accumulator.sqrt() + 1e-10)
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-12, atol=0)
    with pytest.raises(ConfigError, match=r"^optimizer.initial_accumulator_value=-0.1 is "
                                          r"invalid: must be a number >= 0"):
        validate(compose_cfg("optimizer=adagrad", "optimizer.initial_accumulator_value=-0.1"))


@pytest.mark.parametrize("betas,ok", [([0.999, 0.9], True), ([1.0, 0.9], False),
                                      ([0.9, 1.0], False), ([-0.1, 0.9], False)])
def test_adams_betas_are_each_below_one(betas, ok):
    cfg = compose_cfg("optimizer=adam", f"optimizer.betas=[{betas[0]},{betas[1]}]")
    if ok:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=r"optimizer.betas=.* is invalid: must be 2 "
                                              r"numbers, each (< 1|>= 0)"):
            validate(cfg)


def test_a_run_is_composed_validated_and_specified_once(tmp_path, monkeypatch):
    """`python train.py ...`: Hydra composes the config once, it is validated and its memory
    checked once, and `auto` is resolved to a backend once (the model keeps the function)."""
    import sys

    from hydra._internal.hydra import Hydra

    from arnn import cli, recurrence, spec

    calls = {"compose": 0, "validate": 0, "check_memory": 0, "resolve_backend": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Hydra, "compose_config", counted("compose", Hydra.compose_config))
    for name in ("validate", "check_memory", "resolve_backend"):
        monkeypatch.setattr(spec, name, counted(name, getattr(spec, name)))
    # and wherever else a backend could be resolved (a cell given `auto` resolves per call)
    monkeypatch.setattr(recurrence, "resolve_backend",
                        counted("resolve_backend", recurrence.resolve_backend))
    monkeypatch.setattr(sys, "argv", ["train.py", "train.steps=3", "model.hidden_size=8",
                                      "train.eval_every=3", "device=cpu",
                                      f"hydra.run.dir={tmp_path}"])
    cli.main()
    assert calls == {"compose": 1, "validate": 1, "check_memory": 1, "resolve_backend": 1}
    assert json.loads((tmp_path / "results.json").read_text())["backend"] == "cpu"
