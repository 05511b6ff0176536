"""Presets: the paper's Table 1 recipes (appendix C) and a small Fashion-MNIST one.

A preset is a base :class:`~wideflat.experiments.config.TrainConfig` (the SGD baseline's
settings) plus per-method overrides, as in the paper: "for eSGD and rSGD we use the same
settings as for SGD unless otherwise stated". :func:`preset_config` resolves one method.

Conventions and deviations from appendix C, stated once:

* Epochs are data epochs (see :mod:`~wideflat.experiments.config`). The paper's eSGD runs
  ("60 epochs, drops at 30 and 45") count *outer* epochs; 60 outer epochs × L = 5 is the
  baseline's 300 data epochs, so the milestones become 150 and 225 data epochs. Where the
  paper's L × outer epochs differs slightly from the baseline (ResNet-110: 32 × 5 = 160 vs
  164; ResNet-50: 50 × 5 = 250 vs 270) the preset keeps the baseline's data epochs, i.e.
  an exactly equal budget, and scales the milestones by L.
* eSGD's γ grows by a factor of 10 over the run (the paper's stated criterion for γ1)
  instead of the γ1 values appendix C lists: those count per epoch of the paper's own
  budget, and the factor-over-the-run form keeps the growth right when ``--epochs``
  changes. To run a listed γ1 as the paper counts it, give ``gamma="exp:G0:G1@epoch"``
  (units: :mod:`~wideflat.experiments.schedules`). γ0 is the paper's where given, else
  automatic. rSGD uses the automatic γ0 and a growth of 10⁴ (paper §4), with y = 3 and
  K = 10 unless stated. The PyramidNet row's cosine γ schedule rises from 0 to γ_max: the
  paper's literal formula decreases and turns negative (see ``CosineGamma``).
* AutoAugment with the CIFAR-10 policy (PyramidNet, EfficientNet rows) runs through
  torchvision, which those presets then need (``pip install 'wideflat[vision]'``).
  Fast-AutoAugment (Tiny ImageNet rows) uses the published ImageNet policy
  (``autoaugment="fast-imagenet"``: kakaobrain/fast-autoaugment's ``fa_resnet50_rimagenet``,
  re-implemented in pure torch, see :mod:`~wideflat.data.fast_autoaugment`), run
  on the 64-pixel image before the crop and flip (the source runs it first too).
  PyramidNet's rSGD switches K from 10 to 3 at epoch 220
  (``coupling_every_after``); ResNet-110's SGD warm-up is the paper's step (0.01 for one
  epoch, then 0.1; ``warmup_kind="step"``), its rSGD and eSGD runs have none, and its eSGD
  uses Nesterov momentum in both loops (paper: "Nesterov ... in both loops").
* The reproduction presets (every Table 1 row) train in float32 (``amp=False``): the paper
  does not use mixed precision. bf16 autocast on CUDA stays available with ``--set amp=true``.
* EfficientNet-B0 (Tan & Le's settings, as the paper says): RMSprop with decay 0.9,
  momentum 0.9 and ε = 10⁻³ (``optimizer="rmsprop"``; torch adds ε outside the square root,
  TensorFlow inside), and 224-pixel images. The paper resizes 32 → 224, zero-pads by 32 and
  crops 224, i.e. shifts of up to 64 of 224 pixels. Here the crop runs on the 32-pixel image
  with the padding that matches, 32 · 32 / 224 ≈ 4.6 → 5 pixels (shifts up to 10 of 32,
  70 of 224 after the resize), and the model upsamples every input to 224 pixels
  (``model_kwargs=(("resize", 224),)``), so training, evaluation and δE all see 224-pixel
  images without a 224-pixel copy of the data set in memory.
* ``fashion-smallconvnet`` is not in the paper: the CIFAR SmallConvNet recipe shrunk to run
  on 2 CPU cores in minutes (10 000 training images, 10 epochs, no augmentation).

Budget overrides. A preset's epoch-based schedule fields are written for its own
``epochs``. When a caller overrides ``epochs`` (``--epochs``) and not the field itself, the LR
milestones, the exponential decay period and ``warmup_epochs`` are multiplied by
``epochs / preset epochs`` and kept fractional (the LR is set every step from the
fractional epoch, so nothing is rounded): ``multistep:6,8`` over 10 epochs becomes
``multistep:1.2,1.6`` over 2. The LR at a given fraction of the run is then the preset's
(the γ schedules are already spread over the run). Energy epochs beyond the new end are
dropped and the end is measured. An explicit ``warmup_epochs`` or ``lr_schedule`` is taken
as given (absolute epochs).

Verdicts. ``max_train_error`` (default 0.5) is the training error (a fraction) above which
a finished run is flagged as not trained in ``compare``'s table and figures
(:func:`~wideflat.experiments.plots.run_flags`); so is a run at chance-level test error.

Example:
    >>> cfg = preset_config("cifar10-smallconvnet", "esgd")
    >>> cfg.lr, cfg.lr_schedule, cfg.inner_lr, cfg.gamma
    (0.5, 'multistep:150,225', 0.02, 'exp:0.5:x10')
    >>> "fashion-smallconvnet" in list_presets()
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig, resolve_kind
from .schedules import parse_lr_schedule

__all__ = ["Preset", "get_preset", "list_presets", "preset_config", "scale_lr_schedule"]


@dataclass(frozen=True)
class Preset:
    """A baseline config and per-method overrides (``{"esgd": {"lr": 0.5}, ...}``)."""

    name: str
    description: str
    base: TrainConfig
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_train_error: float = 0.5  # final train error (fraction) above which a run is flagged


_RSGD = {"gamma": "exp:auto:x1e4", "y": 3, "coupling_every": 10}


def _cifar(name: str, dataset: str, model: str, **kw: Any) -> TrainConfig:
    kw = {"padding": 4, "flip": True, "amp": False, **kw}
    return TrainConfig(name=name, dataset=dataset, model=model, **kw)


def _tiny(name: str, model: str, **kw: Any) -> TrainConfig:
    kw = {"padding": 8, "flip": True, "lr": 0.05, "weight_decay": 1e-4, "amp": False, **kw}
    return TrainConfig(name=name, dataset="tiny-imagenet", model=model, **kw)


_PRESETS = [
    Preset(
        "cifar10-smallconvnet",
        "Table 1, CIFAR-10 SmallConvNet (appendix C.1): 300 epochs, Nesterov SGD lr 0.01",
        _cifar(
            "cifar10-smallconvnet",
            "cifar10",
            "smallconvnet",
            epochs=300,
            lr=0.01,
            weight_decay=1e-4,
            lr_schedule="multistep:150,225",
        ),
        {
            "rsgd": {**_RSGD, "lr": 0.05, "gamma": "exp:0.001:x1e4"},
            "esgd": {"lr": 0.5, "inner_lr": 0.02, "gamma": "exp:0.5:x10"},
            "sam": {"rho": 0.05},
        },
    ),
    Preset(
        "cifar10-resnet18",
        "Table 1, CIFAR-10 ResNet-18 (C.1): 160 epochs, lr 0.01, drop at 110",
        _cifar(
            "cifar10-resnet18",
            "cifar10",
            "resnet18",
            epochs=160,
            lr=0.01,
            weight_decay=5e-4,
            lr_schedule="multistep:110",
        ),
        {
            "rsgd": {**_RSGD, "lr": 0.02, "coupling_every": 1},
            # 32 outer epochs, drops at 16 and 25 → × L = 5 data epochs.
            "esgd": {
                "lr": 0.25,
                "inner_lr": 0.01,
                "lr_schedule": "multistep:80,125",
                "gamma": "exp:auto:x10",
            },
            "sam": {"rho": 0.05},
        },
    ),
    Preset(
        "cifar10-resnet110",
        "Table 1, CIFAR-10 ResNet-110 (C.1, He et al.): 164 epochs, warm-up 0.01 → 0.1",
        _cifar(
            "cifar10-resnet110",
            "cifar10",
            "resnet110",
            epochs=164,
            lr=0.1,
            nesterov=False,
            weight_decay=1e-4,
            lr_schedule="multistep:82,124",
            warmup_epochs=1.0,
            warmup_lr=0.01,
            warmup_kind="step",
        ),
        {
            "rsgd": {**_RSGD, "gamma": "exp:5e-4:x1e4", "warmup_epochs": 0.0},
            "esgd": {
                "nesterov": True,  # paper:729: Nesterov momentum in both eSGD loops
                "lr": 0.9,
                "inner_lr": 0.02,
                "lr_schedule": "multistep:85,125",
                "gamma": "exp:0.1:x10",
                "warmup_epochs": 0.0,
            },
            "sam": {"rho": 0.05},
        },
    ),
    *[
        Preset(
            f"{ds}-pyramidnet272",
            f"Table 1, {ds.upper()} PyramidNet-272 α=200 + ShakeDrop (C.1): 300 epochs, "
            "cosine lr 0.05, AutoAugment (CIFAR-10 policy; needs torchvision) and Cutout 16",
            _cifar(
                f"{ds}-pyramidnet272",
                ds,
                "pyramidnet272",
                epochs=300,
                batch_size=64,
                lr=0.05,
                weight_decay=5e-5,
                lr_schedule="cosine",
                autoaugment="cifar10",
                cutout=16,
            ),
            {
                "rsgd": {
                    **_RSGD,
                    "gamma": "cosine:0.1",
                    "coupling_every_after": 3,
                    "coupling_switch_epoch": 220.0,
                },
                "sam": {"rho": 0.05},
            },  # fmt: skip
        )
        for ds in ("cifar10", "cifar100")
    ],
    Preset(
        "cifar100-efficientnet_b0",
        "Table 1, CIFAR-100 EfficientNet-B0 (C.1): 350 epochs, RMSprop (Tan & Le) lr 0.01 × "
        "0.97 every 2 epochs, 224-pixel images, AutoAugment (CIFAR-10 policy; needs "
        "torchvision)",
        _cifar(
            "cifar100-efficientnet_b0",
            "cifar100",
            "efficientnet_b0",
            model_kwargs=(("resize", 224),),
            epochs=350,
            batch_size=64,
            optimizer="rmsprop",
            nesterov=False,
            lr=0.01,
            weight_decay=1e-5,
            lr_schedule="exponential:2:0.97",
            padding=5,  # the paper's 32 of 224 pixels, at 32 pixels (module docstring)
            autoaugment="cifar10",
        ),
        {
            "rsgd": {**_RSGD, "gamma": "exp:5e-6:x1e4"},
            # × 0.92 every 2 outer epochs = every 10 data epochs; eSGD's loops are Nesterov
            # SGD in every experiment (appendix C), RMSprop is the baseline's only.
            "esgd": {
                "optimizer": "sgd",
                "nesterov": True,
                "lr": 0.5,
                "inner_lr": 0.05,
                "lr_schedule": "exponential:10:0.92",
                "gamma": "exp:auto:x10",
            },
            "sam": {"rho": 0.05},
        },
    ),
    Preset(
        "tiny-imagenet-resnet50",
        "Table 1, Tiny ImageNet ResNet-50 (C.2): 270 epochs, lr 0.05, drops at 90/180/240, "
        "Fast-AutoAugment (ImageNet policy)",
        _tiny(
            "tiny-imagenet-resnet50",
            "resnet50",
            epochs=270,
            lr_schedule="multistep:90,180,240",
            autoaugment="fast-imagenet",
        ),
        {
            "rsgd": dict(_RSGD),
            # 50 outer epochs, drops at 18, 36, 48 → × L = 5.
            "esgd": {
                "lr": 0.8,
                "inner_lr": 0.02,
                "lr_schedule": "multistep:90,180,240",
                "gamma": "exp:auto:x10",
            },
            "sam": {"rho": 0.05},
        },
    ),
    Preset(
        "tiny-imagenet-densenet121",
        "Table 1, Tiny ImageNet DenseNet-121 (C.2): 200 epochs, drops at 100/150, "
        "Fast-AutoAugment (ImageNet policy)",
        _tiny(
            "tiny-imagenet-densenet121",
            "densenet121",
            epochs=200,
            lr_schedule="multistep:100,150",
            autoaugment="fast-imagenet",
        ),
        {
            "rsgd": dict(_RSGD),
            # 40 outer epochs, drops at 25 and 30 → × L = 5.
            "esgd": {
                "lr": 0.5,
                "inner_lr": 0.02,
                "lr_schedule": "multistep:125,150",
                "gamma": "exp:1.0:x10",
            },
            "sam": {"rho": 0.05},
        },
    ),
    Preset(
        "fashion-smallconvnet",
        "Fashion-MNIST SmallConvNet on 10 000 training images, 10 epochs: minutes on 2 CPU "
        "cores (not in the paper)",
        TrainConfig(
            name="fashion-smallconvnet",
            dataset="fashion-mnist",
            model="smallconvnet",
            train_subset=10_000,
            epochs=10,
            batch_size=128,
            lr=0.02,
            weight_decay=1e-4,
            lr_schedule="multistep:6,8",
            eval_every=2,
            energy_epochs=(5, 10),
            energy_sigmas=(0.0, 0.1, 0.2, 0.3, 0.5),
            energy_samples=5,
            energy_subset=1000,
        ),
        {
            # γ grows 10³ (not 10⁴): with only 10 epochs the LR has not decayed enough for
            # lr·K·γ to stay below 1 at a 10⁴ growth.
            "rsgd": {**_RSGD, "lr": 0.05, "coupling_every": 2, "gamma": "exp:auto:x1e3"},
            "esgd": {"lr": 0.5, "inner_lr": 0.02, "gamma": "exp:0.03:x10"},
            "sam": {"rho": 0.05},
        },
    ),
]
_BY_NAME = {p.name: p for p in _PRESETS}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset` and ``--preset``."""
    return sorted(_BY_NAME)


