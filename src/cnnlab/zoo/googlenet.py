"""GoogLeNet (Inception v1) and BN-Inception (Inception v2).

- ``googlenet``: Szegedy et al. 2014, "Going Deeper with Convolutions", Table 1 and Figure 3
  (LRN, 5x5 branches, biases, dropout 0.4, two auxiliary classifiers of Section 5).
- ``googlenet-tv``: torchvision's ``googlenet``: BatchNorm units, 3x3 where the paper has 5x5,
  named so that its ``state_dict`` is torchvision's, key for key.
- ``bn-inception``: Ioffe & Szegedy 2015, "Batch Normalization", Figure 5 and the Appendix's text
  (the first layer a separable convolution with depth multiplier 8).
- ``bn-inception-caffe``: the widely used Caffe port: a plain 7x7 first layer, a bias on every
  convolution before its BatchNorm.
"""

from __future__ import annotations

from ..layers import (
    LRN,
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    ReLU,
    Softmax,
)
from ..network import Network, Node, Sequential, aux, concat, seq
from . import register

PAPER_V1 = "Szegedy et al., Going Deeper with Convolutions"
PAPER_BN = "Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift"

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_TABLE1: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _pool(name: str) -> MaxPool:
    """torchvision's 3x3/2 max pools round up (as Caffe does): 112 -> 56 -> 28 -> 14 -> 7 at 224."""
    return MaxPool(name=name, kernel=3, stride=2, ceil_mode=True)


def _same_pool(name: str, stride: int = 2) -> MaxPool:
    """Figure 3's "MaxPool 3x3+2(S)": TensorFlow 'same' padding, out = ceil(n / stride) at any size."""
    return MaxPool(name=name, kernel=3, stride=stride, padding="same")


# --------------------------------------------------------------------------- GoogLeNet, as published


def _conv_relu(i: int, filters: int, kernel: int = 1) -> list[Node]:
    return [Conv(name=f"conv{i}", filters=filters, kernel=kernel, padding="same"), ReLU(name=f"relu{i}")]


