"""The image networks: output shapes, parameter counts, registry and the per-sample losses."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.tasks.image_models import IMAGE_MODELS, build_image_model
from workers.tasks.losses import (
    PER_SAMPLE_LOSSES,
    per_sample_cross_entropy,
    per_sample_multiclass_hinge,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    model = build_image_model(name, num_classes)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("name", "expected", "tolerance"),
    [
        ("resnet8", 90_000, None),  # AALIG: "90K parameters"; accepted range 70k-110k
        ("wrn-16-4", 2.7e6, 0.1),  # Zagoruyko & Komodakis, Table 1
        ("wrn-40-4", 8.9e6, 0.1),
        ("densenet-40", 1.9e6, 0.1),  # DenseNet-BC L = 40, k = 40 (ALI-G/DFW "DN 40-40")
    ],
)
def test_parameter_counts(name: str, expected: float, tolerance: float | None) -> None:
    count = n_params(build_image_model(name, 10))
    if tolerance is None:
        assert 70_000 <= count <= 110_000
    else:
        assert abs(count - expected) <= tolerance * expected


def test_exact_parameter_counts() -> None:
    # the numbers quoted in the module docstring
    assert n_params(build_image_model("resnet8", 10)) == 78_042
    assert n_params(build_image_model("resnet8", 100)) == 83_892
    assert n_params(build_image_model("wrn-16-4", 10)) == 2_748_890
    assert n_params(build_image_model("densenet-40", 10)) == 1_901_930


def test_unknown_model_and_bad_dropout() -> None:
    with pytest.raises(ValueError, match="unknown image model 'vgg'"):
        build_image_model("vgg", 10)
    with pytest.raises(ValueError, match="dropout"):
        build_image_model("resnet8", 10, dropout=1.0)


def test_dropout_between_convs_and_in_channels() -> None:
    model = build_image_model("wrn-16-4", 10, in_channels=1, dropout=0.4)
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates == {0.4}
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    # eval mode switches dropout off: deterministic outputs
    model.eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x), model(x))


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    model = build_image_model("wrn-40-4", 10)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 256)
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(bn.weight == 1) and torch.all(bn.bias == 0) for bn in bns)


def test_cross_entropy_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=generator)
    targets = torch.randint(0, 5, (7,), generator=generator)
    expected = F.cross_entropy(logits, targets, reduction="none")
    assert torch.equal(per_sample_cross_entropy(logits, targets), expected)
    assert PER_SAMPLE_LOSSES["ce"] is per_sample_cross_entropy


def test_hinge_by_hand() -> None:
    logits = torch.tensor(
        [
            [1.0, 2.0, 0.5],  # y=0: max(0, 1+2-1, 1+0.5-1) = 2
            [3.0, 1.0, 2.5],  # y=0: max(0, 1+1-3, 1+2.5-3) = 0.5
            [0.0, 0.0, 0.0],  # y=2: max(1, 1, 0) = 1
            [5.0, 0.0, 0.0],  # y=0: separated by more than the margin -> 0
        ],
        requires_grad=True,
    )
    targets = torch.tensor([0, 0, 2, 0])
    loss = per_sample_multiclass_hinge(logits, targets)
    assert torch.allclose(loss, torch.tensor([2.0, 0.5, 1.0, 0.0]))
    assert torch.allclose(
        per_sample_multiclass_hinge(logits, targets, margin=2.0), torch.tensor([3.0, 1.5, 2.0, 0.0])
    )
    assert PER_SAMPLE_LOSSES["hinge"] is per_sample_multiclass_hinge
    # subgradient of row 0: +1 on the violating class 1, −1 on the true class 0
    loss.sum().backward()
    assert torch.equal(logits.grad[0], torch.tensor([-1.0, 1.0, 0.0]))
    assert torch.equal(logits.grad[3], torch.zeros(3))


def test_hinge_non_negative_and_shape_checked() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = 10 * torch.randn(100, 10, generator=generator)
    targets = torch.randint(0, 10, (100,), generator=generator)
    assert (per_sample_multiclass_hinge(logits, targets) >= 0).all()
    with pytest.raises(ValueError, match="expected logits"):
        per_sample_multiclass_hinge(logits, targets[:5])