def get_preset(name: str) -> Preset:
    """The preset ``name``; ``ValueError`` names unknown ones."""
    if name not in _BY_NAME:
        raise ValueError(f"Invalid preset: {name!r} (known: {', '.join(list_presets())})")
    return _BY_NAME[name]


def preset_config(name: str, kind: str = "sgd", **overrides: Any) -> TrainConfig:
    """The resolved config of preset ``name`` for run kind ``kind`` plus ``overrides``.

    ``kind`` is a method (``sgd``, ``esgd``, ``rsgd``, ``sam``) or ``rsgdxy`` (rSGD at the
    per-replica budget); overrides win over the preset's per-method values. Overriding
    ``epochs`` rescales the preset's epoch-based schedule fields that are not overridden too
    (module docstring, "Budget overrides").

    Example:
        >>> cfg = preset_config("fashion-smallconvnet", "rsgd", epochs=2)
        >>> cfg.lr_schedule, cfg.energy_epochs
        ('multistep:1.2,1.6', (2,))
    """
    preset = get_preset(name)
    method, budget = resolve_kind(kind)
    changes = {**preset.methods.get(method, {}), "method": method, "budget": budget}
    own = preset.base.replace(**changes)  # the preset's own run of this method
    changes.update(overrides)
    if "epochs" in overrides:
        changes.update(_rescaled(own, overrides["epochs"], set(overrides)))
    return preset.base.replace(**changes)


