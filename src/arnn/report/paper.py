"""The paper's numbers (Tables 1 and 2: test accuracy) that the collector sets beside ours."""

PAPER = {
    ("mnist", "lstm"): 0.973, ("pmnist", "lstm"): 0.926,
    ("mnist", "arnn"): 0.980, ("pmnist", "arnn"): 0.958,
    ("mnist", "gated_arnn"): 0.988, ("pmnist", "gated_arnn"): 0.931,
    ("cifar10", "lstm"): 0.597, ("noise_cifar10", "lstm"): 0.116,
    ("cifar10", "ablation"): 0.546, ("noise_cifar10", "ablation"): 0.462,
    ("cifar10", "arnn"): 0.587, ("noise_cifar10", "arnn"): 0.483,
    ("cifar10", "gated_arnn"): 0.622, ("noise_cifar10", "gated_arnn"): 0.547,
}
# (title, datasets, models) in the paper's row and column order
PAPER_TABLES = [
    ("Table 1", ("mnist", "pmnist"), ("lstm", "arnn", "gated_arnn")),
    ("Table 2", ("cifar10", "noise_cifar10"), ("lstm", "ablation", "arnn", "gated_arnn")),
]
