"""wideflat.data: dataset readers, committee datasets, on-device augmentation and loading.

Readers validate every file when constructed and raise :class:`DatasetError` naming the file
and the defect; nothing touches the network unless ``download=True``.
"""

from .augment import (
    Augment,
    apply_crop,
    apply_cutout,
    apply_flip,
    channel_stats,
    cutout,
    normalize,
    random_crop,
    random_flip,
    sample_crop_offsets,
    sample_cutout_centers,
    sample_flips,
)
from .base import DatasetError, DatasetInfo, ImageSet
from .checksums import (
    CIFAR10_MD5,
    CIFAR100_MD5,
    FASHION_MNIST_MD5,
    FASHION_MNIST_RAW_MD5,
    TINY_IMAGENET_MD5,
    md5_file,
    verify_files,
)
from .cifar import CIFAR10_URL, CIFAR100_URL, load_cifar10, load_cifar100
from .committee import (
    CommitteeData,
    fashion_committee,
    load_committee_data,
    median_binarize,
    teacher_committee,
)
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_URL,
    load_fashion_mnist,
    locate_fashion_mnist,
    read_idx,
)
from .loader import DeviceLoader
from .registry import dataset_info, list_datasets, load_dataset
from .streams import BatchStream, replica_streams
from .tiny_imagenet import TINY_IMAGENET_URL, load_tiny_imagenet

__all__ = [
    "CIFAR10_MD5",
    "CIFAR100_MD5",
    "CIFAR10_URL",
    "CIFAR100_URL",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_RAW_MD5",
    "FASHION_MNIST_URL",
    "TINY_IMAGENET_MD5",
    "TINY_IMAGENET_URL",
    "Augment",
    "BatchStream",
    "CommitteeData",
    "DatasetError",
    "DatasetInfo",
    "DeviceLoader",
    "ImageSet",
    "apply_crop",
    "apply_cutout",
    "apply_flip",
    "channel_stats",
    "cutout",
    "dataset_info",
    "fashion_committee",
    "list_datasets",
    "load_cifar10",
    "load_cifar100",
    "load_committee_data",
    "load_dataset",
    "load_fashion_mnist",
    "load_tiny_imagenet",
    "locate_fashion_mnist",
    "md5_file",
    "median_binarize",
    "normalize",
    "random_crop",
    "random_flip",
    "read_idx",
    "replica_streams",
    "sample_crop_offsets",
    "sample_cutout_centers",
    "sample_flips",
    "teacher_committee",
    "verify_files",
]
