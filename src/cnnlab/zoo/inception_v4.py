"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2016,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning").

Every convolution is conv + BatchNorm + ReLU ("V" in the figures: no padding, else 'same'), except
the 1x1 "Linear" convolution closing each residual block: it has a bias and no BatchNorm, because
the paper normalizes "on top of the traditional layers, but not on top of the summations" (Sec. 3.2).
Residuals are scaled before the addition (Sec. 3.3, "between 0.1 and 0.3"); the factors are those
of the authors' TensorFlow-Slim release: 0.17 (35x35 blocks), 0.10 (17x17), 0.20 (8x8).

``inception-resnet-v2`` (alias ``inception-resnet-v2-tf``) is that TensorFlow-Slim release: the
network behind the published weights, built under this name by Keras, timm, Cadene's
pretrainedmodels and pytorchcv, and the one that fits Section 3.2's statement that
Inception-ResNet-v2 matches the raw cost of Inception-v4 (12.25G MACs here, 13.16G for it). It has a
different stem (a Mixed_5b module, 320 channels), 10/20/10 blocks, 1088 and 2080 channels and a
final 1x1 conv to 1536. ``inception-resnet-v2-paper`` reconstructs Figures 15-19 as drawn (5/10/5
blocks, 9.26G MACs, 0.76x Inception-v4); no trained network of that shape has been published.
"""

from __future__ import annotations

from ..layers import AvgPool, BatchNorm, Conv, Dense, Dropout, GlobalAvgPool, MaxPool, ReLU, Softmax
from ..network import Network, Node, Sequential, concat, residual, seq
from . import alias, register

PAPER = "Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"

Kernel = int | tuple[int, int]
# Residual scaling per grid (35x35, 17x17, 8x8).
SCALES = (0.17, 0.10, 0.20)


def _convs(*spec: tuple[int, Kernel] | tuple[int, Kernel, int, str]) -> list[Node]:
    """Conv-BN-ReLU triples from (filters, kernel[, stride, padding]); default stride 1, 'same'."""
    out: list[Node] = []
    for i, s in enumerate(spec, start=1):
        filters, kernel = s[0], s[1]
        stride, padding = (s[2], s[3]) if len(s) == 4 else (1, "same")
        out += [Conv(name=f"conv{i}", filters=filters, kernel=kernel, stride=stride, padding=padding, bias=False),
                BatchNorm(name=f"bn{i}", eps=1e-3), ReLU(name=f"relu{i}")]
    return out


def _branch(name: str, *spec: tuple[int, Kernel] | tuple[int, Kernel, int, str]) -> Sequential:
    return seq(name, *_convs(*spec))


def _split(name: str, first: tuple[int, Kernel], second: tuple[int, Kernel]) -> Node:
    """Figure 6's fan-out: two convolutions on the same input, concatenated."""
    return concat(name, _branch("a", first), _branch("b", second))


def _avg_proj(filters: int) -> Sequential:
    # TensorFlow 'same' average pooling leaves the padding out of the mean.
    return seq("branch_pool", AvgPool(name="pool", kernel=3, stride=1, padding="same", count_include_pad=False),
               *_convs((filters, 1)))


def _max_pool() -> Node:
    return seq("branch_pool", MaxPool(name="pool", kernel=3, stride=2))


V2 = (2, "valid")  # stride 2, no padding: the figures' "/2 V"
V1 = (1, "valid")  # the figures' "V"


# --------------------------------------------------------------------------- stems


def _stem_v4() -> Node:
    """Figure 3 (Inception-v4 and Inception-ResNet-v2): 299x299x3 -> 35x35x384."""
    return seq(
        "stem",
        *_convs((32, 3, *V2), (32, 3, *V1), (64, 3)),
        concat("mixed1", _max_pool(), _branch("branch3x3", (96, 3, *V2))),  # 73x73x160
        concat("mixed2", _branch("branch3x3", (64, 1), (96, 3, *V1)),
               _branch("branch7x7", (64, 1), (64, (7, 1)), (64, (1, 7)), (96, 3, *V1))),  # 71x71x192
        concat("mixed3", _branch("branch3x3", (192, 3, *V2)), _max_pool()),  # 35x35x384
    )


