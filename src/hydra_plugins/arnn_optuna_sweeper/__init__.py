"""arnn's Optuna sweeper for Hydra (`hydra/sweeper=optuna`), over Optuna >= 4's ask-and-tell API,
with pruning by run extension. Laid out as Hydra's own sweepers: `config` (the typed settings),
`optuna_sweeper` (the thin plugin class), `_impl` (the logic), `_journal` (the study's storage
in the sweep directory)."""