def _v1_module(name: str, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> Node:
    """Figure 2(b): 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max pool -> 1x1, concatenated."""
    return concat(
        f"inception_{name}",
        seq("branch1x1", *_conv_relu(1, c1)),
        seq("branch3x3", *_conv_relu(1, r3), *_conv_relu(2, c3, 3)),
        seq("branch5x5", *_conv_relu(1, r5), *_conv_relu(2, c5, 5)),
        seq("branch_pool", _same_pool("pool", 1), *_conv_relu(1, proj)),
    )


def _v1_aux(name: str, num_classes: int) -> Node:
    """Section 5: 5x5/3 average pool, 1x1 conv 128 + ReLU, FC 1024 + ReLU, 70% dropout, linear classifier
    (its softmax is the loss' own; the head is discarded at inference)."""
    return aux(
        name,
        AvgPool(name="pool", kernel=5, stride=3),
        Conv(name="conv", filters=128, kernel=1), ReLU(name="relu_conv"),
        Flatten(name="flatten"),
        Dense(name="fc1", units=1024), ReLU(name="relu_fc1"),
        Dropout(name="dropout", p=0.7),
        Dense(name="fc2", units=num_classes),
    )


@register("googlenet", paper=PAPER_V1, year=2014, input=(3, 224, 224), accuracy="ILSVRC-2014 top-5 error 6.67% (7 models)",
          description="Table 1 as published: LRN, 5x5 branches, biases, dropout 0.4, optional auxiliary classifiers")
def googlenet(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False) -> Network:
    t = GOOGLENET_TABLE1
    # The paper does not give its LRN constants; these are the Caffe BVLC GoogLeNet's
    # (local_size 5, alpha 1e-4, beta 0.75, where Caffe divides alpha by the size and k is 1).
    lrn = {"size": 5, "alpha": 1e-4 / 5, "beta": 0.75, "k": 1.0}
    # Figure 3 marks every convolution and max pool "S" ('same' padding).
    layers: list[Node] = [
        Conv(name="conv1", filters=64, kernel=7, stride=2, padding="same"), ReLU(name="relu1"),
        _same_pool("pool1"), LRN(name="norm1", **lrn),
        Conv(name="conv2_reduce", filters=64, kernel=1), ReLU(name="relu2_reduce"),
        Conv(name="conv2", filters=192, kernel=3, padding="same"), ReLU(name="relu2"),
        LRN(name="norm2", **lrn), _same_pool("pool2"),
        _v1_module("3a", *t["3a"]), _v1_module("3b", *t["3b"]), _same_pool("pool3"),
        _v1_module("4a", *t["4a"]),
        *([_v1_aux("aux1", num_classes)] if aux_logits else []),
        _v1_module("4b", *t["4b"]), _v1_module("4c", *t["4c"]), _v1_module("4d", *t["4d"]),
        *([_v1_aux("aux2", num_classes)] if aux_logits else []),
        _v1_module("4e", *t["4e"]), _same_pool("pool4"),
        _v1_module("5a", *t["5a"]), _v1_module("5b", *t["5b"]),
        AvgPool(name="avgpool", kernel=7, stride=1), Flatten(name="flatten"),
        Dropout(name="dropout", p=0.4), Dense(name="fc", units=num_classes), Softmax(name="softmax"),
    ]
    return Network("googlenet", tuple(layers), (in_channels, 224, 224))


# --------------------------------------------------------------------------- torchvision's GoogLeNet


def _tv_unit(name: str, filters: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> Sequential:
    """torchvision's BasicConv2d: conv without bias, BatchNorm (eps 0.001), ReLU."""
    return seq(name, Conv(name="conv", filters=filters, kernel=kernel, stride=stride, padding=padding, bias=False),
               BatchNorm(name="bn", eps=1e-3), ReLU(name="relu"))


def _tv_module(name: str, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> Node:
    # torchvision keeps the paper's widths but its "5x5" branch is a 3x3 convolution (as in the
    # TensorFlow weights it ports), and its pool branch pools with ceil_mode.
    return concat(
        name,
        _tv_unit("branch1", c1),
        seq("branch2", _tv_unit("0", r3), _tv_unit("1", c3, 3, padding=1)),
        seq("branch3", _tv_unit("0", r5), _tv_unit("1", c5, 3, padding=1)),
        seq("branch4", MaxPool(name="0", kernel=3, stride=1, padding=1, ceil_mode=True), _tv_unit("1", proj)),
    )


def _tv_aux(name: str, num_classes: int) -> Node:
    return aux(
        name,
        AdaptiveAvgPool(name="pool", output=4),
        _tv_unit("conv", 128),
        Flatten(name="flatten"),
        Dense(name="fc1", units=1024), ReLU(name="relu"),
        Dropout(name="dropout", p=0.7),
        Dense(name="fc2", units=num_classes),
    )


@register("googlenet-tv", paper=PAPER_V1 + " (torchvision variant)", year=2014, input=(3, 224, 224),
          accuracy="torchvision weights: top-1 69.778%, top-5 89.53%",
          description="torchvision's googlenet: BatchNorm, 3x3 for 5x5, its state_dict names; aux heads optional")
def googlenet_tv(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False) -> Network:
    t = GOOGLENET_TABLE1
    layers: list[Node] = [
        _tv_unit("conv1", 64, 7, stride=2, padding=3), _pool("maxpool1"),
        _tv_unit("conv2", 64), _tv_unit("conv3", 192, 3, padding=1), _pool("maxpool2"),
        _tv_module("inception3a", *t["3a"]), _tv_module("inception3b", *t["3b"]), _pool("maxpool3"),
        _tv_module("inception4a", *t["4a"]),
        *([_tv_aux("aux1", num_classes)] if aux_logits else []),
        _tv_module("inception4b", *t["4b"]), _tv_module("inception4c", *t["4c"]),
        _tv_module("inception4d", *t["4d"]),
        *([_tv_aux("aux2", num_classes)] if aux_logits else []),
        _tv_module("inception4e", *t["4e"]),
        MaxPool(name="maxpool4", kernel=2, stride=2, ceil_mode=True),
        _tv_module("inception5a", *t["5a"]), _tv_module("inception5b", *t["5b"]),
        AdaptiveAvgPool(name="avgpool", output=1), Flatten(name="flatten"),
        Dropout(name="dropout", p=0.2), Dense(name="fc", units=num_classes),
    ]
    return Network("googlenet-tv", tuple(layers), (in_channels, 224, 224))


# --------------------------------------------------------------------------- BN-Inception

# Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj (0: pass through).
# Stride-2 modules (3c, 4e) have no 1x1 branch and pass the pooled input through.
BN_INCEPTION_FIG5: dict[str, tuple[int, int, int, int, int, str, int]] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (0, 128, 160, 64, 96, "max", 0),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (0, 128, 192, 192, 256, "max", 0),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}


def _cbr(i: int, filters: int, kernel: int = 1, stride: int = 1, bias: bool = False) -> list[Node]:
    """Conv (no bias as published: BatchNorm's beta replaces it, Section 3.2), BatchNorm, ReLU. 'same'
    padding keeps the stride-2 branches of 3c/4e the size of their pool at odd sizes too."""
    return [Conv(name=f"conv{i}", filters=filters, kernel=kernel, stride=stride, padding="same", bias=bias),
            BatchNorm(name=f"bn{i}", eps=1e-3), ReLU(name=f"relu{i}")]


def _bn_module(name: str, c1: int, r3: int, c3: int, rd: int, cd: int, pool: str, proj: int,
               bias: bool = False) -> Node:
    stride = 1 if c1 else 2
    branches: list[Node] = []
    if c1:
        branches.append(seq("branch1x1", *_cbr(1, c1, bias=bias)))
    branches.append(seq("branch3x3", *_cbr(1, r3, bias=bias), *_cbr(2, c3, 3, stride, bias)))
    branches.append(seq("branch3x3dbl", *_cbr(1, rd, bias=bias), *_cbr(2, cd, 3, bias=bias),
                        *_cbr(3, cd, 3, stride, bias)))
    if stride == 2:
        branches.append(seq("branch_pool", _same_pool("pool")))
    else:
        p = (AvgPool(name="pool", kernel=3, stride=1, padding="same", count_include_pad=False) if pool == "avg"
             else _same_pool("pool", 1))
        branches.append(seq("branch_pool", p, *_cbr(1, proj, bias=bias)))
    return concat(f"inception_{name}", *branches)


def _separable_conv1(in_channels: int) -> list[Node]:
    """Figure 5's "convolution*" row, as the Appendix words it: "separable convolution with depth
    multiplier 8 on the first convolutional layer". A 7x7/2 depthwise convolution gives each input
    channel 8 maps (3 -> 24), a 1x1 convolution mixes them to 64; nothing sits between the two (as
    in a separable convolution), and BatchNorm and ReLU follow the pair. No biases."""
    return [Conv(name="conv1_depthwise", filters=8 * in_channels, kernel=7, stride=2, padding="same",
                 groups=in_channels, bias=False),
            *_cbr(1, 64)]


_BN_DESCRIPTION = ("Inception v2: BatchNorm after every conv, 5x5 as two 3x3, stride-2 modules 3c/4e, no dropout. "
                   "Figure 5's output-size column contradicts its filter columns at 3c, 4c, 4d and 4e "
                   "(3c: 28x28x576 for a stride-2 module; 4c, 4d: 576 where the filters give 608; "
                   "4e: 14x14x1024 for 7x7x1056); the filter columns are followed")


@register("bn-inception-caffe", paper=PAPER_BN + " (Caffe port)", year=2015, input=(3, 224, 224), caffe=True,
          description=_BN_DESCRIPTION + ". The widely used Caffe port: a plain 7x7/2 first layer and a bias on "
                                        "every convolution before its BatchNorm")
@register("bn-inception", paper=PAPER_BN, year=2015, input=(3, 224, 224),
          accuracy="ensemble of 6 BN-Inception networks: 4.9% top-5 validation error",
          description=_BN_DESCRIPTION + ". First layer: a separable 7x7/2 convolution, depth multiplier 8 "
                                        "(3 -> 24 depthwise, 1x1 to 64), as the Appendix says")
def bn_inception(num_classes: int = 1000, in_channels: int = 3, caffe: bool = False) -> Network:
    """Ioffe & Szegedy 2015, Appendix and Figure 5; ``caffe`` builds the Caffe port's variant."""
    f = BN_INCEPTION_FIG5
    conv1 = _cbr(1, 64, 7, 2, bias=True) if caffe else _separable_conv1(in_channels)
    layers: list[Node] = [
        *conv1, _same_pool("pool1"),
        *_cbr(2, 64, bias=caffe), *_cbr(3, 192, 3, bias=caffe), _same_pool("pool2"),
        *(_bn_module(k, *v, bias=caffe) for k, v in f.items()),
        AvgPool(name="avgpool", kernel=7, stride=1), Flatten(name="flatten"),
        Dense(name="fc", units=num_classes), Softmax(name="softmax"),
    ]
    return Network("bn-inception-caffe" if caffe else "bn-inception", tuple(layers), (in_channels, 224, 224))
