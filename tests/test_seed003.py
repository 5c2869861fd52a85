"""Seed 003/004 tables: LeNet-5 layer by layer, the AlexNet table with its "forward computation"
column and conv-vs-FC row, the Keras LeNet and the BatchNorm AlexNet's Keras summary."""

from __future__ import annotations

from cnnlab import zoo
from cnnlab.analysis import analyze


def test_lenet5_parameters_and_connections() -> None:
    a = analyze(zoo.get("lenet5"))
    rows = {ly.name: (ly.output_shape, ly.params, ly.connections) for ly in a.layers if ly.params}
    assert rows == {
        "c1": ((6, 28, 28), 156, 122304),     # (5*5+1)*6, 156*28*28
        "s2": ((6, 14, 14), 12, 5880),        # 2*6, (2*2+1)*6*14*14
        "c3": ((16, 10, 10), 1516, 151600),   # Table I connections, 10*10*1516
        "s4": ((16, 5, 5), 32, 2000),
        "c5": ((120, 1, 1), 48120, 48120),
        "f6": ((84,), 10164, 10164),
        "output": ((10,), 840, 840),          # RBF: 84*10
    }
    # LeCun et al. 1998, Section II.B: 340,908 connections and 60,000 trainable parameters.
    assert a.totals["connections"] == 340908
    assert a.totals["params"] == 60840


def test_keras_lenet_total() -> None:
    a = analyze(zoo.get("lenet5-relu"))
    assert a.totals["params"] == 44426
    assert [ly.params for ly in a.layers if ly.params] == [156, 2416, 30840, 10164, 850]


# Seed 003 (and 004): "(11*11*3 + 1) * 96 = 34944" and "(11*11*3 + 1) * 96 * 55 * 55 = 105705600", ...
ALEXNET_CONV = {
    "conv1": (34944, 105705600), "conv2": (614656, 448084224), "conv3": (885120, 149585280),
    "conv4": (1327488, 224345472), "conv5": (884992, 149563648),
}
ALEXNET_FC_WEIGHTS = {"fc6": 37748736, "fc7": 16777216, "fc8": 4096000}


def test_alexnet_table_parameters_and_forward_computation() -> None:
    a = analyze(zoo.get("alexnet-onetower"))
    conv = {ly.name: (ly.params, ly.connections) for ly in a.layers if ly.type == "Conv"}
    assert conv == ALEXNET_CONV
    fc = {ly.name: ly.macs for ly in a.layers if ly.type == "Dense"}
    assert fc == ALEXNET_FC_WEIGHTS  # the table's FC "parameters" are weights without biases
    # "Overall: 62369152 = 62.3 million" parameters and "1135906176 = 1.1 billion" forward computation.
    assert sum(p for p, _ in ALEXNET_CONV.values()) + sum(fc.values()) == 62369152
    assert sum(c for _, c in ALEXNET_CONV.values()) + sum(fc.values()) == 1135906176
    # With the FC biases the one-tower AlexNet has 62,378,344 parameters.
    assert a.totals["params"] == 62378344


def test_alexnet_conv_vs_fc_split() -> None:
    # Seed 003's last row: "Conv: 3.7 million (6%), FC: 58.6 million (94%)"; "Conv: 1.08 billion (95%), FC: 58.6 million (5%)".
    sp = analyze(zoo.get("alexnet-onetower")).split
    assert sp["conv"]["params"] == 3747200
    assert round(sp["dense"]["params"] / 1e6, 1) == 58.6
    assert round(100 * sp["conv"]["params"] / (sp["conv"]["params"] + sp["dense"]["params"])) == 6
    assert round(sp["conv"]["macs"] / 1e9, 2) == 1.08
    assert sp["dense"]["macs"] == 58621952
    assert round(100 * sp["conv"]["macs"] / (sp["conv"]["macs"] + sp["dense"]["macs"])) == 95


def test_batchnorm_alexnet_keras_summary() -> None:
    a = analyze(zoo.get("alexnet-bn-flowers17"))
    # Keras: "Total params: 28,096,769 / Trainable params: 28,075,633 / Non-trainable params: 21,136".
    assert a.totals["params"] == 28075633
    assert a.totals["buffers"] == 21136
    assert a.totals["params"] + a.totals["buffers"] == 28096769
    # The summary's first rows: conv2d_1 (None, 54, 54, 96) 34944; batch_normalization_1 384 (= 192 + 192);
    # conv2d_2 (None, 17, 17, 256) 2973952; dense_3 (None, 1000) 4097000; batch_normalization_8 4000; dense_4 17017.
    ly = {x.name: x for x in a.layers}
    assert (ly["conv1"].output_shape, ly["conv1"].params) == ((96, 54, 54), 34944)
    assert ly["bn1"].params + ly["bn1"].buffers == 384
    assert (ly["conv2"].output_shape, ly["conv2"].params) == ((256, 17, 17), 2973952)
    assert ly["fc3"].params == 4097000 and ly["bn_fc3"].params + ly["bn_fc3"].buffers == 4000
    assert (ly["out"].output_shape, ly["out"].params) == ((17,), 17017)
    # max_pooling2d_1 (None, 27, 27, 96) and max_pooling2d_2 (None, 8, 8, 256).
    pools = [x.output_shape for x in a.layers if x.type == "MaxPool"]
    assert pools[:2] == [(96, 27, 27), (256, 8, 8)]


