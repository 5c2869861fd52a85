"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", Table 1), with torchvision's module names so published weights load unchanged.

One builder reads a small table per configuration. Every model is laid out as torchvision lays
out ``vgg11`` ... ``vgg19_bn``: ``features.N`` (convs, [BatchNorm], ReLUs, pools, numbered in
order), an adaptive 7x7 ``avgpool`` (the identity at the paper's 224x224 input; it keeps the
classifier's 25088 inputs at other sizes), and ``classifier.N``. Configurations A-LRN and C are
not in torchvision and follow the same naming.

Registered models (the loop at the end registers each configuration plain and with BatchNorm):

- A: ``vgg11``, ``vgg11-bn``
- A-LRN: ``vgg11-lrn``, ``vgg11-lrn-bn``
- B: ``vgg13``, ``vgg13-bn``
- C: ``vgg16-c``, ``vgg16-c-bn``
- D: ``vgg16``, ``vgg16-bn``
- E: ``vgg19``, ``vgg19-bn``
"""

from __future__ import annotations

from ..errors import CnnlabError
from ..layers import LRN, AdaptiveAvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, Layer, MaxPool, ReLU
from ..network import Network, Node, seq
from . import register

PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition"
WIDTHS = (64, 128, 256, 512, 512)  # filters of the five conv stacks, each ending in a 2x2/2 max-pool

# Table 1: the kernel size of each conv layer, stack by stack ("conv1-256" of C is a 1x1 conv).
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}

# Table 3, single-scale evaluation at S = Q = 256 (ILSVRC-2012 validation), error rates.
ACCURACY = {
    "A": "ILSVRC-2012 val top-1 error 29.6%, top-5 error 10.4% (single scale, S=Q=256; Table 3)",
    "A-LRN": "ILSVRC-2012 val top-1 error 29.7%, top-5 error 10.5% (single scale, S=Q=256; Table 3)",
    "B": "ILSVRC-2012 val top-1 error 28.7%, top-5 error 9.9% (single scale, S=Q=256; Table 3)",
    "C": "ILSVRC-2012 val top-1 error 28.1%, top-5 error 9.4% (single scale, S=Q=256; Table 3)",
    "D": "ILSVRC-2012 val top-1 error 27.0%, top-5 error 8.8% (single scale, S=Q=256; Table 3)",
    "E": "ILSVRC-2012 val top-1 error 27.3%, top-5 error 9.0% (single scale, S=Q=256; Table 3)",
}


def indexed(name: str, layers: list[Layer]) -> Node:
    """A sequence whose children are named 0, 1, 2, ... (torch.nn.Sequential's own names)."""
    return seq(name, *(ly.with_name(str(i)) for i, ly in enumerate(layers)))


def vgg(config: str = "D", batch_norm: bool = False, lrn: bool = False, num_classes: int = 1000,
        in_channels: int = 3) -> Network:
    """VGG configuration ``config`` (A-E of Table 1). ``lrn`` adds the A-LRN normalisation after
    the first conv; ``batch_norm`` puts a BatchNorm between each conv and its ReLU (torchvision's
    ``_bn`` models, which keep the conv biases)."""
    if config not in CONFIGS:
        raise CnnlabError(f"VGG configuration '{config}' does not exist: use one of {', '.join(CONFIGS)}")
    if num_classes < 1 or in_channels < 1:
        raise CnnlabError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    features: list[Layer] = []
    for width, kernels in zip(WIDTHS, CONFIGS[config]):
        for k in kernels:
            features.append(Conv(filters=width, kernel=k, padding=k // 2))
            if batch_norm:
                features.append(BatchNorm())
            features.append(ReLU())
            if lrn and not any(isinstance(f, LRN) for f in features):
                # A-LRN: LRN after the first conv layer, with AlexNet's constants (the paper cites them)
                features.append(LRN(size=5, alpha=1e-4, beta=0.75, k=2.0))
        features.append(MaxPool(kernel=2, stride=2))
    classifier: list[Layer] = [
        Dense(units=4096), ReLU(), Dropout(p=0.5),
        Dense(units=4096), ReLU(), Dropout(p=0.5),
        Dense(units=num_classes),
    ]
    layers = (indexed("features", features), AdaptiveAvgPool(name="avgpool", output=7), Flatten(name="flatten"),
              indexed("classifier", classifier))
    return Network(f"vgg-{config}", layers, (in_channels, 224, 224))


_MODELS = (  # name, configuration, LRN, layer count for the description
    ("vgg11", "A", False, 11), ("vgg11-lrn", "A", True, 11), ("vgg13", "B", False, 13),
    ("vgg16-c", "C", False, 16), ("vgg16", "D", False, 16), ("vgg19", "E", False, 19),
)

for _name, _cfg, _lrn, _depth in _MODELS:
    _label = "A-LRN" if _lrn else _cfg
    _kinds = "with 1x1 convs in stacks 3-5, " if _cfg == "C" else ""
    register(_name, paper=PAPER, year=2014, input=(3, 224, 224), accuracy=ACCURACY[_label],
             description=f"configuration {_label}: {_depth} weight layers, {_kinds}3x3 convs, FC 4096-4096",
             config=_cfg, lrn=_lrn)(vgg)
    register(f"{_name}-bn", paper=f"{PAPER} (with batch normalization, as torchvision's _bn models)", year=2014,
             input=(3, 224, 224), description=f"configuration {_label} with BatchNorm after every conv",
             config=_cfg, lrn=_lrn, batch_norm=True)(vgg)
