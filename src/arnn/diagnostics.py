"""What an evaluation records besides the accuracies: the recurrent matrix's spectrum
(TensorBoard scalars: its largest real part and modulus, rho and log10 rho^T) and, with
train.gradient_flow, a figure of ||dL/dh_t|| over t."""

from __future__ import annotations

from collections.abc import Callable

from arnn.data import SequenceTask
from arnn.dynamics import gradient_flow, plot_gradient_flow
from arnn.models import SequenceClassifier
from arnn.monitor import Monitor
from arnn.spec import RunSpec
from arnn.stability import recurrent_spectrum

GRADIENT_FLOW_BATCH = 32  # examples of the test split the figure averages over


def diagnostics(spec: RunSpec, model: SequenceClassifier, task: SequenceTask
                ) -> Callable[[Monitor, int], None]:
    """What the loop calls at each evaluation (`Loop(diagnostics=...)`)."""
    def at_evaluation(monitor: Monitor, step: int) -> None:
        # A host eigensolver (tens of ms at n=256): small beside the evaluation itself.
        monitor.scalars(step, recurrent_spectrum(model.cell, task.seq_len))
        if spec.train.gradient_flow:
            x, y = next(task.eval_batches(GRADIENT_FLOW_BATCH))
            figure = plot_gradient_flow({spec.cfg.model.name: gradient_flow(model, x, y)},
                                        f"step {step}")
            monitor.writer.add_figure("gradient_flow", figure, step)

    return at_evaluation
