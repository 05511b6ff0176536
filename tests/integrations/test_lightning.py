"""The Lightning integration against the real ``lightning`` package, on tiny CPU data.

Each integrated run is compared with a plain PyTorch loop over the same batches, written
here with the optimizers' own public API, bit for bit: Lightning's "32-true" precision changes
no number, and "bf16-mixed" is the plain loop under the same ``torch.autocast``. The detector
tests pin the closures Lightning passes (its automatic ``Closure``, the empty closure of
``opt.step()``, a wrapped user closure), on which the optimizers' refusals rely.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from wideflat.integrations import lightning_closure_kind  # noqa: E402
from wideflat.integrations.lightning import EntropySGDModule, ReplicatedSGDModule  # noqa: E402
from wideflat.optim import EntropySGD, MissingClosureError, ReplicatedSGD  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*LeafSpec")

ESGD = dict(lr=0.5, inner_lr=0.1, inner_steps=3, gamma=0.05, noise=1e-3, momentum=0.9, seed=7)
RSGD = dict(lr=0.2, y=2, gamma=0.1, coupling_every=2, momentum=0.9, seed=3)


def _data(n: int, seed: int = 0) -> TensorDataset:
    """(x, t, example index) triples, so each run can tell which examples it used."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g), torch.arange(n)
    )


def _net(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _trainer(**kwargs) -> pl.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**base, **kwargs})


def _assert_identical(a, b, where="") -> None:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def _ids(batch) -> list[int]:
    return batch[2].tolist()


# -- Entropy-SGD -----------------------------------------------------------------------------


