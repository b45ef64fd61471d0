"""Fold packing: k folds trained as one grouped network match k separate ``fit`` runs."""

from __future__ import annotations

import pytest
import torch

from apexmer.config import Config
from apexmer.errors import ConfigError
from apexmer.models.registry import model_info
from apexmer.training.engine import build_model, fit, predict_proba, seed_for
from apexmer.training.inputs import input_channels
from apexmer.training.losses import FocalLoss, class_balanced_alpha
from apexmer.training.packed import FoldData, FoldLosses, PackedTrainer, fit_packed
from apexmer.training.packing import pack_models, set_active, unpack

K, S, NUM_CLASSES = 3, 32, 5
# Flow networks with dropout on, at their registered input sizes.
DROPOUT_NETS = [("sssnet", 64), ("ststnet", 28)]


def _config(model: str = "seresnext_tiny", size: int = S, **train) -> Config:
    # lr 1e-4 is the paper's. Adam's first steps move a weight by ~lr whatever the size of
    # its gradient, so float-rounding differences in near-zero gradients (grouped kernels
    # sum in another order; so does a different thread count) show up as ~lr in weights.
    # OFF-ApexNet reads the (u, v) flow only: its folds get 2-channel flow inputs.
    data = {"input": "flow", "flow_channels": ["u", "v"]} if model == "off_apexnet" else {}
    return Config.model_validate(
        {
            "model": {"name": model},
            "data": {"input_size": size, **data},
            "loss": {"alpha": "balanced"},
            "optim": {"lr": 1e-4},
            "train": {"epochs": 2, "batch_size": 4, "threads": 1, **train},
        }
    )


def _inputs(config: Config, n: int, g: torch.Generator) -> torch.Tensor:
    """n random stored-form inputs of the config's kind: uint8 images or float16 flow."""
    s, c = config.data.input_size, len(input_channels(config.data))
    if config.data.input == "flow":
        return torch.randn(n, c, s, s, generator=g).half()
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)


def _folds(config: Config) -> list[FoldData]:
    g = torch.Generator().manual_seed(0)
    # 13 % 4 = 1 (tail of one: dropped), 14 % 4 = 2 and 11 % 4 = 3: unequal tails,
    # and three different numbers of steps per epoch.
    sizes = [13, 14, 11]
    return [
        FoldData(
            x=_inputs(config, n, g),
            y=torch.randint(0, NUM_CLASSES, (n,), generator=g),
            seed=seed_for(config, i),
        )
        for i, n in enumerate(sizes)
    ]


def test_packed_forward_equals_separate_forwards() -> None:
    config = _config()
    models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    packed = pack_models(models)
    x = torch.randn(4, 3 * K, S, S, generator=torch.Generator().manual_seed(1))
    for train in (False, True):
        packed.train(train)
        for m in models:
            m.train(train)
        out = packed(x)  # (B, k, C)
        assert out.shape == (4, K, NUM_CLASSES)
        for f, m in enumerate(models):
            torch.testing.assert_close(out[:, f], m(x[:, 3 * f : 3 * f + 3]), atol=1e-5, rtol=1e-4)


