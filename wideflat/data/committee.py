"""Datasets for the committee-machine study (paper §5, appendix B.1).

* :func:`fashion_committee`: the reduced Fashion-MNIST Dress-vs-Coat set, binarized to ±1.
* :func:`teacher_committee`: random ±1 inputs labelled by a random teacher committee machine
  (needs no files).
* :func:`load_committee_data`: picks one of the two by name (``"auto"`` falls back to the
  teacher when Fashion-MNIST is not installed, and records why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _validate as check
from ..models.committee import committee_output
from .base import DatasetError
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    _search_folders,
    load_fashion_mnist,
    locate_fashion_mnist,
)

__all__ = [
    "CommitteeData",
    "fashion_committee",
    "load_committee_data",
    "median_binarize",
    "teacher_committee",
]

# Pixels per image: the median of 784 values is the mean of the 392nd and 393rd smallest.
_MID = (391, 392)


@dataclass(frozen=True, eq=False)
class CommitteeData:
    """A binary ±1 dataset for a committee machine (inputs and labels in {−1, +1}).

    Attributes:
        X_train: M×N float32 tensor of ±1 inputs.
        y_train: M float32 tensor of ±1 labels.
        X_test: M'×N float32 tensor of ±1 inputs.
        y_test: M' float32 tensor of ±1 labels.
        name: ``"fashion-dress-coat"`` or ``"teacher"``.
        seed: the seed the training patterns (and, for the teacher, everything) were drawn from.
        metadata: provenance (source, label map, filter, indices drawn, teacher weights, ...).

    Example:
        >>> d = teacher_committee(n_train=20, n_test=10, n_features=15, k=3, seed=0)
        >>> d.X_train.shape, d.n_features, sorted(d.y_train.unique().tolist())
        (torch.Size([20, 15]), 15, [-1.0, 1.0])
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    seed: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for xn, yn in (("X_train", "y_train"), ("X_test", "y_test")):
            x, y = getattr(self, xn), getattr(self, yn)
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"CommitteeData {self.name!r}: {xn} {tuple(x.shape)} and {yn} "
                    f"{tuple(y.shape)} must be M×N and M"
                )
            for t, tn in ((x, xn), (y, yn)):
                if not bool(((t == 1) | (t == -1)).all()):
                    raise ValueError(f"CommitteeData {self.name!r}: {tn} has values other than ±1")
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ValueError(
                f"CommitteeData {self.name!r}: X_train has {self.X_train.shape[1]} features, "
                f"X_test {self.X_test.shape[1]}"
            )

    @property
    def n_features(self) -> int:
        """N, the input size."""
        return int(self.X_train.shape[1])

    @property
    def n_train(self) -> int:
        """M, the number of training patterns."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """The number of test patterns."""
        return int(self.X_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"CommitteeData(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"n_features={self.n_features}, seed={self.seed})"
        )


def median_binarize(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binarize each 28×28 uint8 image at its own median.

    The median of the 784 pixels (scaled to [0, 1]) is the mean of the two middle values, as
    numpy and Julia define it. A pixel strictly above the median becomes +1, a pixel equal to
    or below it −1. The comparison is made exactly on integers: ``2·p > a + b``, where ``a, b``
    are the two middle uint8 values.

    Args:
        images: uint8 tensor N×28×28 (or N×784).

    Returns:
        ``(x, median)``: float32 ±1 tensor N×784 and float64 medians in [0, 1], shape (N,).

    Example:
        >>> import torch
        >>> img = torch.arange(784, dtype=torch.int64).remainder(256).to(torch.uint8)
        >>> x, med = median_binarize(img.view(1, 28, 28))
        >>> int((x == 1).sum()), round(float(med), 4)
        (390, 0.4902)
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(
            f"median_binarize needs a uint8 tensor, got {getattr(images, 'dtype', images)}"
        )
    flat = images.reshape(images.shape[0], -1)
    if flat.shape[1] != 784:
        raise ValueError(f"median_binarize needs 784 pixels per image, got {flat.shape[1]}")
    srt = flat.sort(dim=1).values.to(torch.int32)
    mid2 = srt[:, _MID[0]] + srt[:, _MID[1]]  # 2 × median, in pixel units
    x = torch.where(2 * flat.to(torch.int32) > mid2[:, None], 1.0, -1.0).to(torch.float32)
    return x, mid2.to(torch.float64) / 510.0


def fashion_committee(
    root: str | os.PathLike | None = None,
    *,
    n_train: int = 500,
    seed: int = 0,
    classes: tuple[int, int] = (3, 4),
    median_range: tuple[float, float] = (0.25, 0.75),
    balanced: bool = False,
    search: bool | None = None,
) -> CommitteeData:
    """The reduced Fashion-MNIST set of the paper's appendix B.1 (Dress vs Coat).

    Recipe: keep the two classes; scale pixels to [0, 1]; keep only images whose median lies in
    ``median_range`` (inclusive), in both splits; binarize every kept image to ±1 at its own
    median (:func:`median_binarize`: > median → +1, else −1); draw ``n_train`` training
    patterns from the kept training images with a ``torch.Generator`` seeded by ``seed``. The
    test set is every kept test image of the two classes. Labels: ``classes[0]`` (Dress) → +1,
    ``classes[1]`` (Coat) → −1.

    Balance: the paper states only "500 patterns", so by default (``balanced=False``) they are
    drawn uniformly from the kept pool and the class ratio follows the pool, which the median
    filter makes very unequal (on the official files: 344 Dress vs 3583 Coat kept in train,
    74 vs 603 in test). ``balanced=True`` draws ``n_train // 2`` of each class instead.

    Args:
        root: folder for :func:`~wideflat.data.load_fashion_mnist`: a given root is the only
            folder read (an error if it lacks the files); without one, the reader's search.
        n_train: training patterns to draw (even when ``balanced``).
        seed: seed of the draw.
        classes: the two Fashion-MNIST labels, first → +1.
        median_range: inclusive bounds on the per-image median (pixels in [0, 1]).
        balanced: draw the same number from each class.
        search: passed to the reader (``True`` searches past a given root).

    Returns:
        A :class:`CommitteeData` with N = 784; ``metadata["source"]`` is the folder read,
        ``metadata["train_indices"]`` and ``metadata["test_indices"]`` index the official
        splits.

    Raises:
        DatasetError: if the files are missing or malformed, or the filtered pool is too small.

    Example:
        >>> d = fashion_committee(seed=0)  # doctest: +SKIP
        >>> d.n_train, d.n_features  # doctest: +SKIP
        (500, 784)
    """
    check.positive_int("n_train", n_train)
    if balanced and n_train % 2:
        raise ValueError(f"Invalid n_train: {n_train} must be even when balanced=True")
    if len(classes) != 2 or classes[0] == classes[1] or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"Invalid classes: {classes!r} (need two distinct labels in 0..9)")
    lo, hi = median_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"Invalid median_range: {median_range!r} (need 0 <= lo <= hi <= 1)")

    gen = torch.Generator().manual_seed(int(seed))
    parts = {}
    pools = {}
    for split in ("train", "test"):
        data = load_fashion_mnist(root, split=split, search=search)
        keep_class = (data.labels == classes[0]) | (data.labels == classes[1])
        idx = torch.nonzero(keep_class).flatten()
        x, med = median_binarize(data.images[idx])
        keep = (med >= lo) & (med <= hi)
        idx, x = idx[keep], x[keep]
        y = torch.where(data.labels[idx] == classes[0], 1.0, -1.0).to(torch.float32)
        parts[split] = (idx, x, y)
        pools[split] = {
            FASHION_MNIST_CLASSES[c]: int((data.labels[idx] == c).sum()) for c in classes
        }
        source = data.source

    idx, x, y = parts["train"]
    if balanced:
        chosen = []
        for label in (1.0, -1.0):
            pos = torch.nonzero(y == label).flatten()
            if pos.numel() < n_train // 2:
                raise DatasetError(
                    f"{source}: only {pos.numel()} filtered training images of class "
                    f"{classes[0] if label > 0 else classes[1]}, {n_train // 2} requested"
                )
            chosen.append(pos[torch.randperm(pos.numel(), generator=gen)[: n_train // 2]])
        sel = torch.cat(chosen).sort().values
    else:
        if idx.numel() < n_train:
            raise DatasetError(
                f"{source}: only {idx.numel()} filtered training images, {n_train} requested"
            )
        sel = torch.randperm(idx.numel(), generator=gen)[:n_train].sort().values
    test_idx, x_test, y_test = parts["test"]
    names = (FASHION_MNIST_CLASSES[classes[0]], FASHION_MNIST_CLASSES[classes[1]])
    meta = {
        "source": source,
        "classes": classes,
        "label_map": {1: names[0], -1: names[1]},
        "median_range": (lo, hi),
        "threshold": "pixel > own median (mean of the two middle values) -> +1, else -1",
        "balanced": balanced,
        "filtered_pool": pools,
        "train_indices": idx[sel],
        "test_indices": test_idx,
    }
    return CommitteeData(
        X_train=x[sel].contiguous(),
        y_train=y[sel].contiguous(),
        X_test=x_test,
        y_test=y_test,
        name="fashion-dress-coat",
        seed=int(seed),
        metadata=meta,
    )


def teacher_committee(
    n_train: int = 500,
    n_test: int = 2000,
    *,
    n_features: int = 784,
    k: int = 9,
    seed: int = 0,
) -> CommitteeData:
    """Random ±1 inputs labelled by a random teacher committee machine; needs no files.

    The teacher has K hidden units with i.i.d. standard normal weights (float64) and fixed
    second-layer weights 1: σ(w, x) = sign(Σ_k sign(w_k · x)), K odd so the vote never ties
    (sign(0) = +1 for the measure-zero case w_k · x = 0). Inputs are uniform on {−1, +1}^N.
    Everything is drawn from one ``torch.Generator`` seeded by ``seed``: teacher, then
    training inputs, then test inputs.

    Args:
        n_train: training patterns.
        n_test: test patterns.
        n_features: N.
        k: teacher hidden units (odd).
        seed: seed.

    Returns:
        A :class:`CommitteeData`; ``metadata["teacher"]`` holds the K×N teacher weights.

    Example:
        >>> d = teacher_committee(n_train=8, n_test=4, n_features=11, k=3, seed=1)
        >>> d.y_train.abs().eq(1).all().item(), d.metadata["k"]
        (True, 3)
    """
    for name, v in (("n_train", n_train), ("n_test", n_test), ("n_features", n_features), ("k", k)):
        check.positive_int(name, v)
    if k % 2 == 0:
        raise ValueError(f"Invalid k: {k} (the teacher needs an odd number of hidden units)")
    gen = torch.Generator().manual_seed(int(seed))
    teacher = torch.randn(k, n_features, generator=gen, dtype=torch.float64)

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 2, (m, n_features), generator=gen).to(torch.float32).mul_(2).sub_(1)
        return x, committee_output(teacher, x.to(teacher.dtype)).to(torch.float32)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return CommitteeData(
        X_train=x_train,
        y_train=y_train,
        X_test=x_test,
        y_test=y_test,
        name="teacher",
        seed=int(seed),
        metadata={"teacher": teacher, "k": k, "source": "synthetic teacher committee machine"},
    )


def load_committee_data(
    source: str = "auto",
    *,
    root: str | os.PathLike | None = None,
    n_train: int = 500,
    seed: int = 0,
    **kwargs: Any,
) -> CommitteeData:
    """The committee-study dataset by name: ``"fashion"``, ``"teacher"`` or ``"auto"``.

    ``"auto"`` uses the reduced Fashion-MNIST set when both splits are found (see
    :func:`~wideflat.data.locate_fashion_mnist`: only in ``root`` when it is given), else the
    teacher set, and records the reason, naming the folders looked in, in
    ``metadata["fallback"]``. Extra keyword arguments go to the chosen builder.

    Example:
        >>> load_committee_data("teacher", n_train=10, n_test=5, n_features=7, k=3).name
        'teacher'
    """
    if source not in ("auto", "fashion", "teacher"):
        raise ValueError(f"Invalid committee data source: {source!r} (use fashion, teacher, auto)")
    if source == "auto":
        search = kwargs.get("search")
        have = all(
            locate_fashion_mnist(root, split=s, search=search) is not None
            for s in ("train", "test")
        )
        if not have:
            folders = _search_folders(root, search)
            kwargs.pop("search", None)
            data = teacher_committee(n_train, seed=seed, **kwargs)
            data.metadata["fallback"] = (
                f"Fashion-MNIST not found in {', '.join(map(str, folders))}; "
                "using the teacher dataset"
            )
            return data
        source = "fashion"
    if source == "fashion":
        return fashion_committee(root, n_train=n_train, seed=seed, **kwargs)
    return teacher_committee(n_train, seed=seed, **kwargs)
