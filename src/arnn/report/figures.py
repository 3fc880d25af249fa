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


PANELS_PER_ROW = 3
MARKERS = "osD^vP*Xh<>p"  # one per seed


def swept(jobs: list[Job]) -> list[str]:
    """The settings swept: those that take more than one value among the jobs of one task and
    model (a setting that differs only between models, each keeping its preset's, was not
    swept), in the order the jobs name them; never the seed, the model or the dataset."""
    by_task: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        by_task.setdefault((job.dataset, job.model), []).append(job)
    varied = set().union(*(varying(group) for group in by_task.values())) if by_task else set()
    return [k for k in dict.fromkeys(k for j in jobs for k in j.settings)
            if k in varied and k not in ("model", "dataset", "seed")]


def sensitivity_figure(jobs: list[Job], metric: str) -> bytes:
    """`metric` against each swept setting, one panel each, wrapped onto rows: every job a dot
    (its seed's marker), a line through each task's best job per value (its colour); with no
    setting swept, one panel of every task's jobs by seed (results.png)."""
    plt = _pyplot()
    done = finished(jobs)[:MAX_POINTS]
    keys = swept(done)
    panels = keys[:MAX_PANELS] or [None]
    rows = -(-len(panels) // PANELS_PER_ROW)
    cols = min(len(panels), PANELS_PER_ROW)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    tasks = sorted({(j.dataset, j.model) for j in done})[:10]
    seeds = sorted({j.settings.get("seed") for j in done}, key=str)[:len(MARKERS)]
    for ax, key in zip(axes.ravel(), panels, strict=False):
        if key is None:
            _by_task(ax, done, tasks, seeds, metric)
        else:
            _against(ax, done, tasks, seeds, key, metric)
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if len(keys) > MAX_PANELS:
        fig.suptitle(f"also swept: {', '.join(keys[MAX_PANELS:])}"[:120], fontsize=7)
    handles = [plt.Line2D([], [], color=f"C{i}", label="/".join(t)[:40])
               for i, t in enumerate(tasks)]
    if len(seeds) > 1:
        handles += [plt.Line2D([], [], color="gray", marker=MARKERS[i], linestyle="",
                               label=f"seed {s}") for i, s in enumerate(seeds)]
    if handles:
        fig.legend(handles=handles, fontsize=7, loc="lower center",
                   ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) // 6), 1, 1))
    else:
        fig.tight_layout()
    return _png(fig)


def _marker(job: Job, seeds: list[Any]) -> str:
    seed = job.settings.get("seed")
    return MARKERS[seeds.index(seed)] if seed in seeds else "."


def _against(ax: Any, done: list[Job], tasks: list[tuple[str, str]], seeds: list[Any],
             key: str, metric: str) -> None:
    """One swept setting's panel."""
    categorical = any(isinstance(j.settings.get(key), str | bool) for j in done)
    values = sorted({j.settings.get(key) for j in done if j.settings.get(key) is not None},
                    key=str if categorical else float)
    position = {v: i for i, v in enumerate(values)}
    for i, task in enumerate(tasks):
        pts = [j for j in done if (j.dataset, j.model) == task and j.settings.get(key) in position]
        for job in pts:
            x = position[job.settings[key]] if categorical else job.settings[key]
            ax.scatter([x], [job.metric(metric) or 0.0], s=14, alpha=0.6, color=f"C{i}",
                       marker=_marker(job, seeds))
        shown = [v for v in values if any(j.settings[key] == v for j in pts)]
        top = [max((j.metric(metric) or 0.0) for j in pts if j.settings[key] == v) for v in shown]
        ax.plot([position[v] for v in shown] if categorical else shown, top, color=f"C{i}")
    if categorical:
        ax.set_xticks(range(len(values)), [str(v)[:12] for v in values])
    elif key in ("eps", "gamma", "lr") and values and min(values) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(key[:40])


def _by_task(ax: Any, done: list[Job], tasks: list[tuple[str, str]], seeds: list[Any],
             metric: str) -> None:
    """No setting swept: each task's jobs, one dot per seed."""
    for i, task in enumerate(tasks):
        for job in (j for j in done if (j.dataset, j.model) == task):
            ax.scatter([i], [job.metric(metric) or 0.0], s=18, alpha=0.7, color=f"C{i}",
                       marker=_marker(job, seeds))
    ax.set_xticks(range(len(tasks)), ["/".join(t)[:20] for t in tasks], rotation=20,
                  fontsize=7)
    ax.set_xlabel("task (no setting swept)")


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
