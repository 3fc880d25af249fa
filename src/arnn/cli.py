"""Command-line entry: `python train.py ...` and the `arnn-train` console script."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from arnn.config import (
    check_memory,
    compose_config,
    composition_error,
    default_config_dir,
    register_configs,
    validate,
)
from arnn.errors import ConfigError, UserError, exit_with, invalid, one_line
from arnn.preemption import quiet_sacct_polls, uses_submitit
from arnn.results import RunResult
from arnn.run_dir import record_failure, run
from arnn.storage import DirLock, Folder, RunLogHandler, UnsafeRunDir

log = logging.getLogger("arnn")
GROUPS = ("model", "dataset", "optimizer", "preset", "sweep")


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
                raise invalid(group, value, options)


def check_output_dirs(args: list[str]) -> None:
    """`hydra.run.dir` / `hydra.sweep.dir` given on the command line must be (or be made) a
    directory: a regular file on the way is refused in one line, not by Hydra's traceback."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir") and value:
            for folder in (Path(value), *Path(value).parents):
                if folder.exists() and not folder.is_dir():
                    raise invalid(key, value, f"{folder} is a file, not a directory")


def check_before_hydra(args: list[str], config_dir: Path) -> None:
    """A single run's config composed and validated before Hydra creates its run directory, so
    that a bad value leaves nothing behind (a refused run removes nothing: a directory it
    finds may hold anyone's files). Sweeps validate each job in the job."""
    if any(a in ("-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i",
                 "--info", "--shell-completion", "-sc") or a.startswith(("hydra.mode=", "-"))
           for a in args):
        return
    try:
        cfg = compose_config([a for a in args if not a.startswith("hydra.")], config_dir)
    except (ConfigCompositionException, OmegaConfBaseException, OverflowError) as e:
        raise composition_error(e) from None
    validate(cfg)
    check_memory(cfg)


def _save_hydra_files(cfg: DictConfig, run_dir: Folder) -> None:
    """What Hydra's run_job writes into .hydra/ (train.yaml sets hydra.output_subdir=null so that
    Hydra does not): written only once the run holds its directory and accepted the config."""
    hydra_cfg = HydraConfig.instance().cfg
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        run_dir.write_atomic(f".hydra/{name}", OmegaConf.to_yaml(node).encode())


def _record_refused(cfg: DictConfig, run_dir: Path, error: ConfigError) -> None:
    """In a sweep, a job refused for a bad value leaves its record (.hydra/ and a `failed`
    results.json with the reason) so that the collector lists it; nothing already there is
    replaced."""
    with Folder(run_dir) as folder, DirLock(folder):
        if RunResult.read(run_dir) is not None:
            return
        _save_hydra_files(cfg, folder)
        record_failure(folder, error, {group: {"name": str(cfg[group].name)}
                                        for group in ("model", "dataset", "optimizer")})


def _log_refusal(error: UserError) -> None:
    """The refusal into the job log (train.log) only: the terminal gets it from exit_with."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "refused: %s",
                            (one_line(error),), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLogHandler):
            handler.handle(record)


def _task(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        try:
            return run(cfg, run_dir, on_start=lambda folder: _save_hydra_files(cfg, folder))
        except OSError as e:  # the file system said no (read-only, out of inodes, ...)
            raise UserError(f"{e.filename or run_dir}: {e.strerror or e}") from e
    except UserError as e:
        if not isinstance(e, UnsafeRunDir):
            _log_refusal(e)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            logging.shutdown()
            exit_with(e)
        # In a sweep this job fails alone: Hydra records it and the sweep goes on.
        print(f"error: {one_line(e)}", file=sys.stderr)
        if isinstance(e, ConfigError):
            _record_refused(cfg, run_dir, e)
        raise


def main(config_dir: str | Path | None = None) -> None:
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    register_configs(config_dir)
    if uses_submitit(sys.argv[1:], config_dir):
        quiet_sacct_polls()
    try:
        check_group_choices(sys.argv[1:], config_dir)
        check_output_dirs(sys.argv[1:])
        check_before_hydra(sys.argv[1:], config_dir)
    except ConfigError as e:
        exit_with(e)
    hydra.main(version_base="1.3", config_path=str(config_dir), config_name="train")(_task)()
