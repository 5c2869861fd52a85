"""Small networks from the worked notebooks: each reproduces a model the notebooks build and train."""

from __future__ import annotations

from ..layers import LRN, BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, ReLU, Sigmoid, Softmax
from ..network import Network
from . import register


@register("lenet-rgb8", paper="LeNet-like worked example: 32x32x3, 8 and 16 filters", year=2020,
          input=(3, 32, 32), description="conv5x5x8, pool, conv5x5x16, pool, FC 120-84-10")
def lenet_rgb8(num_classes: int = 10, in_channels: int = 3) -> Network:
    layers = [
        Conv(name="conv1", filters=8, kernel=5), ReLU(name="relu1"), MaxPool(name="pool1", kernel=2),
        Conv(name="conv2", filters=16, kernel=5), ReLU(name="relu2"), MaxPool(name="pool2", kernel=2),
        Flatten(name="flatten"),
        Dense(name="fc3", units=120), ReLU(name="relu3"),
        Dense(name="fc4", units=84), ReLU(name="relu4"),
        Dense(name="fc5", units=num_classes), Softmax(name="softmax"),
    ]
    return Network("lenet-rgb8", tuple(layers), (in_channels, 32, 32))


@register("alexnet-mnist", paper="AlexNet scaled down for MNIST (TensorFlow tutorial)", year=2016,
          input=(1, 28, 28), description="3x3 'same' convs 64-128-256, 3x3/2 'same' pools, LRN, FC 1024-1024")
def alexnet_mnist(num_classes: int = 10, in_channels: int = 1, keep_prob: float = 0.8) -> Network:
    layers: list = []
    for i, f in enumerate((64, 128, 256), start=1):
        layers += [
            Conv(name=f"conv{i}", filters=f, kernel=3, padding="same"), ReLU(name=f"relu{i}"),
            MaxPool(name=f"pool{i}", kernel=3, stride=2, padding="same"),
            # tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75): window 9, alpha not divided.
            LRN(name=f"norm{i}", size=9, alpha=0.001 / 9, beta=0.75, k=1.0),
            Dropout(name=f"drop{i}", p=round(1 - keep_prob, 6)),
        ]
    layers += [
        Flatten(name="flatten"),
        Dense(name="fc1", units=1024), ReLU(name="relu4"),
        Dense(name="fc2", units=1024), ReLU(name="relu5"),
        Dense(name="out", units=num_classes),
    ]
    return Network("alexnet-mnist", tuple(layers), (in_channels, 28, 28))


@register("mnist-cnn3", paper="Simple MNIST CNN (TensorFlow notebook): 3 conv + 3 dense", year=2018,
          input=(1, 28, 28), accuracy="about 97% MNIST test accuracy",
          description="5x5 'same' convs 32-64-128 with 2x2 'same' pools; dense 1024-2048-10 (linear, as written)")
def mnist_cnn3(num_classes: int = 10, in_channels: int = 1) -> Network:
    layers: list = []
    for i, f in enumerate((32, 64, 128), start=1):
        layers += [Conv(name=f"conv{i}", filters=f, kernel=5, padding="same"), ReLU(name=f"relu{i}"),
                   MaxPool(name=f"pool{i}", kernel=2, stride=2, padding="same")]
    # tf.layers.dense without an activation: the notebook's dense layers are linear.
    layers += [Flatten(name="flatten"), Dense(name="fc1", units=1024), Dense(name="fc2", units=2048),
               Dense(name="fc3", units=num_classes), Softmax(name="softmax")]
    return Network("mnist-cnn3", tuple(layers), (in_channels, 28, 28))


@register("alexnet-bn-flowers17", paper="AlexNet with BatchNorm for Oxford Flowers-17 (Keras)", year=2019,
          input=(3, 224, 224), description="valid convs 11/11/3/3/3, 2x2 pools, BatchNorm after each block, 17 classes")
def alexnet_bn_flowers17(num_classes: int = 17, in_channels: int = 3) -> Network:
    layers = [
        Conv(name="conv1", filters=96, kernel=11, stride=4), ReLU(name="relu1"),
        MaxPool(name="pool1", kernel=2), BatchNorm(name="bn1", eps=1e-3, momentum=0.01),
        Conv(name="conv2", filters=256, kernel=11), ReLU(name="relu2"),
        MaxPool(name="pool2", kernel=2), BatchNorm(name="bn2", eps=1e-3, momentum=0.01),
        Conv(name="conv3", filters=384, kernel=3), ReLU(name="relu3"), BatchNorm(name="bn3", eps=1e-3, momentum=0.01),
        Conv(name="conv4", filters=384, kernel=3), ReLU(name="relu4"), BatchNorm(name="bn4", eps=1e-3, momentum=0.01),
        Conv(name="conv5", filters=256, kernel=3), ReLU(name="relu5"),
        MaxPool(name="pool5", kernel=2), BatchNorm(name="bn5", eps=1e-3, momentum=0.01),
        Flatten(name="flatten"),
    ]
    for i, units in enumerate((4096, 4096, 1000), start=1):
        layers += [Dense(name=f"fc{i}", units=units), ReLU(name=f"relu_fc{i}"), Dropout(name=f"drop{i}", p=0.4),
                   BatchNorm(name=f"bn_fc{i}", eps=1e-3, momentum=0.01)]
    layers += [Dense(name="out", units=num_classes), Softmax(name="softmax")]
    return Network("alexnet-bn-flowers17", tuple(layers), (in_channels, 224, 224))


@register("cats-dogs-cnn", paper="Cats vs dogs CNN (TensorFlow tutorial), 150x150", year=2019,
          input=(3, 150, 150), description="3x3 convs 32-64-128-128 with 2x2 pools, dropout, dense 512, sigmoid")
def cats_dogs_cnn(num_classes: int = 1, in_channels: int = 3) -> Network:
    layers: list = []
    for i, f in enumerate((32, 64, 128, 128), start=1):
        layers += [Conv(name=f"conv{i}", filters=f, kernel=3), ReLU(name=f"relu{i}"), MaxPool(name=f"pool{i}", kernel=2)]
    layers += [Dropout(name="drop", p=0.5), Flatten(name="flatten"), Dense(name="fc1", units=512), ReLU(name="relu5"),
               Dense(name="out", units=num_classes),
               Sigmoid(name="sigmoid") if num_classes == 1 else Softmax(name="softmax")]
    return Network("cats-dogs-cnn", tuple(layers), (in_channels, 150, 150))
