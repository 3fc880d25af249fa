"""arnn: AntisymmetricRNN (Chang et al., ICLR 2019) experiments, configured with Hydra.

Entry points: `python train.py` / `arnn-train` (arnn.cli), `arnn-collect` (arnn.collect).
"""
