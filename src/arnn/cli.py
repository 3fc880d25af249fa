"""Command-line entry: `python train.py ...` and the `arnn-train` console script.

A single run is composed once (Hydra's composition, `hydra.run.dir` included), its specification
made once (`RunSpec.of`: validated, memory checked, device and backend chosen) before its
directory exists, then run through Hydra's `run_job` (the job's logging, .hydra/). Sweeps
(`--multirun`) and Hydra's own commands (--cfg, --help, ...) go through `hydra.main`; each job of a
sweep makes its specification in the job.
"""

from __future__ import annotations

import difflib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from arnn.errors import ConfigError, UserError, exit_with, invalid, one_line
from arnn.inplace import DirLock, RunLogHandler
from arnn.preemption import quiet_sacct_polls, uses_submitit
from arnn.results import RunResult
from arnn.run_dir import record_failure, run
from arnn.schema import composition_error, default_config_dir, register_configs
from arnn.spec import RunSpec
from arnn.storage import Folder, UnsafeRunDir

log = logging.getLogger("arnn")
GROUPS = ("model", "dataset", "optimizer", "preset")  # in conf/train.yaml's defaults list
OPTIONAL_GROUPS = ("sweep", "hparams_search")  # added with +group=option
HYDRA_FLAGS = ("-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info",
               "--shell-completion", "-sc", "-p", "--package", "--resolve", "-cp",
               "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
               "--experimental-rerun")


def _did_you_mean(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_group_choices(args: list[str], config_dir: Path) -> None:
    """Refuse an unknown model/dataset/optimizer/sweep name in one line (with the nearest
    option), and an optional group named without its `+`, before Hydra starts (Hydra's own
    message spans a page)."""
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
        if group not in GROUPS + OPTIONAL_GROUPS or override.is_delete():
            continue
        if group in OPTIONAL_GROUPS and not override.is_add():
            raise ConfigError(f"{arg} is invalid: {group} is not in the defaults list; add it "
                              f"with +{arg}")
        # Files named _* are parts that other configs include, not options.
        options = sorted(p.stem for p in (config_dir / group).glob("[!_]*.yaml"))
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        for value in values:
            if value not in options:
                error = invalid(group, value, options)
                raise ConfigError(f"{error}{_did_you_mean(value, options)}")


def check_output_dirs(args: list[str]) -> None:
    """`hydra.run.dir` / `hydra.sweep.dir` given on the command line must be (or be made) a
    directory: a regular file on the way is refused in one line, not by Hydra's traceback."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir") and value:
            for folder in (Path(value), *Path(value).parents):
                if folder.exists() and not folder.is_dir():
                    raise invalid(key, value, f"{folder} is a file, not a directory")


def _save_hydra_files(cfg: DictConfig, folder: Folder) -> None:
    """What Hydra's run_job writes into .hydra/ (train.yaml sets hydra.output_subdir=null so that
    Hydra does not): written only once the run holds its directory and accepted the config."""
    hydra_cfg = HydraConfig.instance().cfg
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        folder.write_atomic(f".hydra/{name}", OmegaConf.to_yaml(node).encode())


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


def _run(spec: RunSpec, run_dir: Path, job_cfg: DictConfig, new_dir: bool = False
         ) -> float | None:
    """The run, its .hydra/ written once it holds its directory; an OSError (the file system
    said no: read-only, out of inodes, ...) becomes the one-line UserError naming the file."""
    try:
        return run(spec, run_dir, on_start=lambda folder: _save_hydra_files(job_cfg, folder),
                   new_dir=new_dir)
    except OSError as e:
        raise UserError(f"{e.filename or run_dir}: {e.strerror or e}") from e


def _sweep_job(cfg: DictConfig) -> float | None:
    """One job of a sweep: its specification, then its run; a refusal fails this job alone
    (Hydra records it and the sweep goes on), and a bad value leaves its record."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return _run(RunSpec.of(cfg), run_dir, cfg)
    except UserError as e:
        if not isinstance(e, UnsafeRunDir):
            _log_refusal(e)
        print(f"error: {one_line(e)}", file=sys.stderr)
        if isinstance(e, ConfigError):
            _record_refused(cfg, run_dir, e)
        raise


def _single_run(hydra_app: object, cfg: DictConfig) -> None:
    """The run `cfg` (composed with its hydra node) describes: specified before its directory
    exists, then run through Hydra's run_job; a refusal is one line and exit 2, and leaves no
    directory of its own behind."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext

    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    spec = RunSpec.of(task_cfg)
    run_dir = Path(str(cfg.hydra.run.dir))
    made = not run_dir.exists()
    # The folders Hydra will make for it: a refused run leaves them as it found them (none),
    # when nothing else went into them (the run removes what it wrote into its own).
    made_by_hydra = [p for p in (run_dir.absolute(), *run_dir.absolute().parents)
                     if not p.exists()]

    def task(job_cfg: DictConfig) -> float | None:
        try:
            return _run(spec, Path(HydraConfig.get().runtime.output_dir), job_cfg, made)
        except UserError as e:
            if not made and not isinstance(e, UnsafeRunDir):
                _log_refusal(e)  # into the job log of a directory that was there before
            for folder in made_by_hydra:  # nearest first
                try:
                    folder.rmdir()
                except FileNotFoundError:  # the run removed its own
                    continue
                except OSError:  # something else went in: it stays
                    break
            logging.shutdown()
            exit_with(e)

    with open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
    context = HydraContext(config_loader=hydra_app.config_loader, callbacks=Callbacks(cfg))
    job = run_job(task_function=task, config=cfg, job_dir_key="hydra.run.dir",
                  job_subdir_key=None, hydra_context=context)
    _ = job.return_value  # a failure raises here, with its traceback


def _compose(args: list[str], config_dir: Path) -> tuple[object, DictConfig] | None:
    """Hydra and the command's config, composed once: a single run's (run on it), or a sweep's
    (composed here only so that a value Hydra cannot compose is one line; each job composes
    its own); None for Hydra's own commands (--cfg, --help, ...: hydra.main takes them)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path

    multirun = any(a in ("-m", "--multirun") for a in args)
    flags = [a for a in args if a in HYDRA_FLAGS or a.startswith("--")]
    if any(a not in ("-m", "--multirun") for a in flags):
        return None
    hydra_app = Hydra.create_main_hydra2(task_name="train",
                                         config_search_path=create_config_search_path(
                                             str(config_dir)))
    overrides = [a for a in args if a not in flags]
    cfg = hydra_app.compose_config("train", overrides, run_mode=RunMode.MULTIRUN if multirun
                                   else RunMode.RUN, with_log_configuration=not multirun)
    return None if multirun or cfg.hydra.mode == RunMode.MULTIRUN else (hydra_app, cfg)


def main(config_dir: str | Path | None = None) -> None:
    from hydra import version
    from hydra.core.global_hydra import GlobalHydra

    version.setbase("1.3")  # what hydra.main(version_base="1.3") sets, for the single run too
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    register_configs(config_dir)
    args = sys.argv[1:]
    if uses_submitit(args, config_dir):
        quiet_sacct_polls()
    try:
        check_group_choices(args, config_dir)
        check_output_dirs(args)
        single = _compose(args, config_dir)
        if single is not None:
            try:
                _single_run(*single)
            finally:
                GlobalHydra.instance().clear()
            return
    except (ConfigCompositionException, OmegaConfBaseException, OverflowError) as e:
        exit_with(composition_error(e))
    except ConfigError as e:
        exit_with(e)
    GlobalHydra.instance().clear()
    hydra.main(version_base="1.3", config_path=str(config_dir), config_name="train")(_sweep_job)()
