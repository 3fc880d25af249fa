"""Datasets: file readers (`files`), device-resident tasks (`tasks`) and batch sampling."""

from arnn.data.files import DataError
from arnn.data.sampler import EpochSampler
from arnn.data.tasks import SequenceTask, build_task, pixel_permutation

__all__ = ["DataError", "EpochSampler", "SequenceTask", "build_task", "pixel_permutation"]