def _stem_resnet_v1() -> Node:
    """Figure 14 (Inception-ResNet-v1): 299x299x3 -> 35x35x256."""
    convs = _convs((32, 3, *V2), (32, 3, *V1), (64, 3), (80, 1), (192, 3, *V1), (256, 3, *V2))
    return seq("stem", *convs[:9], MaxPool(name="pool", kernel=3, stride=2), *convs[9:])


def _stem_tf() -> Node:
    """The TensorFlow-Slim Inception-ResNet-v2 stem: Figure 14's first five convolutions with a max pool
    each side of the last two, then a Mixed_5b module (96 + 64 + 96 + 64 = 320 channels at 35x35)."""
    convs = _convs((32, 3, *V2), (32, 3, *V1), (64, 3), (80, 1, *V1), (192, 3, *V1))
    return seq(
        "stem", *convs[:9], MaxPool(name="pool1", kernel=3, stride=2), *convs[9:],
        MaxPool(name="pool2", kernel=3, stride=2),
        concat("mixed_5b", _branch("branch1x1", (96, 1)), _branch("branch5x5", (48, 1), (64, 5)),
               _branch("branch3x3dbl", (64, 1), (96, 3), (96, 3)), _avg_proj(64)),
    )


# --------------------------------------------------------------------------- Inception-v4 modules


def _inception_a(name: str) -> Node:
    """Figure 4: 35x35x384 -> 35x35x384."""
    return concat(name, _avg_proj(96), _branch("branch1x1", (96, 1)), _branch("branch3x3", (64, 1), (96, 3)),
                  _branch("branch3x3dbl", (64, 1), (96, 3), (96, 3)))


def _inception_b(name: str) -> Node:
    """Figure 5: 17x17x1024 -> 17x17x1024."""
    return concat(name, _avg_proj(128), _branch("branch1x1", (384, 1)),
                  _branch("branch7x7", (192, 1), (224, (1, 7)), (256, (7, 1))),
                  _branch("branch7x7dbl", (192, 1), (192, (1, 7)), (224, (7, 1)), (224, (1, 7)), (256, (7, 1))))


def _inception_c(name: str) -> Node:
    """Figure 6: 8x8x1536 -> 8x8x1536."""
    return concat(
        name, _avg_proj(256), _branch("branch1x1", (256, 1)),
        seq("branch3x3", *_convs((384, 1)), _split("split", (256, (1, 3)), (256, (3, 1)))),
        seq("branch3x3dbl", *_convs((384, 1), (448, (1, 3)), (512, (3, 1))),
            _split("split", (256, (3, 1)), (256, (1, 3)))),
    )


def _reduction_a(k: int, l: int, m: int, n: int) -> Node:  # noqa: E741 (the paper's names)
    """Figure 7 with Table 1's k, l, m, n: 35x35 -> 17x17, adds n + m channels."""
    return concat("reduction_a", _max_pool(), _branch("branch3x3", (n, 3, *V2)),
                  _branch("branch3x3dbl", (k, 1), (l, 3), (m, 3, *V2)))


def _reduction_b_v4() -> Node:
    """Figure 8: 17x17x1024 -> 8x8x1536."""
    return concat("reduction_b", _max_pool(), _branch("branch3x3", (192, 1), (192, 3, *V2)),
                  _branch("branch7x7x3", (256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, *V2)))


def _reduction_b_resnet(c1: int, c2: int, c3: tuple[int, int]) -> Node:
    """Figures 12 and 18: 17x17 -> 8x8 with three convolution branches beside the pool."""
    return concat("reduction_b", _max_pool(), _branch("branch3x3a", (256, 1), (c1, 3, *V2)),
                  _branch("branch3x3b", (256, 1), (c2, 3, *V2)),
                  _branch("branch3x3dbl", (256, 1), (c3[0], 3), (c3[1], 3, *V2)))


# --------------------------------------------------------------------------- Inception-ResNet blocks


