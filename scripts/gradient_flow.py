"""Plot the gradient norm ||dL/dh_t|| against t for models at initialisation and from runs.

    python scripts/gradient_flow.py [--out gradient_flow.png] [--dataset digits]
        [--models lstm,arnn,gated_arnn] [--run RUN_DIR ...] [--set model.sigma_w=0 ...]
"""

from arnn.gradient_flow_cli import main

if __name__ == "__main__":
    main()
