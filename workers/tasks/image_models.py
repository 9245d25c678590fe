"""Convolutional networks for 32×32 image classification (CIFAR-10/100, SVHN).

``build_image_model(name, num_classes, in_channels, dropout)`` looks ``name`` up in
``IMAGE_MODELS``. Every network maps ``[B, in_channels, 32, 32]`` to logits ``[B, num_classes]``
and ends with global average pooling, so it also accepts other sizes divisible by 4.

Architectures (parameter counts for 10 / 100 classes, 3 input channels):

- ``resnet8``: the CIFAR ResNet of He et al. (2016, §4.2) with depth 6n+2 = 8 (n = 1): a 3×3
  stem conv with 16 channels, three stages of one basic block (widths 16, 32, 64; stride 2 at the
  start of stages 2 and 3), global average pooling and a linear classifier. Basic block:
  conv3×3-BN-ReLU-conv3×3-BN plus the shortcut, then ReLU; the shortcut is a 1×1 strided conv + BN
  where the width changes ("option B"). 78,042 / 83,892 parameters. The AALIG paper quotes
  "90K parameters with 16 channels in the first layer" for its 8-layer ResNet without giving
  the layout; no standard 8-layer layout with a 16-channel stem reaches exactly 90k (option A,
  zero-padding shortcuts, gives 75,290), so we keep the textbook one.
- ``wrn-16-4`` and ``wrn-40-4``: wide residual networks WRN-d-k of Zagoruyko & Komodakis
  (2016): a 3×3 stem conv with 16 channels, three groups of n = (d − 4) / 6 pre-activation blocks
  of widths 16k, 32k, 64k (stride 2 at groups 2 and 3), then BN-ReLU, global average pooling and
  a linear classifier. Block: BN-ReLU-conv3×3-BN-ReLU-dropout-conv3×3 plus the shortcut, which
  is the identity or, where the shape changes, a 1×1 strided conv of the pre-activated input.
  WRN-16-4: 2,748,890 / 2,772,020 parameters; WRN-40-4: 8,949,210 / 8,972,340 (the paper's
  2.7M and 8.9M).
- ``densenet-40``: the "bottleneck DenseNet 40-40" of the ALI-G paper (§5.4) and of the DFW
  paper's code, i.e. DenseNet-BC (Huang et al., 2017) with depth L = 40 and growth rate k = 40
  (not the original DenseNet-40 with k = 12 and no bottleneck, 1.0M parameters): a 3×3 stem conv
  with 2k channels, three dense blocks of (L − 4) / 6 = 6 bottleneck layers
  (BN-ReLU-conv1×1 to 4k channels-dropout-BN-ReLU-conv3×3 to k channels-dropout, concatenated to
  the input), transitions BN-ReLU-conv1×1 halving the channels-dropout-avgpool2×2 between
  blocks, then BN-ReLU, global average pooling and a linear classifier. 1,901,930 / 1,941,620
  parameters (the ALI-G/DFW code builds the same network, minus the classifier's bias).

Initialisation: Kaiming normal for every convolution (fan-out, ReLU gain: the He et al.
initialisation the reference implementations use), BN weight 1 and bias 0, linear layers with
PyTorch's default weight and a zero bias. ``dropout`` (a probability) sits between the two convs
of every residual block (WRN, and ResNet-8 for uniformity) and after every DenseNet conv, as in
the papers; 0 disables it.
"""

from collections.abc import Callable

import torch
from torch import nn

