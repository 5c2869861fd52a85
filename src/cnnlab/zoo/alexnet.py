"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks", Section 3 and Figure 2)."""

from __future__ import annotations

from ..layers import LRN, Conv, Dense, Dropout, Flatten, MaxPool, ReLU, Softmax
from ..network import Network
from . import register

PAPER = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks"


def _head(num_classes: int) -> list:
    return [
        Flatten(name="flatten"),
        Dropout(name="drop6", p=0.5), Dense(name="fc6", units=4096), ReLU(name="relu6"),
        Dropout(name="drop7", p=0.5), Dense(name="fc7", units=4096), ReLU(name="relu7"),
        Dense(name="fc8", units=num_classes), Softmax(name="softmax"),
    ]


@register("alexnet", paper=PAPER, year=2012, input=(3, 227, 227), accuracy="ILSVRC-2010 top-1 62.5%, top-5 83.0%",
          description="as published: two GPU towers (grouped conv2/4/5), LRN, overlapping pooling")
def alexnet(num_classes: int = 1000, in_channels: int = 3) -> Network:
    # The paper says 224x224 but its arithmetic needs 227 for the 55x55 conv1 maps.
    # Conv2, conv4 and conv5 only see the kernel maps on their own GPU: groups=2.
    layers = [
        Conv(name="conv1", filters=96, kernel=11, stride=4), ReLU(name="relu1"),
        LRN(name="norm1", size=5, alpha=1e-4, beta=0.75, k=2.0), MaxPool(name="pool1", kernel=3, stride=2),
        Conv(name="conv2", filters=256, kernel=5, padding=2, groups=2), ReLU(name="relu2"),
        LRN(name="norm2", size=5, alpha=1e-4, beta=0.75, k=2.0), MaxPool(name="pool2", kernel=3, stride=2),
        Conv(name="conv3", filters=384, kernel=3, padding=1), ReLU(name="relu3"),
        Conv(name="conv4", filters=384, kernel=3, padding=1, groups=2), ReLU(name="relu4"),
        Conv(name="conv5", filters=256, kernel=3, padding=1, groups=2), ReLU(name="relu5"),
        MaxPool(name="pool5", kernel=3, stride=2),
        *_head(num_classes),
    ]
    return Network("alexnet", tuple(layers), (in_channels, 227, 227))


@register("alexnet-onetower", paper=PAPER, year=2012, input=(3, 227, 227),
          description="ungrouped AlexNet of the usual layer tables (conv, pool, norm order)")
def alexnet_onetower(num_classes: int = 1000, in_channels: int = 3) -> Network:
    layers = [
        Conv(name="conv1", filters=96, kernel=11, stride=4), ReLU(name="relu1"),
        MaxPool(name="pool1", kernel=3, stride=2), LRN(name="norm1"),
        Conv(name="conv2", filters=256, kernel=5, padding=2), ReLU(name="relu2"),
        MaxPool(name="pool2", kernel=3, stride=2), LRN(name="norm2"),
        Conv(name="conv3", filters=384, kernel=3, padding=1), ReLU(name="relu3"),
        Conv(name="conv4", filters=384, kernel=3, padding=1), ReLU(name="relu4"),
        Conv(name="conv5", filters=256, kernel=3, padding=1), ReLU(name="relu5"),
        MaxPool(name="pool5", kernel=3, stride=2),
        *_head(num_classes),
    ]
    return Network("alexnet-onetower", tuple(layers), (in_channels, 227, 227))


@register("alexnet-tv", paper="Krizhevsky, One weird trick for parallelizing convolutional neural networks; "
          "torchvision's AlexNet", year=2014, input=(3, 224, 224),
          accuracy="torchvision IMAGENET1K_V1 weights: top-1 56.522%, top-5 79.066% (224 crop)",
          description="torchvision's one-tower AlexNet: 64-192-384-256-256 filters, no LRN, adaptive 6x6 pool; "
          "loads torchvision weights")
def alexnet_tv(num_classes: int = 1000, in_channels: int = 3) -> Network:
    # Module names are torchvision's (features.0, classifier.1, ...), so its state_dict loads unchanged.
    from ..layers import AdaptiveAvgPool
    from .vgg import indexed

    features = [
        Conv(filters=64, kernel=11, stride=4, padding=2), ReLU(), MaxPool(kernel=3, stride=2),
        Conv(filters=192, kernel=5, padding=2), ReLU(), MaxPool(kernel=3, stride=2),
        Conv(filters=384, kernel=3, padding=1), ReLU(),
        Conv(filters=256, kernel=3, padding=1), ReLU(),
        Conv(filters=256, kernel=3, padding=1), ReLU(), MaxPool(kernel=3, stride=2),
    ]
    classifier = [Dropout(p=0.5), Dense(units=4096), ReLU(), Dropout(p=0.5), Dense(units=4096), ReLU(),
                  Dense(units=num_classes)]
    layers = (indexed("features", features), AdaptiveAvgPool(name="avgpool", output=6), Flatten(name="flatten"),
              indexed("classifier", classifier))
    return Network("alexnet-tv", layers, (in_channels, 224, 224))
