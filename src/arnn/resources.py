"""What a run needs of its machine, estimated before anything is allocated: memory."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from arnn.errors import invalid


def available_memory(device: str) -> int:
    """Bytes the run's device has free: the GPU's, or the machine's (MemAvailable)."""
    import torch

    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024


def memory_needed(cfg: DictConfig) -> tuple[int, str]:
    """About how many bytes a run of `cfg` allocates (fp32), and the setting that drives it:
    the weights (at most an LSTM's 4n(n + m) and the head) with their gradients, optimizer state
    and best copy; a training batch's sequences and the states kept for backpropagation through
    time; an evaluation batch's. An upper estimate, made before anything is allocated."""
    n, m, steps = cfg.model.hidden_size, cfg.dataset.input_size, cfg.dataset.seq_len
    weights = 4 * 6 * 4 * n * (n + m + cfg.dataset.num_classes)
    batch = 4 * steps * (m + 12 * n) * cfg.train.batch_size
    evaluation = 4 * steps * (m + 4 * n) * cfg.train.eval_batch_size
    driver = "model.hidden_size" if weights >= batch + evaluation else (
        "dataset.seq_len" if steps * (m + n) > max(cfg.train.batch_size,
                                                   cfg.train.eval_batch_size) else
        "train.batch_size")
    return weights + batch + evaluation, driver


def check_memory(cfg: DictConfig, device: str) -> None:
    """Refuse, before anything is allocated, a run that cannot fit in `device`'s memory."""
    needed, driver = memory_needed(cfg)
    available = available_memory(device)
    if needed > available:
        raise invalid(driver, OmegaConf.select(cfg, driver),
                      f"with model.hidden_size={cfg.model.hidden_size}, dataset.seq_len="
                      f"{cfg.dataset.seq_len}, dataset.input_size={cfg.dataset.input_size} and "
                      f"train.batch_size={cfg.train.batch_size} this run needs about "
                      f"{_size(needed)} of memory; {_size(available)} is available")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.1f} {unit}"
        count /= 1000
    return ""
