"""arnn's successive-halving sweeper for Hydra (`hydra/sweeper=halving`), laid out as Hydra's own
sweepers: `config` (the typed settings, stored in Hydra's ConfigStore), `halving_sweeper` (the
thin plugin class Hydra instantiates) and `_impl` (the logic)."""