def _number(x: float) -> str:
    """A schedule-string number: ``1.2``, not ``1.2000000000000002``."""
    return f"{round(x, 9):.10g}"


def scale_lr_schedule(text: str, ratio: float) -> str:
    """The LR schedule string with its epochs (milestones, decay period) times ``ratio``.

    Example:
        >>> scale_lr_schedule("multistep:6,8", 0.2), scale_lr_schedule("exponential:2:0.97", 0.1)
        ('multistep:1.2,1.6', 'exponential:0.2:0.97')
    """
    spec = parse_lr_schedule(text)
    if ratio == 1 or spec.kind not in ("multistep", "exponential"):
        return text
    if spec.kind == "exponential":
        return f"exponential:{_number(spec.every * ratio)}:{_number(spec.factor)}"
    milestones = ",".join(_number(m * ratio) for m in spec.milestones)
    factor = "" if spec.factor == 0.1 else f":{_number(spec.factor)}"
    return f"multistep:{milestones}{factor}"


def _rescaled(own: TrainConfig, epochs: int, given: set[str]) -> dict[str, Any]:
    """The epoch-based fields of ``own`` for a budget of ``epochs`` (see the module docstring);
    fields named in ``given`` are the caller's and stay as they are."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        return {}  # TrainConfig names the bad value
    ratio = epochs / own.epochs
    out: dict[str, Any] = {}
    if "lr_schedule" not in given:
        out["lr_schedule"] = scale_lr_schedule(own.lr_schedule, ratio)
    if "warmup_epochs" not in given:
        out["warmup_epochs"] = own.warmup_epochs * ratio
    if "coupling_switch_epoch" not in given:
        out["coupling_switch_epoch"] = own.coupling_switch_epoch * ratio
    if "energy_epochs" not in given and own.energy_epochs:
        # Keep the measurement epochs that still exist and measure at the new end (so
        # `--epochs 1` works without also naming energy epochs).
        kept = {e for e in own.energy_epochs if e <= epochs} | {epochs}
        out["energy_epochs"] = tuple(sorted(kept))
    return out