def _block(name: str, channels: int, branches: list[Node], scale: float, relu: bool = True) -> Node:
    """x + scale * Linear1x1(concat(branches(x))), then ReLU (Figures 10/11/13 and 16/17/19).
    The 1x1 convolution restores the input's channel count, so the sum is defined."""
    return residual(name, [concat("mixed", *branches), Conv(name="linear", filters=channels, kernel=1)],
                    post=[ReLU(name="relu")] if relu else [], scale=scale)


def _block_a(name: str, channels: int, widths: tuple[int, int, int, int, int, int], scale: float) -> Node:
    """Inception-ResNet-A (35x35): 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3."""
    w = widths
    return _block(name, channels, [_branch("branch1x1", (w[0], 1)), _branch("branch3x3", (w[1], 1), (w[2], 3)),
                                   _branch("branch3x3dbl", (w[3], 1), (w[4], 3), (w[5], 3))], scale)


def _block_b(name: str, channels: int, widths: tuple[int, int, int, int], scale: float) -> Node:
    """Inception-ResNet-B (17x17): 1x1; 1x1 -> 1x7 -> 7x1."""
    w = widths
    return _block(name, channels, [_branch("branch1x1", (w[0], 1)),
                                   _branch("branch7x7", (w[1], 1), (w[2], (1, 7)), (w[3], (7, 1)))], scale)


def _block_c(name: str, channels: int, widths: tuple[int, int, int, int], scale: float, relu: bool = True) -> Node:
    """Inception-ResNet-C (8x8): 1x1; 1x1 -> 1x3 -> 3x1."""
    w = widths
    return _block(name, channels, [_branch("branch1x1", (w[0], 1)),
                                   _branch("branch3x3", (w[1], 1), (w[2], (1, 3)), (w[3], (3, 1)))], scale, relu)


def _head(num_classes: int) -> list[Node]:
    """Figures 9 and 15: average pooling, dropout (keep 0.8), softmax."""
    return [GlobalAvgPool(name="avgpool"), Dropout(name="dropout", p=0.2), Dense(name="fc", units=num_classes),
            Softmax(name="softmax")]


# --------------------------------------------------------------------------- networks


@register("inception-v4", paper=PAPER, year=2016, input=(3, 299, 299),
          accuracy="single crop top-1 20.0% / top-5 5.0% error (Table 2)",
          description="Figure 9: stem, 4x Inception-A, Reduction-A, 7x Inception-B, Reduction-B, 3x Inception-C")
def inception_v4(num_classes: int = 1000, in_channels: int = 3) -> Network:
    layers: list[Node] = [
        _stem_v4(),
        *(_inception_a(f"inception_a{i}") for i in range(1, 5)),
        _reduction_a(192, 224, 256, 384),  # Table 1, Inception-v4
        *(_inception_b(f"inception_b{i}") for i in range(1, 8)),
        _reduction_b_v4(),
        *(_inception_c(f"inception_c{i}") for i in range(1, 4)),
        *_head(num_classes),
    ]
    return Network("inception-v4", tuple(layers), (in_channels, 299, 299))


@register("inception-resnet-v1", paper=PAPER, year=2016, input=(3, 299, 299),
          accuracy="single crop top-1 21.3% / top-5 5.5% error (Table 2)",
          description="Figure 15 with Figures 14, 10, 7, 11, 12, 13: 5/10/5 scaled residual Inception blocks, "
                      "1792 at 8x8, a 1792 -> classes head. Ports that count 23,995,624 parameters build FaceNet's "
                      "variant: a sixth, unscaled Inception-ResNet-C block and a 512-wide embedding before the classes")
def inception_resnet_v1(num_classes: int = 1000, in_channels: int = 3) -> Network:
    a, b, c = SCALES
    layers: list[Node] = [
        _stem_resnet_v1(),
        *(_block_a(f"inception_resnet_a{i}", 256, (32, 32, 32, 32, 32, 32), a) for i in range(1, 6)),
        _reduction_a(192, 192, 256, 384),  # Table 1, Inception-ResNet-v1: 256 + 384 + 256 = 896
        *(_block_b(f"inception_resnet_b{i}", 896, (128, 128, 128, 128), b) for i in range(1, 11)),
        _reduction_b_resnet(384, 256, (256, 256)),  # Figure 12: 896 + 384 + 256 + 256 = 1792
        *(_block_c(f"inception_resnet_c{i}", 1792, (192, 192, 192, 192), c) for i in range(1, 6)),
        *_head(num_classes),
    ]
    return Network("inception-resnet-v1", tuple(layers), (in_channels, 299, 299))


