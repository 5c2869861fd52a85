"""Inception v3 (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna 2015, "Rethinking the Inception
Architecture for Computer Vision"), as released with the paper's TensorFlow weights and ported by
torchvision: module and ``state_dict`` names are torchvision's ``inception_v3``, key for key.

Section 6 / Table 1 describe the design: a 299x299 input, 3x3 stem convolutions, three Figure 5
modules at 35x35 (5x5 as 1x1 -> 5x5 and two stacked 3x3), a grid reduction (Figure 10: stride-2
convolutions beside a pool), four Figure 6 modules at 17x17 (7x7 factorized into 1x7 and 7x1), a
second grid reduction and two Figure 7 modules at 8x8 (3x3 split into parallel 1x3 and 3x1). The
released network differs in detail from Table 1 (a 1x1 80 and a 3x3 192 convolution with a max pool
in the stem, 5x5 in the first modules, five 17x17 modules counting the reduction), and the auxiliary
classifier of Section 7 sits on top of the last 17x17 module.
"""

from __future__ import annotations

from ..layers import AdaptiveAvgPool, AvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, ReLU
from ..network import Network, Node, Sequential, aux, concat, seq
from . import register

PAPER = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision"

Pad = int | tuple[int, int]


def _unit(name: str, filters: int, kernel: Pad = 1, stride: int = 1, padding: Pad = 0) -> Sequential:
    """torchvision's BasicConv2d: conv without bias, BatchNorm (eps 0.001), ReLU."""
    return seq(name, Conv(name="conv", filters=filters, kernel=kernel, stride=stride, padding=padding, bias=False),
               BatchNorm(name="bn", eps=1e-3), ReLU(name="relu"))


def _chain(name: str, *nodes: Node) -> Sequential:
    """A branch whose units sit directly in the module (``Mixed_5b.branch5x5_1``, no branch level)."""
    return seq(name, *nodes, inline=True)


def _split(name: str, a: Node, b: Node) -> Node:
    """Figure 7's parallel 1x3 and 3x1 on one input, concatenated; torchvision registers both
    halves (``branch3x3_2a``/``_2b``) directly in the module."""
    return concat(name, a, b, inline=True)


def _avg_branch(filters: int) -> Sequential:
    return _chain("branch_pool", AvgPool(name="pool", kernel=3, stride=1, padding=1), _unit("branch_pool", filters))


def _a(name: str, pool_features: int) -> Node:
    """35x35 module (torchvision InceptionA): 1x1, 1x1->5x5, 1x1->3x3->3x3, avg pool->1x1."""
    return concat(
        name,
        _unit("branch1x1", 64),
        _chain("branch5x5", _unit("branch5x5_1", 48), _unit("branch5x5_2", 64, 5, padding=2)),
        _chain("branch3x3dbl", _unit("branch3x3dbl_1", 64), _unit("branch3x3dbl_2", 96, 3, padding=1),
               _unit("branch3x3dbl_3", 96, 3, padding=1)),
        _avg_branch(pool_features),
    )


def _b(name: str) -> Node:
    """35 -> 17 grid reduction (Figure 10; torchvision InceptionB)."""
    return concat(
        name,
        _unit("branch3x3", 384, 3, stride=2),
        _chain("branch3x3dbl", _unit("branch3x3dbl_1", 64), _unit("branch3x3dbl_2", 96, 3, padding=1),
               _unit("branch3x3dbl_3", 96, 3, stride=2)),
        MaxPool(name="pool", kernel=3, stride=2),
    )


