"""Flow networks: parameter counts, equivalence with their published multi-stream form,
gradients, and seeded dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.models.layers import Dropout, seed_dropout
from apexmer.models.registry import count_parameters, create_model, describe_models, model_info

# Hand-counted with 3 classes.
# STSTNet: three branches 3x3 on 3 channels: (27+1)*(3+5+8) = 448; BN 2*16 = 32;
#          FC 400*3+3 = 1203 -> 1683.
# OFF-ApexNet: conv1 2 streams x 6 x (25+1) = 312; conv2 2 x 16 x (6*25+1) = 4832;
#          FC 1568*1024+1024 = 1606656; FC 1024*1024+1024 = 1049600; FC 1024*3+3 = 3075.
# SSSNet at 64 px: conv1 32*(75+1) = 2432; BN 64; conv2 64*(288+1) = 18496; BN 128;
#          FC 5184*256+256 = 1327360; FC 256*3+3 = 771.
COUNTS_3 = {
    "ststnet": 1683,
    "off_apexnet": 312 + 4832 + 1606656 + 1049600 + 3075,
    "sssnet": 2432 + 64 + 18496 + 128 + 1327360 + 771,
}


@pytest.mark.parametrize("name", sorted(COUNTS_3))
def test_parameter_counts(name):
    model = create_model(name, num_classes=3)
    assert count_parameters(model) == COUNTS_3[name]
    listed = {r["name"]: r for r in describe_models(num_classes=3)}
    assert listed[name]["params"] == COUNTS_3[name]
    c, h, w = model_info(name).input_size
    assert listed[name]["input"] == f"{c}x{h}x{w}"


@pytest.mark.parametrize("name", sorted(COUNTS_3))
def test_forward_shape_and_every_parameter_learns(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    c, h, w = model_info(name).input_size
    x = torch.randn(4, c, h, w)
    out = model(x)
    assert out.shape == (4, 3)
    F.cross_entropy(out, torch.tensor([0, 1, 2, 0])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_ststnet_equals_three_branches():
    """One 16-filter convolution is the paper's three parallel 3/5/8-filter branches."""
    torch.manual_seed(1)
    model = create_model("ststnet", num_classes=3).eval()
    x = torch.randn(5, 3, 28, 28)
    w, b = model.conv.weight, model.conv.bias
    outs = []
    for lo, hi in ((0, 3), (3, 8), (8, 16)):  # each branch: conv -> ReLU -> BN -> pool
        y = F.relu(F.conv2d(x, w[lo:hi], b[lo:hi], padding=2))
        bn = model.bn
        y = F.batch_norm(
            y, bn.running_mean[lo:hi], bn.running_var[lo:hi], bn.weight[lo:hi], bn.bias[lo:hi]
        )
        outs.append(F.max_pool2d(y, 3, 3, 1))
    y = F.avg_pool2d(torch.cat(outs, 1), 2, 2).flatten(1)
    torch.testing.assert_close(model(x), model.fc(y))


def test_off_apexnet_streams_see_only_their_channel():
    """Changing v leaves the u stream's features unchanged (groups=2 = two streams)."""
    torch.manual_seed(2)
    model = create_model("off_apexnet", num_classes=3).eval()
    x = torch.randn(2, 2, 28, 28)
    y = x.clone()
    y[:, 1] += torch.randn(2, 28, 28)
    fx, fy = model.conv1(x), model.conv1(y)
    torch.testing.assert_close(fx[:, :6], fy[:, :6])
    assert not torch.allclose(fx[:, 6:], fy[:, 6:])
    with pytest.raises(ValueError, match="in_chans=2"):
        create_model("off_apexnet", num_classes=3, in_chans=3)


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=16, max_value=96))
def test_sssnet_any_input_size(size):
    model = create_model("sssnet", num_classes=4, input_size=size).eval()
    assert model(torch.zeros(1, 3, size, size)).shape == (1, 4)


def test_sssnet_refuses_tiny_inputs():
    with pytest.raises(ValueError, match="at least 16 px"):
        create_model("sssnet", input_size=15)


def test_seeded_dropout_depends_on_seed_only():
    def masks(seed: int, burn: int) -> torch.Tensor:
        model = create_model("sssnet", num_classes=3, input_size=28).train()
        seed_dropout(model, seed)
        torch.rand(burn)  # other users of the global RNG must not matter
        return torch.stack([model.drop3.draw_mask((4, 8), torch.device("cpu")) for _ in range(3)])

    assert torch.equal(masks(7, 0), masks(7, 100))
    assert not torch.equal(masks(7, 0), masks(8, 0))


def test_dropout_scales_and_channelwise_masks():
    drop = Dropout(0.25, channelwise=True).train()
    drop.generator = torch.Generator().manual_seed(0)
    y = drop(torch.ones(64, 8, 5, 5))
    per_channel = y[:, :, 0, 0]
    assert torch.equal(y, per_channel[:, :, None, None].expand_as(y))  # whole channels
    assert per_channel.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs(float((per_channel > 0).float().mean()) - 0.75) < 0.06
    assert torch.equal(drop.eval()(torch.ones(2, 8, 5, 5)), torch.ones(2, 8, 5, 5))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([16, 28, 33]))
def test_sssnet_pools_before_relu_with_the_published_values_and_gradients(seed, size):
    # SSSNet publishes conv -> ReLU -> max-pool; apexmer pools first (ReLU on a smaller
    # tensor). ReLU is monotone, so the outputs and every gradient must be the same.
    torch.manual_seed(seed)
    model = create_model("sssnet", num_classes=3, input_size=size, drop_rate=0.0).train()
    x = torch.randn(4, 3, size, size)

    def published(m, x):
        x = m.bn1(m.pool1(F.relu(m.conv1(x))))
        x = m.bn2(m.pool2(F.relu(m.conv2(x)))).flatten(1)
        return m.fc(F.relu(m.fc1(x)))

    outs, grads = [], []
    for forward in (model, lambda x: published(model, x)):
        model.zero_grad()
        out = forward(x)
        (out * torch.arange(1.0, 4.0)).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
