"""Datasets: file readers (`files`, `idx`, `cifar`), the registry and `build_task` (`tasks`), the
device-resident task (`task`) and batch sampling (`sampler`)."""

from arnn.data.files import DataError
from arnn.data.sampler import EpochSampler
from arnn.data.task import SequenceTask, pixel_permutation
from arnn.data.tasks import DATASETS, build_task

__all__ = ["DATASETS", "DataError", "EpochSampler", "SequenceTask", "build_task",
           "pixel_permutation"]
