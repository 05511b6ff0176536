"""wideflat.data: dataset readers, committee datasets, a registry, and on-device loading.

Readers validate every file when constructed and raise :class:`DatasetError` naming the file
and the defect; nothing touches the network unless ``download=True``. The package exports the
readers, the registry and the loader; the building blocks live in their modules:
:mod:`~wideflat.data.augment` (crops, flips, cutout), :mod:`~wideflat.data.checksums` (MD5
tables), :mod:`~wideflat.data.cifar`, :mod:`~wideflat.data.fashion_mnist`,
:mod:`~wideflat.data.tiny_imagenet` (download URLs, raw-file readers) and
:mod:`~wideflat.data.committee` (``median_binarize``).
"""

from .._deprecated import moved
from .augment import Augment, channel_stats, normalize
from .base import DatasetError, DatasetInfo, ImageSet
from .cifar import load_cifar10, load_cifar100
from .committee import CommitteeData, fashion_committee, load_committee_data, teacher_committee
from .fashion_mnist import load_fashion_mnist
from .loader import DeviceLoader
from .registry import dataset_info, list_datasets, load_dataset
from .streams import BatchStream, replica_streams
from .tiny_imagenet import load_tiny_imagenet

__all__ = [
    # readers and what they return
    "CommitteeData",
    "DatasetError",
    "DatasetInfo",
    "ImageSet",
    "fashion_committee",
    "load_cifar10",
    "load_cifar100",
    "load_committee_data",
    "load_fashion_mnist",
    "load_tiny_imagenet",
    "teacher_committee",
    # registry
    "dataset_info",
    "list_datasets",
    "load_dataset",
    # loading
    "Augment",
    "BatchStream",
    "DeviceLoader",
    "channel_stats",
    "normalize",
    "replica_streams",
]

# Exported here before the surface was trimmed: still readable for one release, with a warning.
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(
            (
                "apply_crop", "apply_cutout", "apply_flip", "cutout", "random_crop",
                "random_flip", "sample_crop_offsets", "sample_cutout_centers", "sample_flips",
            ),
            "wideflat.data.augment",
        ),
        **dict.fromkeys(
            (
                "CIFAR10_MD5", "CIFAR100_MD5", "FASHION_MNIST_MD5", "FASHION_MNIST_RAW_MD5",
                "TINY_IMAGENET_MD5", "md5_file", "verify_files",
            ),
            "wideflat.data.checksums",
        ),
        "CIFAR10_URL": "wideflat.data.cifar",
        "CIFAR100_URL": "wideflat.data.cifar",
        "FASHION_MNIST_CLASSES": "wideflat.data.fashion_mnist",
        "FASHION_MNIST_URL": "wideflat.data.fashion_mnist",
        "locate_fashion_mnist": "wideflat.data.fashion_mnist",
        "read_idx": "wideflat.data.fashion_mnist",
        "TINY_IMAGENET_URL": "wideflat.data.tiny_imagenet",
        "median_binarize": "wideflat.data.committee",
    },
)  # fmt: skip
