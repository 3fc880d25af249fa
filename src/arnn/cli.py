"""Command-line entry: `python train.py ...` and the `arnn-train` console script."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from arnn.config import ConfigError, register_configs
from arnn.runner import USER_ERRORS, run

GROUPS = ("model", "dataset", "optimizer", "preset", "sweep")


def default_config_dir() -> Path:
    """$ARNN_CONFIG_DIR if set, else conf/ of the source checkout (editable install), else
    ./conf."""
    if os.environ.get("ARNN_CONFIG_DIR"):
        return Path(os.environ["ARNN_CONFIG_DIR"]).resolve()
    repo_conf = Path(__file__).resolve().parents[2] / "conf"
    return repo_conf if repo_conf.is_dir() else Path.cwd() / "conf"


def compose_config(
    overrides: list[str], config_dir: Path | None = None, return_hydra_config: bool = False
) -> DictConfig:
    """The config `python train.py <overrides>` would run (for scripts, tools and tests)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir or default_config_dir()),
                               version_base="1.3"):
        return compose(config_name="train", overrides=overrides,
                       return_hydra_config=return_hydra_config)


def check_group_choices(args: list[str], config_dir: Path) -> None:
    """Reject an unknown model/dataset/optimizer/sweep name in one line, before Hydra starts
    (Hydra's own message spans a page)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # noqa: BLE001 - malformed: Hydra reports it itself
            continue
        group = override.key_or_group
        if group not in GROUPS or override.is_delete():
            continue
        # Files named _* are parts that other configs include, not options.
        options = sorted(p.stem for p in (config_dir / group).glob("[!_]*.yaml"))
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        for value in values:
            if value not in options:
                raise ConfigError(f"{group}={value!r} is invalid: allowed: {', '.join(options)}")


def one_line(error: Exception) -> str:
    """An error's message on one line (exception texts quoted from files may hold newlines)."""
    return " ".join(str(error).split())


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """Hydra creates the run directory before the task starts; a run refused for a bad value
    takes away what Hydra wrote, and nothing else."""
    if not run_dir.is_dir():
        return
    only_hydra = all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir())
    if only_hydra:
        logging.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)


def _save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra's run_job writes into .hydra/ (train.yaml sets hydra.output_subdir=null so that
    Hydra does not): written only once the run holds its directory and accepted the config."""
    hydra_cfg = HydraConfig.instance().cfg
    out = run_dir / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        (out / name).write_text(OmegaConf.to_yaml(node))


def _record_refused(cfg: DictConfig, run_dir: Path, error: ConfigError) -> None:
    """In a sweep, a job refused for a bad value leaves its record (.hydra/ and a `failed`
    results.json with the reason) so that the collector lists it; nothing already there is
    replaced."""
    from arnn.results import RunResult
    from arnn.storage import RunDirLock

    with RunDirLock(run_dir):
        if RunResult.read(run_dir) is not None:
            return
        _save_hydra_files(cfg, run_dir)
        RunResult(status="failed", model=str(cfg.model.name), dataset=str(cfg.dataset.name),
                  optimizer=str(cfg.optimizer.name), error=f"ConfigError: {error}").write(run_dir)


def _task(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return run(cfg, run_dir, on_start=lambda: _save_hydra_files(cfg, run_dir))
    except USER_ERRORS as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # This job fails alone: Hydra records it and the sweep goes on.
            if isinstance(e, ConfigError):
                _record_refused(cfg, run_dir, e)
            raise
        if isinstance(e, ConfigError):
            _remove_if_only_hydra_files(run_dir)
        sys.exit(2)


def quiet_sacct_polls() -> None:
    """On a SLURM cluster without accounting every poll of submitit's launcher fails in sacct
    with a warning (and sacct's own line on stderr), every few seconds. Warn once, then stop
    polling sacct: once it fails, submitit learns that a job ended from its result file alone."""
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher
    except ImportError:
        return
    update = SlurmInfoWatcher.update
    if getattr(update, "quiet", False):
        return

    def quiet_update(self) -> None:
        if getattr(self, "accounting_off", False):
            return
        self._output = None
        update(self)
        if self._output is None:  # sacct failed: submitit logged it
            self.accounting_off = True
            logging.getLogger("submitit").warning(
                "sacct does not answer (accounting off on this cluster?): job states now come "
                "from result files alone; this warning is not repeated")

    quiet_update.quiet = True  # type: ignore[attr-defined]
    SlurmInfoWatcher.update = quiet_update  # type: ignore[method-assign]


def main(config_dir: str | Path | None = None) -> None:
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    register_configs()
    quiet_sacct_polls()
    try:
        check_group_choices(sys.argv[1:], config_dir)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    hydra.main(version_base="1.3", config_path=str(config_dir), config_name="train")(_task)()