@register("inception-resnet-v2", paper=PAPER + " (TensorFlow-Slim release)", year=2016, input=(3, 299, 299),
          accuracy="single crop top-1 19.9% / top-5 4.9% error (Table 2); released weights: top-1 80.4%, top-5 95.3%",
          description="the released Inception-ResNet-v2 (TF-Slim, Keras, timm, the PyTorch ports): Mixed_5b stem, "
                      "10/20/10 blocks, 1088/2080 channels, 1x1 to 1536. Keras/TF count 55,813,192 trainable "
                      "parameters because TF-Slim's BatchNorm has no gamma (30,272 fewer); cnnlab counts the "
                      "PyTorch ports' affine BatchNorm")
def inception_resnet_v2(num_classes: int = 1000, in_channels: int = 3) -> Network:
    """The network of the authors' TensorFlow-Slim release, which its maintainers describe as the one
    the paper intended; Section 3.2 says Inception-ResNet-v2 costs about as much as Inception-v4."""
    a, b, c = SCALES
    layers: list[Node] = [
        _stem_tf(),
        *(_block_a(f"inception_resnet_a{i}", 320, (32, 32, 32, 32, 48, 64), a) for i in range(1, 11)),
        _reduction_a(256, 256, 384, 384),  # 320 + 384 + 384 = 1088
        *(_block_b(f"inception_resnet_b{i}", 1088, (192, 128, 160, 192), b) for i in range(1, 21)),
        _reduction_b_resnet(384, 288, (288, 320)),  # 1088 + 384 + 288 + 320 = 2080
        *(_block_c(f"inception_resnet_c{i}", 2080, (192, 192, 224, 256), c) for i in range(1, 10)),
        _block_c("inception_resnet_c10", 2080, (192, 192, 224, 256), 1.0, relu=False),  # unscaled, no ReLU
        seq("conv_7b", *_convs((1536, 1))),
        *_head(num_classes),
    ]
    return Network("inception-resnet-v2", tuple(layers), (in_channels, 299, 299))


alias("inception-resnet-v2-tf", "inception-resnet-v2")


@register("inception-resnet-v2-paper", paper=PAPER + " (figures as drawn)", year=2016, input=(3, 299, 299),
          description="Figure 15 with Figures 3, 16, 7, 17, 18, 19 as drawn: 5/10/5 scaled residual blocks. "
                      "Two widths are forced: Figure 17's '1154 Linear' is built as 1152 and Figure 19's "
                      "'2048 Linear' as 2144, because an identity residual needs its input's width. "
                      "No trained network of this shape exists, so no accuracy is given")
def inception_resnet_v2_paper(num_classes: int = 1000, in_channels: int = 3) -> Network:
    a, b, c = SCALES
    # Figure 17 labels its 1x1 "1154" and Figure 19 "2048"; the sum needs the input's width,
    # which Reduction-A (Table 1: 384 + 384 + 384 = 1152) and Figure 18 (1152 + 384 + 288 + 320 = 2144) set.
    layers: list[Node] = [
        _stem_v4(),
        *(_block_a(f"inception_resnet_a{i}", 384, (32, 32, 32, 32, 48, 64), a) for i in range(1, 6)),
        _reduction_a(256, 256, 384, 384),  # Table 1, Inception-ResNet-v2: 384 + 384 + 384 = 1152
        *(_block_b(f"inception_resnet_b{i}", 1152, (192, 128, 160, 192), b) for i in range(1, 11)),
        _reduction_b_resnet(384, 288, (288, 320)),
        *(_block_c(f"inception_resnet_c{i}", 2144, (192, 192, 224, 256), c) for i in range(1, 6)),
        *_head(num_classes),
    ]
    return Network("inception-resnet-v2-paper", tuple(layers), (in_channels, 299, 299))