def test_packed_gradients_are_per_fold() -> None:
    config = _config()
    models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    packed = pack_models(models)
    x = torch.randn(4, 3 * K, S, S, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    loss_fn = FocalLoss()
    out = packed(x)
    sum(loss_fn(out[:, f], y) for f in range(K)).backward()
    for f, m in enumerate(models):
        loss_fn(m(x[:, 3 * f : 3 * f + 3]), y).backward()
    grads = unpack_grads(packed)
    for f, m in enumerate(models):
        for name, p in m.named_parameters():
            # float32 sums in another order: compare against the tensor's scale
            err = float((grads[f][name] - p.grad).abs().max())
            assert err <= 1e-4 * float(p.grad.abs().max()) + 1e-7, (name, err)


def unpack_grads(packed: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    """Per-fold gradients, laid out like ``unpack``'s parameters."""
    grads = [{} for _ in range(K)]
    for name, p in packed.named_parameters():
        rows = list(p.grad) if p.grad.shape[0] == K and name.startswith("fc.") else p.grad.chunk(K)
        for f in range(K):
            grads[f][name] = rows[f]
    return grads


def test_pack_unpack_round_trip_is_exact() -> None:
    config = _config()
    models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    states = unpack(pack_models(models), K)
    for m, state in zip(models, states, strict=True):
        ref = m.state_dict()
        assert state.keys() == ref.keys()
        for key, value in ref.items():
            assert torch.equal(state[key], value), key
    repacked = unpack(pack_models([*models[1:], models[0]]), K)
    assert torch.equal(repacked[2]["fc.weight"], models[0].state_dict()["fc.weight"])


@pytest.mark.parametrize("channels_last", [False, True])
def test_fit_packed_matches_sequential_fit(channels_last: bool) -> None:
    config = _config(channels_last=channels_last)
    folds = _folds(config)
    packed = fit_packed(config, folds, NUM_CLASSES)
    x_test = torch.randint(
        0, 256, (6, 3, S, S), dtype=torch.uint8, generator=torch.Generator().manual_seed(7)
    )
    worst_p, worst_w = 0.0, 0.0
    for fd, res in zip(folds, packed, strict=True):
        ref = fit(config, fd.x, fd.y, NUM_CLASSES, fd.seed)
        # Same batch order and tail rule: same number of steps and the same accuracy row.
        ref_state, state = ref.model.state_dict(), res.model.state_dict()
        assert int(state["bn1.num_batches_tracked"]) == int(ref_state["bn1.num_batches_tracked"])
        assert [h["train_acc"] for h in res.history] == [h["train_acc"] for h in ref.history]
        for h, r in zip(res.history, ref.history, strict=True):
            # Adam moves a weight by ~lr even for a gradient of 1e-7 whose sign the rounding
            # decides (measured: stem bn1.bias); batch-of-4 BN on 1x1 maps amplifies it.
            assert h["loss"] == pytest.approx(r["loss"], rel=1e-2)
        for key, _ in ref.model.named_parameters():
            value = ref_state[key]
            worst_w = max(worst_w, float((state[key].double() - value.double()).abs().max()))
        p_ref = predict_proba(ref.model, x_test, config)
        p = predict_proba(res.model, x_test, config)
        worst_p = max(worst_p, float(abs(p - p_ref).max()))
    # Measured on this machine: probabilities 3.4e-4, 1 vs 2 threads in plain fit 9e-6.
    # Adam turns gradient rounding noise into ~lr weight moves; the exact-logic checks are
    # the gradient test and test_fit_packed_sees_each_folds_own_batches.
    assert worst_p < 2e-3, worst_p
    assert worst_w < 20 * config.optim.lr, worst_w


def test_fit_packed_sees_each_folds_own_batches() -> None:
    # With a vanishing learning rate training is not chaotic, and the BatchNorm running
    # statistics record exactly which (augmented) batches each fold saw, in which order.
    config = _config()
    config.optim.name, config.optim.lr = "sgd", 1e-12
    folds = _folds(config)
    for fd, res in zip(folds, fit_packed(config, folds, NUM_CLASSES), strict=True):
        ref = fit(config, fd.x, fd.y, NUM_CLASSES, fd.seed).model.state_dict()
        for key, value in res.model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                assert int(value) == int(ref[key]), key
            else:
                torch.testing.assert_close(value, ref[key], atol=1e-5, rtol=1e-5)


def _loose_tensors(module: torch.nn.Module) -> list[str]:
    """Tensor attributes that are neither parameters nor buffers: ``.to()`` skips them."""
    return [
        f"{type(m).__name__}.{key}"
        for m in module.modules()
        for key, value in vars(m).items()
        if isinstance(value, torch.Tensor)
    ]


@pytest.mark.parametrize("model", ["seresnext_tiny", "sssnet"])
def test_every_tensor_of_a_packed_model_follows_its_device(model: str) -> None:
    # The H200 crash: models moved to CUDA, then packed, left fold_batches on the CPU.
    # The meta device stands in for CUDA: any tensor left on the CPU shows.
    size = dict(DROPOUT_NETS).get(model, S)
    config = _config(model, size)
    models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    on_meta = pack_models([m.to("meta") for m in models])
    devices = {t.device.type for t in [*on_meta.parameters(), *on_meta.buffers()]}
    assert devices == {"meta"}
    # Packed on the CPU, moved, trained one step with a partial mask: nothing left behind.
    cpu_models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    packed = pack_models(cpu_models).to("meta").train()
    set_active(packed, [0, 2])
    out = packed(torch.empty(2, 3 * K, size, size, device="meta"))
    assert out.shape == (2, K, NUM_CLASSES) and out.device.type == "meta"
    out.sum().backward()
    assert {t.device.type for t in [*packed.parameters(), *packed.buffers()]} == {"meta"}
    assert _loose_tensors(packed) == []


@pytest.mark.parametrize(("model", "size"), [*DROPOUT_NETS, ("off_apexnet", 28)])
def test_packed_dropout_draws_each_folds_own_masks(model: str, size: int) -> None:
    config = _config(model, size)
    alone = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    packed = pack_models([build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)])
    packed.train()
    for m in alone:
        m.train()
    c = model_info(model).input_size[0]  # OFF-ApexNet takes (u, v): 2 channels
    g = torch.Generator().manual_seed(3)
    # A partial step (fold 1 idle: it must draw nothing), then a full one.
    for active in ([0, 2], [0, 1, 2]):
        x = torch.randn(4, c * K, size, size, generator=g)
        set_active(packed, active if len(active) < K else None)
        out = packed(x)
        for f in active:
            ref = alone[f](x[:, c * f : c * f + c])
            torch.testing.assert_close(out[:, f], ref, atol=1e-5, rtol=1e-4)
    # Different folds drew different masks (the check above is not vacuous).
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize(("model", "size"), [*DROPOUT_NETS, ("off_apexnet", 28)])
def test_fit_packed_with_dropout_matches_sequential_fit(model: str, size: int) -> None:
    config = _config(model, size)
    config.optim.lr = 1e-3
    folds = _folds(config)
    x_test = _inputs(config, 6, torch.Generator().manual_seed(7))
    worst = 0.0
    for fd, res in zip(folds, fit_packed(config, folds, NUM_CLASSES), strict=True):
        ref = fit(config, fd.x, fd.y, NUM_CLASSES, fd.seed)
        assert [h["train_acc"] for h in res.history] == [h["train_acc"] for h in ref.history]
        for h, r in zip(res.history, ref.history, strict=True):
            assert h["loss"] == pytest.approx(r["loss"], rel=1e-4)
        p = predict_proba(res.model, x_test, config)
        worst = max(worst, float(abs(p - predict_proba(ref.model, x_test, config)).max()))
    # Measured: ~1e-6 (float rounding only). Other masks move these nets' outputs by ~0.1.
    assert worst < 1e-4, worst


@pytest.mark.parametrize("optim", ["adam", "adamw", "sgd"])
def test_foreach_optimizer_step_is_bit_identical(optim: str) -> None:
    from apexmer.training.packed_optimizer import PackedOptimizer

    config = _config()
    config.optim.name, config.optim.weight_decay = optim, 1e-2
    models = [build_model(config, NUM_CLASSES, seed_for(config, i)) for i in range(K)]
    nets = [pack_models(models) for _ in range(2)]
    opts = [
        PackedOptimizer(list(n.parameters()), K, config, foreach=fe)
        for n, fe in zip(nets, (True, False), strict=True)
    ]
    g = torch.Generator().manual_seed(5)
    for active in ([0, 1, 2], [0, 2], [0, 1, 2], [1], [0, 1, 2]):
        grads = [torch.randn(p.shape, generator=g) for p in nets[0].parameters()]
        for net, opt in zip(nets, opts, strict=True):
            for p, grad in zip(net.parameters(), grads, strict=True):
                p.grad = grad.clone()
            opt.step(active)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    for sa, sb in zip(opts[0].state, opts[1].state, strict=True):
        assert torch.equal(sa["m"], sb["m"])
        assert sa["v"] is None or torch.equal(sa["v"], sb["v"])


@pytest.mark.parametrize(
    "alphas",
    [[None, None, None], "balanced", [0.5, 2.0, 1.0], [None, [1.0] * NUM_CLASSES, None]],
    ids=["none", "balanced", "scalar", "mixed"],
)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_fold_losses_equal_each_folds_own_loss(alphas: list | str, gamma: float) -> None:
    g = torch.Generator().manual_seed(3)
    labels = [torch.randint(0, NUM_CLASSES, (4,), generator=g) for _ in range(K)]
    if alphas == "balanced":
        alphas = [class_balanced_alpha(torch.bincount(y, minlength=NUM_CLASSES)) for y in labels]
    fns = [FocalLoss(gamma=gamma, alpha=a) for a in alphas]
    logits = torch.randn(2, 4, NUM_CLASSES, generator=g)  # (m, b, C): folds 0 and 2 active
    y = torch.stack([labels[0], labels[2]])
    got = FoldLosses(fns)(logits, y, [0, 2], torch.tensor([0, 2]))
    want = torch.stack([fns[0](logits[0], y[0]), fns[2](logits[1], y[1])])
    assert torch.equal(got, want)


@pytest.mark.parametrize("channels_last", [False, True])
def test_static_full_pack_step_is_bit_identical(channels_last: bool) -> None:
    # train.cuda_graphs: the full-pack steps run from fixed buffers (on CUDA, replayed as
    # a graph); here they run eagerly and must give exactly the ordinary step's numbers,
    # with the partial steps of unequal folds in between.
    plain = _config(channels_last=channels_last)
    static = _config(channels_last=channels_last, cuda_graphs=True)
    for a, b in zip(
        fit_packed(plain, _folds(plain), NUM_CLASSES),
        fit_packed(static, _folds(static), NUM_CLASSES),
        strict=True,
    ):
        assert a.history == b.history
        for key, value in a.model.state_dict().items():
            assert torch.equal(value, b.model.state_dict()[key]), key


def test_warm_up_steps_are_undone() -> None:
    # CUDA-graph capture warms the step up three times first; run_restoring must leave no
    # trace, so a warmed trainer then trains exactly like a fresh one.
    config = _config(cuda_graphs=True)
    fresh, warmed = (PackedTrainer(config, _folds(config), NUM_CLASSES) for _ in range(2))
    before = [t.clone() for t in warmed.state_tensors()]
    x = torch.randn(4, 3 * K, S, S, generator=torch.Generator().manual_seed(5))
    table = torch.ones(2, K)

    def full_step() -> None:  # what the capture's warm-up changes: weights, BN, moments
        warmed.optimizer.zero_grad()
        warmed.packed(x).float().square().sum().backward()
        warmed.optimizer.step_all(table)

    warmed.run_restoring(full_step, times=3)
    assert all(torch.equal(a, b) for a, b in zip(before, warmed.state_tensors(), strict=True))
    for epoch in range(2):
        assert fresh.train_epoch() == warmed.train_epoch(), epoch
    for a, b in zip(fresh.state_tensors(), warmed.state_tensors(), strict=True):
        assert torch.equal(a, b)


def test_cuda_graphs_refuse_what_cannot_be_replayed() -> None:
    with pytest.raises(ConfigError, match="set one"):
        config = _config(cuda_graphs=True, compile=True)
        PackedTrainer(config, _folds(config), NUM_CLASSES)
    config = _config("sssnet", 64, cuda_graphs=True)
    with pytest.raises(ConfigError, match="dropout"):
        PackedTrainer(config, _folds(config), NUM_CLASSES)
