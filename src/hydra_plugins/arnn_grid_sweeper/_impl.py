"""Hydra's basic sweeper (every combination of the grid, in batches through the launcher) with
the sweep directory owned for the sweep (arnn.sweeps): a second sweep started on it is refused
in one line and the first goes on, and multirun.yaml is written through the directory held."""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from arnn.storage import shown
from arnn.sweeps import owned, save_multirun


class GridSweeperImpl(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(
            parser.parse_overrides([*self._parse_config(), *arguments]), self.max_batch_size)
        returns, initial_job_idx = [], 0
        with owned(self.config.hydra.sweep.dir) as folder:
            save_multirun(folder, self.config)
            while not self.is_done():
                batch = self.get_job_batch()
                self.validate_batch_is_legal(batch)
                results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
                for result in results:
                    _ = result.return_value  # a failed job raises here, after its whole batch
                initial_job_idx += len(batch)
                returns.append(results)
        print(f"[sweep] {initial_job_idx} job(s) ran; results in {shown(folder.path)} "
              f"(tables: arnn-collect {shown(folder.path)})", flush=True)
        return returns
