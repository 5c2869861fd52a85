"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition", Section II.B) and the Keras ReLU/max-pool version used in tutorials."""

from __future__ import annotations

from ..layers import RBF, Conv, Dense, Flatten, MaxPool, PartialConv, ReLU, ScaledTanh, Softmax, Subsample
from ..network import Network
from . import register

# Table I of the paper: the S2 maps (0-5) that each of C3's 16 maps reads.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


@register("lenet5", paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition", year=1998,
          input=(1, 32, 32), accuracy="MNIST test error 0.95%",
          description="faithful LeNet-5: trainable subsampling, C3 connection table, RBF output")
def lenet5(num_classes: int = 10, in_channels: int = 1) -> Network:
    layers = [
        Conv(name="c1", filters=6, kernel=5), ScaledTanh(name="c1_act"),       # 6@28x28
        Subsample(name="s2", kernel=2), ScaledTanh(name="s2_act"),           # 6@14x14
        PartialConv(name="c3", filters=16, kernel=5, table=C3_TABLE) if in_channels == 1
        else Conv(name="c3", filters=16, kernel=5),
        ScaledTanh(name="c3_act"),                                           # 16@10x10
        Subsample(name="s4", kernel=2), ScaledTanh(name="s4_act"),           # 16@5x5
        Conv(name="c5", filters=120, kernel=5), ScaledTanh(name="c5_act"),   # 120@1x1
        Flatten(name="flatten"),
        Dense(name="f6", units=84), ScaledTanh(name="f6_act"),
        RBF(name="output", units=num_classes),
    ]
    return Network("lenet5", tuple(layers), (in_channels, 32, 32))


@register("lenet5-relu", paper="LeNet-5 as a Keras Sequential model (ReLU, max pooling)", year=2017,
          input=(1, 28, 28), accuracy="MNIST test accuracy 98.57% after 20 epochs of Adam",
          description="the tutorials' LeNet: 28x28 input, ReLU, max pooling, 120-84-10")
def lenet5_relu(num_classes: int = 10, in_channels: int = 1) -> Network:
    layers = [
        Conv(name="conv1", filters=6, kernel=5), ReLU(name="relu1"), MaxPool(name="pool1", kernel=2),
        Conv(name="conv2", filters=16, kernel=5), ReLU(name="relu2"), MaxPool(name="pool2", kernel=2),
        Flatten(name="flatten"),
        Dense(name="fc1", units=120), ReLU(name="relu3"),
        Dense(name="fc2", units=84), ReLU(name="relu4"),
        Dense(name="fc3", units=num_classes), Softmax(name="softmax"),
    ]
    return Network("lenet5-relu", tuple(layers), (in_channels, 28, 28))