class ESGDNet(EntropySGDModule):
    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = _net(seed)
        self.seen: list[list[int]] = []  # example ids of each inner step's batch

    def training_loss(self, batch):
        self.seen.append(_ids(batch))
        x, t, _ = batch
        return F.cross_entropy(self.net(x), t)

    def configure_optimizers(self):
        return EntropySGD(self.parameters(), **ESGD)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_entropy_sgd_fresh_batch_per_inner_step_matches_plain_loop(precision):
    loader = DataLoader(_data(40), batch_size=4)  # 10 batches an epoch, L = 3
    model = ESGDNet()
    trainer = _trainer(max_steps=5, precision=precision)
    trainer.fit(model, loader)

    # 3 steps in epoch 0 (batches 0..8; batch 9 skipped), 2 in epoch 1 (batches 0..5)
    batches = [list(range(4 * b, 4 * b + 4)) for b in [*range(9), *range(6)]]
    assert trainer.global_step == 5
    assert model.seen == batches  # 15 inner steps, each on the next, never-reused batch

    net = _net(0)  # the same run as a plain loop
    opt = EntropySGD(net.parameters(), **ESGD)
    steps = 0
    while steps < 5:
        epoch = list(loader)
        for s in range(len(epoch) // 3):
            if steps == 5:
                break
            fresh = iter(epoch[3 * s : 3 * s + 3])

            def closure(fresh=fresh):
                x, t, _ = next(fresh)
                loss = F.cross_entropy(net(x), t)
                loss.backward()
                return loss

            # Lightning's bf16-mixed runs training_step (so the whole step) under autocast
            with torch.autocast(
                "cpu", torch.bfloat16, enabled=precision == "bf16-mixed", cache_enabled=False
            ):
                opt.step(closure)
            steps += 1
    _assert_identical(model.net.state_dict(), net.state_dict())
    _assert_identical(model.optimizers().optimizer.state_dict(), opt.state_dict())


# -- refusals --------------------------------------------------------------------------------


class Automatic(pl.LightningModule):
    """The reported misuse: a plain LightningModule, automatic optimization."""

    def __init__(self, make_opt):
        super().__init__()
        self.net = _net(0)
        self.make_opt = make_opt

    def training_step(self, batch, batch_idx):
        x, t, _ = batch
        return F.cross_entropy(self.net(x), t)

    def configure_optimizers(self):
        return self.make_opt(self)


class Manual(Automatic):
    """Manual optimization; ``opt.step()`` without a closure, or with one of its own."""

    def __init__(self, make_opt, with_closure: bool):
        super().__init__(make_opt)
        self.automatic_optimization = False
        self.with_closure = with_closure

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()

        def closure():
            loss = super(Manual, self).training_step(batch, batch_idx)
            self.manual_backward(loss)
            return loss

        if self.with_closure:
            opt.step(closure=closure)
        else:
            closure()
            opt.step()


@pytest.mark.parametrize(
    "module, kind",
    [
        (lambda m: Automatic(m), "automatic"),
        (lambda m: Manual(m, with_closure=False), "empty"),
        (lambda m: Manual(m, with_closure=True), "wrapped"),
    ],
    ids=["automatic", "manual-no-closure", "manual-closure"],
)
def test_detector_recognizes_the_closures_lightning_passes(module, kind):
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(lightning_closure_kind(closure))
            return super().step(closure)

    _trainer(max_steps=1).fit(
        module(lambda m: Spy(m.parameters(), lr=0.1)), DataLoader(_data(8), batch_size=4)
    )
    assert seen == [kind]
    assert lightning_closure_kind(lambda: None) is None


def test_entropy_sgd_under_automatic_optimization_is_refused():
    model = Automatic(lambda m: EntropySGD(m.parameters(), **ESGD))
    before = copy.deepcopy(model.net.state_dict())
    with pytest.raises(
        MissingClosureError,
        match=r"automatic optimization.*same batch.*"
        r"all 3 inner steps.*wideflat\.integrations\.lightning\.EntropySGDModule",
    ):
        _trainer(max_steps=2).fit(model, DataLoader(_data(16), batch_size=4))
    _assert_identical(model.net.state_dict(), before)  # refused before any update


def test_entropy_sgd_step_without_closure_under_manual_optimization_is_refused():
    model = Manual(lambda m: EntropySGD(m.parameters(), **ESGD), with_closure=False)
    with pytest.raises(MissingClosureError, match="empty closure.*EntropySGDModule"):
        _trainer(max_steps=1).fit(model, DataLoader(_data(8), batch_size=4))


@pytest.mark.parametrize("module", [ESGDNet, lambda: RSGDNet()], ids=["esgd", "rsgd"])
def test_grad_scaler_precision_is_refused(module):
    from lightning.pytorch.plugins.precision import MixedPrecision

    fp16 = MixedPrecision("16-mixed", "cpu")  # what precision="16-mixed" builds on a GPU
    with pytest.raises(ValueError, match="Invalid precision.*GradScaler.*bf16-mixed"):
        _trainer(max_steps=1, plugins=[fp16]).fit(module(), DataLoader(_data(16), batch_size=4))


def test_replicated_sgd_under_automatic_optimization_is_refused():
    model = Automatic(lambda m: ReplicatedSGD(m.net, **RSGD))
    with pytest.raises(MissingClosureError, match="automatic optimization.*ReplicatedSGDModule"):
        _trainer(max_steps=1).fit(model, DataLoader(_data(8), batch_size=4))


# -- Replicated-SGD --------------------------------------------------------------------------


class RSGDNet(ReplicatedSGDModule):
    def __init__(self, seed: int = 0, engine: str = "loop"):
        super().__init__()
        self.net = _net(seed)
        self.engine = engine
        self.seen: dict[int, list[list[int]]] = {}  # replica → example ids of its batches

    def replica_loss(self, replica, batch):
        if self.training:
            rsgd = self.optimizers().optimizer
            if rsgd.replicas.batched:  # live modules are made per call: use the call order
                a = sum(map(len, self.seen.values())) % rsgd.y
            else:
                a = next(a for a in range(rsgd.y) if rsgd.replicas[a] is replica)
            self.seen.setdefault(a, []).append(_ids(batch))
        x, t, _ = batch
        return F.cross_entropy(replica(x), t)

    def configure_optimizers(self):
        return ReplicatedSGD(self.net, engine=self.engine, **RSGD)


def _loaders():
    # 5 batches an epoch, y = 2: 2 steps an epoch, batch 4 skipped; one validation batch
    return DataLoader(_data(20), batch_size=4), DataLoader(_data(12, seed=1), batch_size=12)


def _replicas(rsgd: ReplicatedSGD) -> dict:
    return copy.deepcopy(rsgd.replicas.state_dict())


@pytest.fixture(scope="module")
def rsgd_run():
    """Two epochs of ReplicatedSGDModule, in one go."""
    train, val = _loaders()
    model = RSGDNet()
    trainer = _trainer(max_epochs=2)
    trainer.fit(model, train, val)
    return model, trainer


def test_replicated_sgd_each_replica_its_own_batches_matches_plain_loop(rsgd_run):
    model, trainer = rsgd_run
    rsgd = model.optimizers().optimizer
    assert trainer.global_step == rsgd.steps == 4
    batch = [list(range(4 * b, 4 * b + 4)) for b in range(5)]
    assert model.seen == {0: [batch[0], batch[2]] * 2, 1: [batch[1], batch[3]] * 2}

    train, _ = _loaders()
    plain = ReplicatedSGD(_net(0), **RSGD)
    for _ in range(2):
        epoch = list(train)
        for s in range(2):

            def closure(a, s=s, epoch=epoch):
                x, t, _ = epoch[2 * s + a]
                loss = F.cross_entropy(plain.replicas[a](x), t)
                loss.backward()
                return loss

            plain.step(closure)
    _assert_identical(rsgd.state_dict(), plain.state_dict())


def test_replicated_sgd_validation_evaluates_the_center(rsgd_run):
    model, trainer = rsgd_run
    rsgd = model.optimizers().optimizer
    x, t, _ = _data(12, seed=1).tensors
    center = copy.deepcopy(rsgd.replicas[0])  # w̄ = (w_0 + w_1) / 2, by hand
    with torch.no_grad():
        for p, *ws in zip(
            center.parameters(), *(r.parameters() for r in rsgd.replicas), strict=True
        ):
            p.copy_(torch.stack(ws).mean(0))
        expected = F.cross_entropy(center(x), t)
        replica0 = F.cross_entropy(rsgd.replicas[0](x), t)
    logged = trainer.callback_metrics["val_loss"]
    torch.testing.assert_close(logged, expected, rtol=1e-6, atol=1e-7)
    assert abs(float(replica0) - float(expected)) > 1e-3  # the test can tell them apart
    torch.testing.assert_close(model.center_model(x), center(x), rtol=1e-6, atol=1e-7)


def test_replicated_sgd_lightning_checkpoint_resumes_every_replica_bit_for_bit(rsgd_run, tmp_path):
    train, val = _loaders()
    first = RSGDNet()
    trainer = _trainer(max_epochs=1)
    trainer.fit(first, train, val)
    path = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(path)

    saved = torch.load(path, weights_only=True)["optimizer_states"][0]["replicated_sgd"]
    _assert_identical(saved["replicas"], first.optimizers().optimizer.replicas.state_dict())
    assert {k.split(".")[1] for k in saved["replicas"]} == {"0", "1"}  # both replicas

    resumed = RSGDNet(seed=1)  # other initial weights: everything must come from the file
    trainer = _trainer(max_epochs=2)
    trainer.fit(resumed, train, val, ckpt_path=path)
    continuous, _ = rsgd_run
    assert trainer.global_step == 4
    batch = [list(range(4 * b, 4 * b + 4)) for b in range(5)]
    assert resumed.seen == {0: [batch[0], batch[2]], 1: [batch[1], batch[3]]}  # epoch 2 only
    _assert_identical(
        _replicas(resumed.optimizers().optimizer), _replicas(continuous.optimizers().optimizer)
    )
    _assert_identical(
        resumed.optimizers().optimizer.state_dict(), continuous.optimizers().optimizer.state_dict()
    )


def test_replicated_sgd_one_loader_per_replica():
    data = _data(16)
    loaders = [
        DataLoader(
            data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(10 + a)
        )
        for a in range(2)
    ]
    model = RSGDNet()
    _trainer(max_steps=3).fit(model, loaders)
    expected = {
        a: [
            _ids(b)
            for b in DataLoader(
                data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(10 + a)
            )
        ][:3]
        for a in range(2)
    }
    assert model.seen == expected
    assert model.seen[0] != model.seen[1]


def test_replicated_sgd_vectorized_engine_follows_the_loop_engine(rsgd_run):
    train, _ = _loaders()
    model = RSGDNet(engine="vmap")
    trainer = _trainer(max_epochs=2)
    trainer.fit(model, train)
    loop, _ = rsgd_run
    assert trainer.global_step == 4
    loop_replicas = list(loop.optimizers().optimizer.replicas)
    for a, replica in enumerate(model.optimizers().optimizer.replicas):
        for p, q in zip(replica.parameters(), loop_replicas[a].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