def _c(name: str, c7: int) -> Node:
    """17x17 module with 7x7 factorized into 1x7 and 7x1 (Figure 6; torchvision InceptionC)."""
    return concat(
        name,
        _unit("branch1x1", 192),
        _chain("branch7x7", _unit("branch7x7_1", c7), _unit("branch7x7_2", c7, (1, 7), padding=(0, 3)),
               _unit("branch7x7_3", 192, (7, 1), padding=(3, 0))),
        _chain("branch7x7dbl", _unit("branch7x7dbl_1", c7), _unit("branch7x7dbl_2", c7, (7, 1), padding=(3, 0)),
               _unit("branch7x7dbl_3", c7, (1, 7), padding=(0, 3)),
               _unit("branch7x7dbl_4", c7, (7, 1), padding=(3, 0)),
               _unit("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))),
        _avg_branch(192),
    )


def _d(name: str) -> Node:
    """17 -> 8 grid reduction (torchvision InceptionD)."""
    return concat(
        name,
        _chain("branch3x3", _unit("branch3x3_1", 192), _unit("branch3x3_2", 320, 3, stride=2)),
        _chain("branch7x7x3", _unit("branch7x7x3_1", 192), _unit("branch7x7x3_2", 192, (1, 7), padding=(0, 3)),
               _unit("branch7x7x3_3", 192, (7, 1), padding=(3, 0)), _unit("branch7x7x3_4", 192, 3, stride=2)),
        MaxPool(name="pool", kernel=3, stride=2),
    )


def _e(name: str) -> Node:
    """8x8 module with expanded filter banks (Figure 7; torchvision InceptionE)."""
    return concat(
        name,
        _unit("branch1x1", 320),
        _chain("branch3x3", _unit("branch3x3_1", 384),
               _split("branch3x3_2", _unit("branch3x3_2a", 384, (1, 3), padding=(0, 1)),
                      _unit("branch3x3_2b", 384, (3, 1), padding=(1, 0)))),
        _chain("branch3x3dbl", _unit("branch3x3dbl_1", 448), _unit("branch3x3dbl_2", 384, 3, padding=1),
               _split("branch3x3dbl_3", _unit("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1)),
                      _unit("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0)))),
        _avg_branch(192),
    )


def _aux_head(num_classes: int) -> Node:
    """Section 7's auxiliary classifier on the 17x17x768 grid (torchvision InceptionAux)."""
    return aux(
        "AuxLogits",
        AvgPool(name="pool", kernel=5, stride=3),
        _unit("conv0", 128), _unit("conv1", 768, 5),
        AdaptiveAvgPool(name="avgpool", output=1), Flatten(name="flatten"),
        Dense(name="fc", units=num_classes),
    )


@register("inception-v3", paper=PAPER, year=2015, input=(3, 299, 299),
          accuracy="single crop top-1 21.2% / top-5 5.6% error (paper); torchvision weights top-1 77.294%",
          description="factorized 1xn/nx1 convolutions, grid reductions, optional aux head; torchvision's names")
def inception_v3(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False) -> Network:
    layers: list[Node] = [
        _unit("Conv2d_1a_3x3", 32, 3, stride=2), _unit("Conv2d_2a_3x3", 32, 3),
        _unit("Conv2d_2b_3x3", 64, 3, padding=1), MaxPool(name="maxpool1", kernel=3, stride=2),
        _unit("Conv2d_3b_1x1", 80), _unit("Conv2d_4a_3x3", 192, 3), MaxPool(name="maxpool2", kernel=3, stride=2),
        _a("Mixed_5b", 32), _a("Mixed_5c", 64), _a("Mixed_5d", 64),
        _b("Mixed_6a"),
        _c("Mixed_6b", 128), _c("Mixed_6c", 160), _c("Mixed_6d", 160), _c("Mixed_6e", 192),
        *([_aux_head(num_classes)] if aux_logits else []),
        _d("Mixed_7a"), _e("Mixed_7b"), _e("Mixed_7c"),
        AdaptiveAvgPool(name="avgpool", output=1), Dropout(name="dropout", p=0.5), Flatten(name="flatten"),
        Dense(name="fc", units=num_classes),
    ]
    return Network("inception-v3", tuple(layers), (in_channels, 299, 299))
