"""ResNet (He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition") and its
pre-activation form (He et al. 2016, "Identity Mappings in Deep Residual Networks").

One residual-unit builder serves every variant; the differences are parameters:

- ``stride_in_3x3``: the paper downsamples a bottleneck in its first 1x1 conv; torchvision's
  "v1.5" does it in the 3x3 (more accurate, about 6% more MACs for ResNet-50).
- ``shortcut``: the paper's options (Sec. 3.3): A zero-pads the identity (:class:`ChannelPad`,
  no parameters), B projects (1x1 conv + BatchNorm) only where the shape changes, C projects
  in every unit.
- ``preact``: BatchNorm and ReLU before each conv instead of after, so the shortcut path stays
  a pure identity (He et al. 2016, Fig. 1b).

Every model uses torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``), so the ``-tv`` models load torchvision weights unchanged.

Registered models (in loops over the depths, at the end of each section):

- ImageNet, paper layout: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``
- ImageNet, torchvision layout: ``resnet18-tv``, ``resnet34-tv``, ``resnet50-tv``, ``resnet101-tv``,
  ``resnet152-tv``
- ImageNet, pre-activation: ``resnet18-v2``, ``resnet34-v2``, ``resnet50-v2``, ``resnet101-v2``,
  ``resnet152-v2``, ``resnet200-v2``
- CIFAR-10 (Sec. 4.2): ``resnet20``, ``resnet32``, ``resnet44``, ``resnet56``, ``resnet110``, ``resnet1202``
- CIFAR-10, Keras pre-activation bottlenecks: ``resnet20-v2``, ``resnet29-v2``, ``resnet56-v2``,
  ``resnet110-v2``, ``resnet164-v2``, ``resnet1001-v2``
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import CnnlabError
from ..layers import AdaptiveAvgPool, AvgPool, BatchNorm, ChannelPad, Conv, Dense, Flatten, Layer, MaxPool, ReLU
from ..network import Network, Node, residual, seq
from . import register

PAPER = "He et al., Deep Residual Learning for Image Recognition"
PAPER_V2 = "He et al., Identity Mappings in Deep Residual Networks"
KERAS_V2 = f"{PAPER_V2}; bottleneck form of the Keras CIFAR-10 example (cifar10_resnet.py, resnet_v2)"


@dataclass(frozen=True)
class Style:
    """How the residual units are built (see the module docstring)."""

    bottleneck: bool = False
    stride_in_3x3: bool = False
    shortcut: str = "B"
    preact: bool = False
    shared_preact: bool = True  # pre-act: a stage's first unit and its projection share one BN-ReLU
    bias: bool = False  # conv biases (Keras' Conv2D default); BatchNorm makes them redundant
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1


@dataclass(frozen=True)
class Stage:
    units: int
    width: int  # filters of the 3x3 convs
    out: int  # channels leaving each unit
    stride: int


def _bn(st: Style, name: str) -> BatchNorm:
    return BatchNorm(name=name, eps=st.bn_eps, momentum=st.bn_momentum)


def _conv(st: Style, name: str, filters: int, kernel: int, stride: int = 1) -> Conv:
    return Conv(name=name, filters=filters, kernel=kernel, stride=stride, padding=kernel // 2, bias=st.bias)


def _shortcut(st: Style, cin: int, cout: int, stride: int) -> Node | None:
    if st.shortcut != "C" and stride == 1 and cin == cout:
        return None
    if st.shortcut == "A":
        return ChannelPad(name="downsample", channels=cout, stride=stride)
    if st.preact:  # the BN-ReLU before it is the unit's pre-activation
        return _conv(st, "downsample", cout, 1, stride)
    return seq("downsample", _conv(st, "0", cout, 1, stride), _bn(st, "1"))


def unit(name: str, cin: int, stage: Stage, stride: int, st: Style, preactivated: bool = False) -> Node:
    """One residual unit ``cin -> stage.out``. Post-activation (2015): conv-BN-ReLU ... conv-BN, add,
    ReLU. Pre-activation (2016): BN-ReLU-conv ... BN-ReLU-conv, add; ``preactivated`` drops the
    first BN-ReLU where the input already went through one."""
    w, out = stage.width, stage.out
    if st.bottleneck:
        s1, s2 = (1, stride) if st.stride_in_3x3 else (stride, 1)
        convs = [_conv(st, "conv1", w, 1, s1), _conv(st, "conv2", w, 3, s2), _conv(st, "conv3", out, 1)]
    else:
        convs = [_conv(st, "conv1", w, 3, stride), _conv(st, "conv2", out, 3)]
    body: list[Layer] = []
    post: list[Layer] = []
    for i, conv in enumerate(convs, start=1):
        if st.preact:
            if i > 1 or not preactivated:
                body += [_bn(st, f"bn{i}"), ReLU(name=f"relu{i}")]
            body.append(conv)
        else:
            body += [conv, _bn(st, f"bn{i}")]
            (body if i < len(convs) else post).append(ReLU(name=f"relu{i}"))
    return residual(name, body, _shortcut(st, cin, out, stride), post)


def stages(stem_out: int, specs: list[Stage], st: Style) -> list[Node]:
    """``layer1``, ``layer2``, ...: each a sequence of units named 0, 1, ..."""
    layers: list[Node] = []
    cin = stem_out
    for si, sp in enumerate(specs):
        nodes: list[Node] = []
        made: dict[tuple[int, int, bool], Node] = {}  # a stage's later units are one unit under many names
        for ui in range(sp.units):
            stride = sp.stride if ui == 0 else 1
            if not st.preact:
                pre = False
            elif st.shared_preact:
                # Identity Mappings, appendix: a stage's first unit and its projection shortcut both
                # take the pre-activated input; stage 1 gets it from the stem's BN-ReLU.
                pre = ui == 0
                if ui == 0 and si > 0:
                    nodes += [_bn(st, "preact_bn"), ReLU(name="preact_relu")]
            else:  # Keras: only the very first unit follows a BN-ReLU (the stem's)
                pre = si == 0 and ui == 0
            same = made.get((cin, stride, pre))
            if same is None:
                same = made[(cin, stride, pre)] = unit(str(ui), cin, sp, stride, st, preactivated=pre)
            nodes.append(same if same.name == str(ui) else replace(same, name=str(ui)))
            cin = sp.out
        layers.append(seq(f"layer{si + 1}", *nodes))
    return layers


def _check(num_classes: int, in_channels: int, shortcut: str) -> None:
    if num_classes < 1 or in_channels < 1:
        raise CnnlabError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    if shortcut not in ("A", "B", "C"):
        raise CnnlabError(f"shortcut '{shortcut}' does not exist: use 'A' (zero-padding identity), "
                          "'B' (projection where the shape changes) or 'C' (projection everywhere)")


# --------------------------------------------------------------------------- ImageNet

IMAGENET: dict[int, tuple[bool, tuple[int, int, int, int]]] = {  # depth -> (bottleneck, units per stage); Table 1
    18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),  # He et al. 2016, Sec. 5 (ImageNet)
}


def resnet(depth: int = 50, stride_in_3x3: bool = False, shortcut: str = "B", preact: bool = False,
           num_classes: int = 1000, in_channels: int = 3) -> Network:
    """ImageNet ResNet (Table 1): 7x7/2 conv, 3x3/2 max-pool, four stages at strides 4-32, global
    average pooling, fully connected classifier."""
    _check(num_classes, in_channels, shortcut)
    if depth not in IMAGENET:
        raise CnnlabError(f"no ImageNet ResNet of depth {depth}: use one of {', '.join(map(str, IMAGENET))}")
    bottleneck, counts = IMAGENET[depth]
    st = Style(bottleneck=bottleneck, stride_in_3x3=stride_in_3x3, shortcut=shortcut, preact=preact)
    exp = 4 if bottleneck else 1
    specs = [Stage(n, w, w * exp, 1 if i == 0 else 2) for i, (n, w) in enumerate(zip(counts, (64, 128, 256, 512)))]
    layers: list[Node] = [
        Conv(name="conv1", filters=64, kernel=7, stride=2, padding=3, bias=False), BatchNorm(name="bn1"),
        ReLU(name="relu"), MaxPool(name="maxpool", kernel=3, stride=2, padding=1),
        *stages(64, specs, st),
    ]
    if preact:  # the last unit's sum still needs its BN-ReLU (Identity Mappings, Sec. 4.1)
        layers += [BatchNorm(name="bn_final"), ReLU(name="relu_final")]
    layers += [AdaptiveAvgPool(name="avgpool", output=1), Flatten(name="flatten"),
               Dense(name="fc", units=num_classes)]
    return Network(f"resnet{depth}", tuple(layers), (in_channels, 224, 224))


# Table 3 of the paper: 10-crop testing, ILSVRC-2012 validation (ResNet-18: Table 2, option A).
_IMAGENET_ACC = {
    18: "ImageNet val top-1 error 27.88% (10-crop; Table 2, zero-padding shortcuts)",
    34: "ImageNet val top-1 error 24.52%, top-5 error 7.46% (10-crop, option B; Table 3)",
    50: "ImageNet val top-1 error 22.85%, top-5 error 6.71% (10-crop; Table 3)",
    101: "ImageNet val top-1 error 21.75%, top-5 error 6.05% (10-crop; Table 3)",
    152: "ImageNet val top-1 error 21.43%, top-5 error 5.71% (10-crop; Table 3)",
}
# torchvision's published IMAGENET1K_V1 weights (single 224 crop), from its model documentation.
_TV_ACC = {18: (69.758, 89.078), 34: (73.314, 91.42), 50: (76.13, 92.862), 101: (77.374, 93.546),
           152: (78.312, 94.046)}

for _d in (18, 34, 50, 101, 152):
    _kind = "bottleneck" if IMAGENET[_d][0] else "basic"
    register(f"resnet{_d}", paper=PAPER, year=2015, input=(3, 224, 224), accuracy=_IMAGENET_ACC[_d],
             description=f"{_kind} units {IMAGENET[_d][1]}, paper layout (bottleneck stride in the first 1x1), "
             "projection shortcuts where the shape changes", depth=_d)(resnet)
    _t1, _t5 = _TV_ACC[_d]
    register(f"resnet{_d}-tv", paper=f"{PAPER}; torchvision layout (v1.5)", year=2015, input=(3, 224, 224),
             accuracy=f"torchvision IMAGENET1K_V1 weights: top-1 {_t1}%, top-5 {_t5}% (224 crop)",
             description=f"{_kind} units {IMAGENET[_d][1]}, stride in the 3x3 conv; loads torchvision weights",
             depth=_d, stride_in_3x3=True)(resnet)

# Identity Mappings, Table 5 (single 320x320 crop, ILSVRC-2012 validation).
_V2_ACC = {152: "ImageNet val top-1 error 21.1%, top-5 error 5.5% (single 320 crop; Table 5)",
           200: "ImageNet val top-1 error 20.7%, top-5 error 5.3% (single 320 crop; Table 5)"}
for _d in (18, 34, 50, 101, 152, 200):
    register(f"resnet{_d}-v2", paper=PAPER_V2, year=2016, input=(3, 224, 224), accuracy=_V2_ACC.get(_d),
             description=f"full pre-activation units {IMAGENET[_d][1]} (BN-ReLU-conv), identity shortcut path",
             depth=_d, preact=True)(resnet)


# --------------------------------------------------------------------------- CIFAR-10


def resnet_cifar(depth: int = 20, shortcut: str = "A", num_classes: int = 10, in_channels: int = 3) -> Network:
    """CIFAR-10 ResNet of the paper's Sec. 4.2: a 3x3 conv with 16 filters, three stages of n basic
    units with 16, 32 and 64 filters on 32, 16 and 8 pixel maps (depth 6n + 2), global average
    pooling and a 10-way classifier. The paper uses option A shortcuts here."""
    _check(num_classes, in_channels, shortcut)
    if depth < 8 or (depth - 2) % 6:
        raise CnnlabError(f"CIFAR ResNet depth {depth} is not 6n + 2: use 20, 32, 44, 56, 110 or 1202")
    n = (depth - 2) // 6
    st = Style(shortcut=shortcut)
    specs = [Stage(n, w, w, 1 if i == 0 else 2) for i, w in enumerate((16, 32, 64))]
    layers: list[Node] = [
        Conv(name="conv1", filters=16, kernel=3, padding=1, bias=False), BatchNorm(name="bn1"), ReLU(name="relu"),
        *stages(16, specs, st),
        AdaptiveAvgPool(name="avgpool", output=1), Flatten(name="flatten"), Dense(name="fc", units=num_classes),
    ]
    return Network(f"resnet{depth}", tuple(layers), (in_channels, 32, 32))


# Table 6 of the paper: CIFAR-10 test error (ResNet-110: best of 5 runs; mean 6.61 +- 0.16).
_CIFAR_ACC = {20: "8.75", 32: "7.51", 44: "7.17", 56: "6.97", 110: "6.43", 1202: "7.93"}
for _d, _err in _CIFAR_ACC.items():
    register(f"resnet{_d}", paper=PAPER, year=2015, input=(3, 32, 32),
             accuracy=f"CIFAR-10 test error {_err}% (Table 6)",
             description=f"CIFAR-10, 6n+2 with n={(_d - 2) // 6}: 16-32-64 filters, option A shortcuts "
             "(shortcut='B' for projections)", depth=_d)(resnet_cifar)


def resnet_cifar_v2(depth: int = 56, num_classes: int = 10, in_channels: int = 3) -> Network:
    """Pre-activation bottleneck ResNet as the Keras CIFAR-10 example builds it (``resnet_v2``,
    depth 9n + 2): conv-BN-ReLU stem with 16 filters; three stages of n BN-ReLU-conv bottlenecks
    of width 16, 64 and 128 giving 64, 128 and 256 channels; a biased 1x1 projection on each
    stage's first unit (taking the raw sum, not the activated one); BN-ReLU, 8x8 average pool and
    the classifier. Keras defaults: conv biases, BatchNorm eps 1e-3 and momentum 0.99."""
    _check(num_classes, in_channels, "B")
    if depth < 11 or (depth - 2) % 9:
        raise CnnlabError(f"Keras CIFAR ResNet v2 depth {depth} is not 9n + 2: use 20, 29, 56, 110, 164 or 1001")
    n = (depth - 2) // 9
    st = Style(bottleneck=True, preact=True, shared_preact=False, bias=True, bn_eps=1e-3, bn_momentum=0.01)
    specs = [Stage(n, 16, 64, 1), Stage(n, 64, 128, 2), Stage(n, 128, 256, 2)]
    layers: list[Node] = [
        _conv(st, "conv1", 16, 3), _bn(st, "bn1"), ReLU(name="relu"),
        *stages(16, specs, st),
        _bn(st, "bn_final"), ReLU(name="relu_final"),
        AvgPool(name="avgpool", kernel=8), Flatten(name="flatten"), Dense(name="fc", units=num_classes),
    ]
    return Network(f"resnet{depth}-v2", tuple(layers), (in_channels, 32, 32))


# The Keras example's table: its own 200-epoch CIFAR-10 test accuracy.
_KERAS_ACC = {56: "CIFAR-10 test accuracy 93.01% (Keras example, 200 epochs)",
              110: "CIFAR-10 test accuracy 93.15% (Keras example, 200 epochs)"}
for _d in (20, 29, 56, 110, 164, 1001):
    register(f"resnet{_d}-v2", paper=KERAS_V2, year=2016, input=(3, 32, 32), accuracy=_KERAS_ACC.get(_d),
             description=f"CIFAR-10, pre-activation bottlenecks, 9n+2 with n={(_d - 2) // 9}", depth=_d)(resnet_cifar_v2)