def test_cats_dogs_and_mnist_networks() -> None:
    cd = analyze(zoo.get("cats-dogs-cnn"))
    assert [ly.output_shape for ly in cd.layers if ly.type == "MaxPool"] == [
        (32, 74, 74), (64, 36, 36), (128, 17, 17), (128, 7, 7)]
    assert cd.totals["params"] == 3453121
    # Seed 001: 28x28 -> 14 -> 7 -> 4 with 'SAME' 3x3/2 pools; wd1 is 4*4*256 x 1024.
    am = analyze(zoo.get("alexnet-mnist"))
    assert [ly.output_shape for ly in am.layers if ly.type == "MaxPool"] == [(64, 14, 14), (128, 7, 7), (256, 4, 4)]
    assert am.layer("fc1").params == 4 * 4 * 256 * 1024 + 1024
    # Seed 001's weights and biases: wc1 3*3*1*64 + 64 = 640, wc2 3*3*64*128 + 128 = 73,856,
    # wc3 3*3*128*256 + 256 = 295,168, wd1 4*4*256*1024 + 1024 = 4,195,328,
    # wd2 1024*1024 + 1024 = 1,049,600, out 1024*10 + 10 = 10,250 (LRN, pooling and dropout have none).
    assert am.totals["params"] == 640 + 73_856 + 295_168 + 4_195_328 + 1_049_600 + 10_250 == 5_624_842
    # Seed 002: three 'SAME' 2x2/2 pools, 28 -> 14 -> 7 -> 4, then dense 1024, 2048, 10.
    m3 = analyze(zoo.get("mnist-cnn3"))
    assert [ly.output_shape for ly in m3.layers if ly.type == "MaxPool"] == [(32, 14, 14), (64, 7, 7), (128, 4, 4)]
    assert m3.totals["params"] == 832 + 51264 + 204928 + 2098176 + 2099200 + 20490


def test_published_two_tower_alexnet() -> None:
    # Krizhevsky et al. 2012, Figure 2: conv2, conv4 and conv5 see only the maps on their own GPU
    # (groups=2); conv3 and the dense layers see both. Against the one-tower 62,378,344:
    # conv2 (5*5*48*256 + 256) = 307,456, conv4 (3*3*192*384 + 384) = 663,936, conv5 (3*3*192*256 + 256) = 442,624.
    a = analyze(zoo.get("alexnet"))
    assert [a.layer(n).params for n in ("conv2", "conv4", "conv5")] == [307_456, 663_936, 442_624]
    assert a.layer("conv3").params == 885_120
    assert a.totals["params"] == 60_965_224
    # MACs: the one-tower 1,135,256,096 less half of conv2 (447,897,600), conv4 (224,280,576) and conv5 (149,520,384).
    assert a.totals["macs"] == 1_135_256_096 - (447_897_600 + 224_280_576 + 149_520_384) // 2 == 724_406_816
    assert [a.layer(n).output_shape for n in ("conv1", "pool1", "pool2", "pool5")] == \
        [(96, 55, 55), (96, 27, 27), (256, 13, 13), (256, 6, 6)]
    assert any(ly.type == "LRN" for ly in a.layers)


def test_lenet5_c3_connection_table() -> None:
    # LeCun et al. 1998, Table I: C3 maps 0-5 read 3 contiguous S2 maps, 6-11 four contiguous,
    # 12-14 four non-contiguous, 15 all six.
    from cnnlab.zoo.lenet import C3_TABLE

    want = [{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
            {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
            {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}, {0, 1, 2, 3, 4, 5}]
    assert [set(t) for t in C3_TABLE] == want
    # 6*(3*25+1) + 6*(4*25+1) + 3*(4*25+1) + (6*25+1) = 1,516 parameters.
    assert 6 * 76 + 6 * 101 + 3 * 101 + 151 == analyze(zoo.get("lenet5")).layer("c3").params == 1516