ModelBuilder = Callable[[int, int, float], nn.Module]  # (num_classes, in_channels, dropout)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # no bias: every conv is followed (or, pre-activation, preceded) by a BN with its own shift
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _kaiming_init(model: nn.Module) -> None:
    """He et al. (2015) normal init for convs; BN = identity; zero linear biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class _Head(nn.Module):
    """Global average pooling and a linear classifier (optionally after a final BN-ReLU)."""

    def __init__(self, channels: int, num_classes: int, pre_activation: bool) -> None:
        super().__init__()
        self.norm: nn.Module = (
            nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            if pre_activation
            else nn.Identity()
        )
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """He et al.'s post-activation basic block: ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut x)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of depth 6n + 2 (He et al., 2016, §4.2) with widths 16, 32, 64."""

    def __init__(
        self, depth: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        widths = (16, 32, 64)
        self.stem = nn.Sequential(
            _conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, width, stride, dropout))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.head = _Head(channels, num_classes, pre_activation=False)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class PreActBlock(nn.Module):
    """WRN block: conv(dropout(ReLU(BN(conv(ReLU(BN x)))))) + shortcut, no final activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.projection: nn.Module | None = (
            _conv1x1(in_channels, out_channels, stride)
            if stride != 1 or in_channels != out_channels
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input (Zagoruyko & Komodakis's layout);
        # an identity shortcut carries the raw x, keeping the residual stream unnormalised
        shortcut = x if self.projection is None else self.projection(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen (Zagoruyko & Komodakis, 2016): pre-activation blocks, widths 16k/32k/64k."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        self.stem = _conv3x3(in_channels, 16)
        layers: list[nn.Module] = []
        channels = 16
        for group, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for block in range(blocks):
                stride = 2 if group > 0 and block == 0 else 1
                layers.append(PreActBlock(channels, width, stride, dropout))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.head = _Head(channels, num_classes, pre_activation=True)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class DenseLayer(nn.Module):
    """DenseNet-BC bottleneck layer: concat(x, conv3×3(BN-ReLU(conv1×1(BN-ReLU x))))."""

    def __init__(self, in_channels: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            _conv1x1(in_channels, 4 * growth),
            nn.Dropout(dropout),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(inplace=True),
            _conv3x3(4 * growth, growth),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


class DenseNetBC(nn.Module):
    """DenseNet-BC (Huang et al., 2017) for 32×32 inputs: 3 dense blocks, compression 0.5."""

    def __init__(
        self,
        depth: int,
        growth: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
        compression: float = 0.5,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        layers_per_block = (depth - 4) // 6  # two convs per bottleneck layer
        channels = 2 * growth
        modules: list[nn.Module] = [_conv3x3(in_channels, channels)]
        for block in range(3):
            for _ in range(layers_per_block):
                modules.append(DenseLayer(channels, growth, dropout))
                channels += growth
            if block < 2:
                reduced = int(channels * compression)
                modules += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                    _conv1x1(channels, reduced),
                    nn.Dropout(dropout),
                    nn.AvgPool2d(2),
                ]
                channels = reduced
        self.features = nn.Sequential(*modules)
        self.head = _Head(channels, num_classes, pre_activation=True)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _builder(factory: Callable[..., nn.Module], **architecture: int) -> ModelBuilder:
    """A (num_classes, in_channels, dropout) -> model constructor for one fixed architecture."""

    def build(num_classes: int, in_channels: int, dropout: float) -> nn.Module:
        return factory(
            **architecture, num_classes=num_classes, in_channels=in_channels, dropout=dropout
        )

    return build


IMAGE_MODELS: dict[str, ModelBuilder] = {
    "resnet8": _builder(CifarResNet, depth=8),
    "wrn-16-4": _builder(WideResNet, depth=16, widen=4),
    "wrn-40-4": _builder(WideResNet, depth=40, widen=4),
    "densenet-40": _builder(DenseNetBC, depth=40, growth=40),
}


def build_image_model(
    name: str, num_classes: int, in_channels: int = 3, dropout: float = 0.0
) -> nn.Module:
    """A freshly initialised ``name`` network (see the module docstring for the architectures)."""
    try:
        builder = IMAGE_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown image model {name!r}; known: {sorted(IMAGE_MODELS)}") from None
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return builder(num_classes, in_channels, dropout)
