"""Every dataset the suite uses, held in memory as uint8 tensors, with on-device augmentation.

datasets.py  what the suite knows of each dataset (classes, size, constants)
pixels.py    a split in memory, normalisation and the train augmentation
loaders.py   reading each dataset's files; the pipeline's `prepare` step
large.py     MAD's 256x256 sets (ImageNet, Places365, Food-101)
"""

from dfkd.data.datasets import DATASETS, DatasetInfo, dataset_info
from dfkd.data.loaders import SPLITS, load_split, prepare
from dfkd.data.pixels import (
    ImageTensors,
    augment,
    denormalize,
    normalize,
    normalized_bounds,
    random_crop_flip,
    training_batch,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "ImageTensors",
    "augment",
    "dataset_info",
    "denormalize",
    "load_split",
    "normalize",
    "normalized_bounds",
    "prepare",
    "random_crop_flip",
    "training_batch",
]
