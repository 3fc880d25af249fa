"""arnn's grid sweeper for Hydra (`hydra/sweeper=grid`, the default of conf/train.yaml): Hydra's
basic sweeper that owns its sweep directory (arnn.sweeps). Laid out as Hydra's own sweepers:
`config` (the typed settings), `grid_sweeper` (the thin plugin class), `_impl` (the logic)."""
