"""The collector's figures: the choosing metric against every swept setting (results.png), and
accuracy against the sequence length T over seeds (results_length.png). Their size is bounded
whatever the sweep holds: at most MAX_PANELS panels, each at most MAX_POINTS dots."""

from __future__ import annotations

import io
from typing import Any

from arnn.points import score
from arnn.report.jobs import Job, finished
from arnn.report.tables import varying

MAX_PANELS = 8  # swept settings drawn; the others are named in the figure's title
MAX_POINTS = 20_000  # dots per panel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    _pyplot().close(fig)
    return buffer.getvalue()


def sensitivity_figure(jobs: list[Job], metric: str) -> bytes:
    """`metric` against each setting that varies, one panel each; every job is a dot, the line
    joins the best job per value (results.png)."""
    plt = _pyplot()
    done = finished(jobs)[:MAX_POINTS]
    swept = [k for k in dict.fromkeys(k for j in done for k in j.settings)
             if k in varying(done) and k not in ("model", "dataset")]
    panels = swept[:MAX_PANELS] or ["lr"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    tasks = sorted({(j.dataset, j.model) for j in done})[:10]
    for ax, key in zip(axes[0], panels, strict=True):
        categorical = any(isinstance(j.settings.get(key), str | bool) for j in done)
        for i, task in enumerate(tasks):
            pts = [(j.settings.get(key), j.metric(metric) or 0.0) for j in done
                   if (j.dataset, j.model) == task and j.settings.get(key) is not None]
            if not pts:
                continue
            values = sorted({p[0] for p in pts}, key=str if categorical else float)
            pos = {v: k for k, v in enumerate(values)} if categorical else None
            xs = [pos[p[0]] if categorical else p[0] for p in pts]
            ax.scatter(xs, [p[1] for p in pts], s=12, alpha=0.5, color=f"C{i}")
            top = [max(a for v, a in pts if v == value) for value in values]
            ax.plot([pos[v] for v in values] if categorical else values, top, color=f"C{i}",
                    label="/".join(task)[:40])
            if categorical:
                ax.set_xticks(range(len(values)), [str(v)[:12] for v in values])
        if not categorical and key in ("eps", "gamma", "lr") and all(
            (j.settings.get(key) or 0) > 0 for j in done
        ):
            ax.set_xscale("log")
        ax.set_xlabel(key[:40])
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    if len(swept) > MAX_PANELS:
        fig.suptitle(f"also swept: {', '.join(swept[MAX_PANELS:])}"[:120], fontsize=7)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def length_groups(jobs: list[Job]) -> dict[tuple[str, str], dict[int, list[Job]]]:
    """(dataset, model and settings) -> {T: [its jobs, one per seed]}, for jobs that differ in
    dataset.seq_len; every other setting that varies (the model's, lr) tells lines apart."""
    ended = [j for j in finished(jobs) if isinstance(j.settings.get("seq_len"), int)]
    others = varying(ended) - {"seq_len", "model", "dataset"}
    groups: dict[tuple[str, str], dict[int, list[Job]]] = {}
    for job in ended:
        text = ", ".join(f"{k}={v}" for k, v in job.settings.items() if k in others)
        key = (job.dataset, f"{job.model} ({text})" if text else job.model)
        groups.setdefault(key, {}).setdefault(job.settings["seq_len"], []).append(job)
    return groups if len({t for g in groups.values() for t in g}) > 1 else {}


def length_figure(groups: dict[tuple[str, str], dict[int, list[Job]]], metric: str,
                  chance: float = 0.1) -> bytes:
    """Accuracy against T, one line per model with its spread over seeds, chance marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = [model.split(" (")[0] for _, model in groups]
    short = len(set(names)) == len(names)  # one line per model: its name says enough
    for i, ((dataset, model), by_length) in enumerate(sorted(groups.items())[:10]):
        lengths = sorted(by_length)
        scores = [score((j.status, j.metric(metric)) for j in by_length[t]) for t in lengths]
        for t, s in zip(lengths, scores, strict=True):
            ax.scatter([t] * s.counted, s.values, s=10, alpha=0.4, color=f"C{i}")
        label = model.split(" (")[0] if short else f"{dataset} {model}"
        ax.errorbar(lengths, [s.mean or 0.0 for s in scores], yerr=[s.std for s in scores],
                    color=f"C{i}", capsize=3, marker="o", label=label[:60])
    ax.axhline(chance, color="gray", linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("sequence length T (steps)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
