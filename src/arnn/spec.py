"""A run's specification: its configuration composed once, validated once, its memory checked
once, its device and recurrence backend chosen once, and its identity; what `run`, `build` and
`Loop` take, never a bare config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from arnn.errors import ConfigError
from arnn.identity import fingerprint
from arnn.recurrence import resolve_backend
from arnn.resources import check_memory
from arnn.validation import resolve_device, validate


@dataclass(frozen=True)
class RunSpec:
    cfg: DictConfig  # every value resolved, read-only
    identity: dict[str, Any]  # the settings its numbers depend on (arnn.identity)
    device: str  # cpu | cuda
    backend: str | None  # the recurrence backend that computes (None: the model has none)

    @classmethod
    def of(cls, cfg: DictConfig) -> RunSpec:
        """The specification of `cfg` (a composed config); ConfigError for the first value
        that cannot be used, before anything is built or written."""
        validate(cfg)
        device = resolve_device(cfg.device)
        check_memory(cfg, device)
        backend = cfg.model.backend
        if backend is not None:
            try:
                backend = resolve_backend(backend, device)
            except ValueError as e:
                raise ConfigError(f"model.{e}") from None
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.set_readonly(resolved, True)
        return cls(resolved, fingerprint(resolved), device, backend)

    @property
    def train(self) -> DictConfig:
        return self.cfg.train
