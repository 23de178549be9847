"""The four classifiers: input raw pixels [N, 1, 28, 28] in [0, 1], output logits [N, classes]."""

from __future__ import annotations

import torch
from torch import nn

from .layers import Normalize, conv_bn_relu

IMAGE_PIXELS = 28 * 28


class Classifier(nn.Module):
    """What the four share: ``forward`` returns ``logits(x)``, except that with ``flip_tta`` set
    an evaluating model (``.eval()``, and so the exported ONNX graph) returns the mean of the logits
    of each image and of its mirror image (flip test-time augmentation). Training passes see one
    view; classical augmentation is what shows the model mirror images.
    """

    flip_tta: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta and not self.training:
            # One pass over both views: [x; mirror(x)] -> [2, N, classes] -> mean over the views.
            return self.logits(torch.cat([x, x.flip(-1)])).unflatten(0, (2, -1)).mean(0)
        return self.logits(x)


class ShallowNN(Classifier):
    """One hidden layer MLP: the simplest baseline."""

    def __init__(self, num_classes: int, mean: float, std: float, hidden: int = 256,
                 flip_tta: bool = False):
        super().__init__()
        self.flip_tta = flip_tta
        self.normalize = Normalize(mean, std)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(IMAGE_PIXELS, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, num_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class DeepNN(Classifier):
    """A deeper MLP: Linear, BatchNorm, ReLU and Dropout per hidden layer."""

    def __init__(self, num_classes: int, mean: float, std: float,
                 hidden: tuple[int, ...] = (1024, 512, 256), dropout: float = 0.3,
                 flip_tta: bool = False):
        super().__init__()
        self.flip_tta = flip_tta
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [nn.Flatten()]
        width = IMAGE_PIXELS
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                       nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class CNN(Classifier):
    """A small modern CNN: conv-BN-ReLU stages that halve the resolution early (28, 14, 7).

    Pooling early keeps the FLOPs low (most time on CPU goes to the first full-resolution layer)
    and the measured accuracy is the same as with two convolutions at 28x28.
    """

    def __init__(self, num_classes: int, mean: float, std: float,
                 channels: tuple[int, ...] = (48, 96, 192), hidden: int = 256, dropout: float = 0.3,
                 flip_tta: bool = False):
        super().__init__()
        self.flip_tta = flip_tta
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = []
        c_in, size = 1, 28
        for c in channels:
            layers += [*conv_bn_relu(c_in, c), nn.MaxPool2d(2)]
            c_in, size = c, size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * size * size, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after the hidden layer's ReLU), used by the generator metrics."""
        return self.head[:4](self.features(self.normalize(x)))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits from ``embed``'s features: ``classify(embed(x)) == forward(x)``."""
        return self.head[4:](embedding)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with the same attribute names (and state-dict keys)."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's state-dict keys (conv1, bn1, layer1..4, fc).

    Adapted to small grayscale images without changing any parameter shape but conv1's input
    channels and fc's outputs: the 7x7 stem convolution keeps its shape but runs with
    ``stem_stride`` (2 instead of 2 + max-pool), so a 28x28 image reaches layer4 at 2x2 instead of
    vanishing. ImageNet weights load through ``load_torchvision_weights``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem_stride: int = 2,
                 stem_pool: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stem_stride, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_pool else nn.Identity()
        widths, c_in = (64, 128, 256, 512), 64
        for i, c in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c)))
            c_in = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class TransferLearningNN(Classifier, ResNet18):
    """ResNet-18 for 1-channel 28x28 images that starts from a pretrained backbone.

    The state dict has exactly torchvision's keys (normalisation buffers are not persistent).
    """

    def __init__(self, num_classes: int, mean: float, std: float, stem_stride: int = 2,
                 stem_pool: bool = False, flip_tta: bool = False):
        super().__init__(num_classes=num_classes, in_channels=1, stem_stride=stem_stride,
                         stem_pool=stem_pool)
        self.normalize = Normalize(mean, std)
        self.flip_tta = flip_tta

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ResNet18.forward(self, self.normalize(x))


def adapt_backbone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision or ganaug ResNet-18 state dict, made loadable into a 1-channel model.

    RGB stem filters are summed over their input channels (a grayscale image is R = G = B), and
    the classification head is dropped (its class count differs). Everything else must match.
    """
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    return state


CLASSIFIERS: dict[str, type[nn.Module]] = {
    "shallow": ShallowNN,
    "deep": DeepNN,
    "cnn": CNN,
    "transfer": TransferLearningNN,
}
# The <Architecture> part of run labels.
CLASSIFIER_NAMES = {"shallow": "ShallowNN", "deep": "DeepNN", "cnn": "CNN",
                    "transfer": "TransferLearningNN"}
