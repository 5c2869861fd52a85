"""Keras models read into the description, checked against real Keras (on its PyTorch backend)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("these tests run Keras on PyTorch (KERAS_BACKEND=torch)", allow_module_level=True)

import torch  # noqa: E402
from keras import layers as L  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab.analysis import Analysis, analyze  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.importers.keras import from_config, load_keras  # noqa: E402
from cnnlab.importers.keras_weights import load_keras_weights  # noqa: E402
from cnnlab.models import load_model  # noqa: E402
from cnnlab.network import join  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


def seed003_lenet() -> keras.Model:
    """Seed 003's LeNet, written as the seed writes it."""
    model = keras.Sequential()
    model.add(L.Conv2D(6, kernel_size=(5, 5), activation="relu", input_shape=(28, 28, 1)))
    model.add(L.MaxPooling2D(pool_size=(2, 2)))
    model.add(L.Conv2D(16, kernel_size=(5, 5), activation="relu"))
    model.add(L.MaxPooling2D(pool_size=(2, 2)))
    model.add(L.Flatten())
    model.add(L.Dense(120, activation="relu"))
    model.add(L.Dense(84, activation="relu"))
    model.add(L.Dense(10, activation="softmax"))
    return model


def small_functional() -> keras.Model:
    """Every translation at once: 'same' stride-2 padding that is asymmetric on a 16x16 input,
    BatchNorm with and without center/scale, depthwise and separable convs, a squeeze-excitation
    gate (Multiply), a residual Add, a Concatenate, padding, cropping, rescaling."""
    x = inp = keras.Input((16, 16, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)  # 16 -> 8, pad (0, 1)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(max_value=6.0, name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)  # 8 -> 16 channels
    y = L.BatchNormalization(center=False, name="dw_bn")(y)
    y = L.Activation("swish", name="dw_act")(y)
    s = L.GlobalAveragePooling2D(name="se_pool")(y)
    s = L.Reshape((1, 1, 16), name="se_reshape")(s)
    s = L.Dense(4, activation="relu", name="se_reduce")(s)
    s = L.Dense(16, activation="sigmoid", name="se_expand")(s)
    y = L.Multiply(name="se_scale")([y, s])
    y = L.Conv2D(8, 1, name="project")(y)
    y = L.BatchNormalization(scale=False, name="project_bn")(y)
    x = L.Add(name="residual")([x, y])
    a = L.SeparableConv2D(6, 3, padding="same", activation="relu", name="sep")(x)
    b = L.MaxPooling2D(3, strides=1, padding="same", name="pool_same")(x)
    x = L.Concatenate(name="cat")([a, b])  # 6 + 8 = 14 channels
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="zpad")(x)  # 9x9
    x = L.Cropping2D(((0, 1), (1, 0)), name="crop")(x)  # 8x8
    # 'same' average pooling with symmetric padding: Keras on PyTorch pads an asymmetric 'same' with
    # zeros that it then counts, where TensorFlow (and cnnlab) average over the input pixels only.
    x = L.AveragePooling2D(3, strides=1, padding="same", name="avg_same")(x)
    x = L.AveragePooling2D(2, name="avg")(x)  # 4x4
    x = L.LeakyReLU(negative_slope=0.2, name="leaky")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.3, name="drop")(x)
    out = L.Dense(5, name="logits")(x)
    return keras.Model(inp, out, name="small")


def counts(model: keras.Model) -> tuple[int, int]:
    tr = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    nt = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return tr, nt


def stats_of(a: Analysis, net: cnnlab.network.Network, name: str):  # type: ignore[name-defined]
    prefix = net.meta["keras_prefix"]
    for path in (join(prefix, name), join(join(prefix, name), "pointwise"), join(join(prefix, name), "flatten"),
                 join(join(prefix, name), "crop")):
        try:
            return a.layer(path)
        except KeyError:
            continue
    return None


def channels_first(shape: tuple) -> tuple[int, ...]:
    s = tuple(shape[1:])
    return (s[2], s[0], s[1]) if len(s) == 3 else s


def check_against_keras(model: keras.Model, net: cnnlab.network.Network) -> Analysis:  # type: ignore[name-defined]
    a = analyze(net)
    tr, nt = counts(model)
    assert (a.totals["params"], a.totals["buffers"]) == (tr, nt)
    assert a.output_shape == channels_first(model.output_shape)
    seen = 0
    for layer in model.layers:
        st = stats_of(a, net, layer.name)
        if st is None:  # input, merges, a linear activation: no layer of their own
            assert type(layer).__name__ in ("InputLayer", "Add", "Concatenate", "Multiply", "Maximum",
                                            "CustomScaleLayer", "Activation"), layer.name
            continue
        seen += 1
        assert st.output_shape == channels_first(layer.output.shape), layer.name
    assert seen >= len(model.layers) // 2
    return a


def test_seed003_lenet_counts_shapes_and_macs(tmp_path: Path) -> None:
    model = seed003_lenet()
    p = tmp_path / "lenet.json"
    p.write_text(model.to_json())
    net = load_model(str(p))
    a = check_against_keras(model, net)
    assert a.totals["params"] == model.count_params() == 44_426  # 156 + 2,416 + 30,840 + 10,164 + 850
    by = {s.name: s for s in a.layers}
    assert by["conv2d"].macs == 5 * 5 * 1 * 6 * 24 * 24  # 86,400
    assert by["conv2d_1"].macs == 5 * 5 * 6 * 16 * 8 * 8  # 153,600
    assert by["dense"].macs == 256 * 120
    assert a.totals["macs"] == 86_400 + 153_600 + 256 * 120 + 120 * 84 + 84 * 10
    assert by["conv2d_activation"].type == "ReLU" and by["dense_2_activation"].type == "Softmax"
    assert net.meta["keras_flatten"] == {"dense": [4, 4, 16]}


def test_small_functional_counts_shapes_and_padding(tmp_path: Path) -> None:
    model = small_functional()
    net = from_config(json.loads(model.to_json()))
    a = check_against_keras(model, net)
    stem = a.layer("small.stem")
    assert stem.output_shape == (8, 8, 8) and stem.macs == 3 * 3 * 3 * 8 * 8 * 8
    assert [(ax.pb, ax.pa) for ax in stem.axes] == [(0, 1), (0, 1)]  # TensorFlow's 'same': the odd pixel after
    assert a.layer("small.dw").params == 3 * 3 * 16 + 16 and a.layer("small.dw").macs == 9 * 16 * 8 * 8
    assert (a.layer("small.dw_bn").params, a.layer("small.dw_bn").buffers) == (16, 32)  # gamma only
    assert (a.layer("small.project_bn").params, a.layer("small.project_bn").buffers) == (8, 16)  # beta only
    assert a.layer("small.sep.depthwise").params == 9 * 8 and a.layer("small.sep.pointwise").params == 8 * 6 + 6
    assert a.layer("small.se_reduce").type == "Conv" and a.layer("small.se_reduce").params == 16 * 4 + 4
    assert a.layer("small.avg_same").output_shape == (14, 8, 8) and a.layer("small.avg").output_shape == (14, 4, 4)


def test_small_functional_weights_match_keras(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    model = small_functional()
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BatchNorm statistics, so that their layout is exercised
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = tmp_path / "small.keras"
    model.save(path)
    x = rng.uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    net = load_model(str(path))
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == want.shape == (3, 5)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1e-2  # the outputs are not all close to zero


def test_lenet_weights_after_flatten_match_keras(tmp_path: Path) -> None:
    keras.utils.set_random_seed(2)
    model = seed003_lenet()
    path = tmp_path / "lenet.keras"
    model.save(path)
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    want = model.predict(x, verbose=0)
    net = load_keras(path)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # Without the (H, W, C) -> (C, H, W) row permutation the first Dense would read the wrong pixels.
    bad = dict(net.meta)
    bad.pop("keras_flatten")
    wrong = load_keras_weights(cnnlab.build(net).eval(), cnnlab.network.Network(net.name, net.layers,
                                                                                  net.input_shape, bad), path)
    with torch.no_grad():
        off = wrong(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(off - want).max() > 1e-3


def test_resnet50_weights_match_keras(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    path = tmp_path / "r50.keras"
    model.save(path)
    x = np.random.default_rng(2).random((2, 64, 64, 3), dtype=np.float32)
    want = model.predict(x, verbose=0)
    net = load_model(str(path))
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_prelu_per_channel_shared_and_on_a_vector(tmp_path: Path) -> None:
    keras.utils.set_random_seed(4)
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(x)
    x = L.PReLU(shared_axes=[1, 2], name="per_channel")(x)
    x = L.Conv2D(5, 3, name="conv2")(x)
    x = L.PReLU(shared_axes=[1, 2, 3], alpha_initializer=keras.initializers.Constant(0.1), name="shared")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(6, name="dense")(x)
    x = L.PReLU(name="per_unit")(x)
    model = keras.Model(inp, x, name="prelu")
    net = from_config(json.loads(model.to_json()))
    a = check_against_keras(model, net)
    # conv 27*4 + 4 = 112, slopes 4; conv2 36*5 + 5 = 185, one slope; dense 80*6 + 6 = 486, slopes 6
    assert [a.layer(n).params for n in ("per_channel", "shared", "per_unit")] == [4, 1, 6]  # a chain: no prefix
    assert a.totals["params"] == model.count_params() == 112 + 4 + 185 + 1 + 486 + 6 == 794
    assert [(n.shared, n.init) for n in net.layers if type(n).__name__ == "PReLU"] == [
        (False, 0.0), (True, pytest.approx(0.1)), (False, 0.0)]  # Keras' default initializer is zeros
    rng = np.random.default_rng(4)
    for layer in model.layers:  # slopes away from their initial value, so that their layout is exercised
        if isinstance(layer, L.PReLU):
            layer.set_weights([rng.uniform(-1, 1, w.shape).astype("float32") for w in layer.get_weights()])
    path = tmp_path / "prelu.keras"
    model.save(path)
    xs = rng.uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    want = model.predict(xs, verbose=0)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(xs.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert (want < 0).any()  # some outputs went through a negative slope
    per_pixel = L.PReLU(name="per_pixel")
    cfg = json.loads(keras.Model(inp, per_pixel(L.Conv2D(4, 3)(inp))).to_json())
    with pytest.raises(CnnlabError, match=r"'per_pixel': PReLU with shared_axes None on 4x6x6 is not supported"):
        from_config(cfg)


def test_maximum_is_a_max_merge(tmp_path: Path) -> None:
    keras.utils.set_random_seed(5)
    x = inp = keras.Input((6, 6, 2))
    a = L.Conv2D(3, 3, padding="same", name="a")(x)
    b = L.Conv2D(3, 1, name="b")(x)
    x = L.Maximum(name="most")([a, b])
    model = keras.Model(inp, L.GlobalAveragePooling2D(name="gap")(x), name="mx")
    net = from_config(json.loads(model.to_json()))
    assert [(m.op, m.inputs) for m in net.layers[0].merges] == [("max", ("a", "b"))]
    a_ = check_against_keras(model, net)
    assert a_.totals["params"] == (18 * 3 + 3) + (2 * 3 + 3) == 66
    path = tmp_path / "mx.keras"
    model.save(path)
    xs = np.random.default_rng(5).standard_normal((2, 6, 6, 2)).astype("float32")
    want = model.predict(xs, verbose=0)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(xs.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


APPS = {  # trainable, non-trainable as Keras counts them (asserted against Keras in the test as well)
    "MobileNetV2": (3_504_872, 34_112), "ResNet50": (25_583_592, 53_120), "VGG16": (138_357_544, 0),
    "InceptionV3": (23_817_352, 34_432), "Xception": (22_855_952, 54_528), "DenseNet121": (7_978_856, 83_648),
    "InceptionResNetV2": (55_813_192, 60_544),
    # 42,016 BatchNorm statistics + the first Normalization's mean (3), variance (3) and count (1)
    "EfficientNetB0": (5_288_548, 42_023),
    # all BatchNorm: its Normalization is given its ImageNet mean and variance, constants of the config
    "EfficientNetV2B0": (7_139_704, 60_608),
}


@pytest.mark.parametrize("name", list(APPS))
def test_keras_applications(name: str, tmp_path: Path) -> None:
    model = getattr(keras.applications, name)(weights=None)
    assert counts(model) == APPS[name]
    p = tmp_path / "m.json"
    p.write_text(model.to_json())
    net = load_model(str(p))
    check_against_keras(model, net)


def normalized_model(data: np.ndarray) -> keras.Model:
    """Keras' Normalization three ways: statistics given per channel, adapted (weights, with the
    count), and given as one number with ``invert``."""
    x = inp = keras.Input((8, 8, 3), name="image")
    x = L.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0, 2500.0, 4900.0], name="given")(x)
    x = L.Conv2D(4, 3, padding="same", name="conv")(x)
    learned = L.Normalization(name="learned")
    learned.adapt(keras.Model(inp, x).predict(data, verbose=0))
    x = learned(x)
    x = L.Conv2D(4, 1, name="mix")(x)
    x = L.Normalization(mean=0.5, variance=4.0, invert=True, name="undo")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="norm")


def test_normalization_counts_and_weights_match_keras(tmp_path: Path) -> None:
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    data = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    model = normalized_model(data)
    net = from_config(json.loads(model.to_json()))
    a = check_against_keras(model, net)
    # given statistics are constants; the adapted ones are buffers: mean 4, variance 4, count 1
    assert [a.layer(n).buffers for n in ("given", "learned", "undo")] == [0, 9, 0]  # a chain: no prefix
    assert a.totals["buffers"] == counts(model)[1] == 9
    assert next(n for n in net.layers if n.name == "undo").mean == (0.5,) * 4
    path = tmp_path / "norm.keras"
    model.save(path)
    want = model.predict(data[:4], verbose=0)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(data[:4].transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    learned = module.get_submodule("learned")
    mean, var = (np.asarray(w) for w in model.get_layer("learned").get_weights()[:2])
    np.testing.assert_allclose(learned.mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(learned.variance.numpy(), var, rtol=1e-6)
    assert np.abs(mean).max() > 0.05 and np.abs(var - 1).max() > 0.05  # adapted: not the initial zeros and ones
    assert learned.count.dtype == torch.long and learned.count.shape == ()
    # the exported PyTorch file takes the same state_dict (mean, variance, count) and computes the same
    from cnnlab.export.pycode import python_source

    code, ns = python_source(net), {}
    exec(code, ns)  # noqa: S102 - cnnlab's own generated file
    exported = ns[re.findall(r"^class (\w+)\(nn\.Module\)", code, re.M)[-1]]().eval()
    exported.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        again = exported(torch.from_numpy(data[:4].transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(again, got, atol=1e-6, rtol=0)
    # without the given statistics the output would be far off: the input is not centred on zero
    plain = load_keras_weights(cnnlab.build(net).eval(), net, path)
    plain.get_submodule("given").mean.zero_()
    with torch.no_grad():
        off = plain(torch.from_numpy(data[:4].transpose(0, 3, 1, 2))).numpy()
    assert np.abs(off - want).max() > 1e-2


def test_normalization_spec_round_trip_and_refusals(tmp_path: Path) -> None:
    from cnnlab.network import load_spec, save_spec

    data = np.random.default_rng(7).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    net = from_config(json.loads(normalized_model(data).to_json()))
    save_spec(net, tmp_path / "norm.yaml")
    again = load_spec(tmp_path / "norm.yaml")
    assert again.layers == net.layers and analyze(again).totals == analyze(net).totals
    x = inp = keras.Input((8, 8, 3))
    whole = json.loads(keras.Model(inp, L.Normalization(axis=None, name="whole")(x)).to_json())
    with pytest.raises(CnnlabError, match=r"'whole': Normalization over axis \[\] is not supported; normalize the "
                                          r"channels \(axis=-1\)"):
        from_config(whole)
    two = json.loads(keras.Model(inp, L.Normalization(mean=[1.0, 2.0], variance=[1.0, 1.0], axis=-1,
                                                      name="two")(L.Conv2D(2, 1)(x))).to_json())
    two["config"]["layers"][-1]["config"]["mean"] = [1.0, 2.0, 3.0]
    two["config"]["layers"][-1]["config"]["variance"] = [1.0, 1.0, 1.0]
    with pytest.raises(CnnlabError, match=r"'two': Normalization mean \[1.0, 2.0, 3.0\] is not one finite number "
                                          r"or 2 \(one per channel\)"):
        from_config(two)


def at_size(model: keras.Model, hwc: tuple[int, int, int]) -> keras.Model:
    """The same model (same layer names) with its unknown input size fixed, for Keras' own shapes."""
    cfg = json.loads(model.to_json())
    first = cfg["config"]["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, None, None, 3]
    first["config"]["batch_shape"] = [None, *hwc]
    return keras.models.model_from_json(json.dumps(cfg))


@pytest.mark.parametrize("name, want", [("MobileNetV3Small", (2_542_856, 12_112)),
                                        ("MobileNetV3Large", (5_483_032, 24_400))])
def test_mobilenetv3_of_unknown_size_at_a_given_input(name: str, want: tuple[int, int], tmp_path: Path) -> None:
    model = getattr(keras.applications, name)(weights=None)  # Input(shape=(None, None, 3))
    assert counts(model) == want
    p = tmp_path / "m.json"
    p.write_text(model.to_json())
    with pytest.raises(CnnlabError, match=r"Keras input '\w+' has size 3x\?x\? \(unknown sizes\): give it with "
                                          r"--input CxHxW \(--design CxHxW with adapt; input_shape=\(C, H, W\) in Python\)"):
        load_keras(p)
    net = load_keras(p, input_shape=(3, 224, 224))
    assert net.input_shape == (3, 224, 224)
    a = check_against_keras(at_size(model, (224, 224, 3)), net)  # params, buffers, every layer's shape
    assert a.output_shape == (1000,)
    # the hard sigmoid of each squeeze-excitation, relu6(x + 3) * (1 / 6), is two Keras ops of a tensor and a
    # number: two Scales. SE blocks: Small's blocks 0 and 3-10 (9), Large's 3-5 and 10-14 (8).
    ops = [n for n in net.layers[0].nodes if type(n).__name__ == "Scale" and not n.name.startswith("rescaling")]
    assert len(ops) == 2 * (9 if name == "MobileNetV3Small" else 8)
    assert {(n.mul, n.add) for n in ops} == {(1.0, 3.0), (1 / 6, 0.0)}  # Keras writes 1 / 6 as 0.16666666666666666
    with pytest.raises(CnnlabError, match=r"input 1x224x224 does not fit the Keras input '\w+' of size 3x\?x\?"):
        load_keras(p, input_shape=(1, 224, 224))


def test_mobilenetv3_small_weights_match_keras_at_a_given_input(tmp_path: Path) -> None:
    keras.utils.set_random_seed(8)
    model = keras.applications.MobileNetV3Small(weights=None, classifier_activation=None)
    rng = np.random.default_rng(8)
    for layer in model.layers:  # BatchNorm away from the identity, so that the outputs are not all near zero
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = tmp_path / "v3.keras"
    model.save(path)
    x = rng.uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    want = model.predict(x, verbose=0)  # Keras runs its unknown-size input at 96x96
    net = load_model(str(path), input_shape=(3, 96, 96))
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == want.shape == (2, 1000)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1e-2


def test_mobilenetv3_small_macs(tmp_path: Path) -> None:
    # MobileNetV3-Small 1.0 at 224: 56M multiply-adds (Howard et al. 2019, Table 3).
    p = tmp_path / "m.json"
    p.write_text(keras.applications.MobileNetV3Small(weights=None).to_json())
    assert round(analyze(load_model(str(p), input_shape=(3, 224, 224))).totals["macs"] / 1e6) == 57


def test_cli_input_for_a_keras_model_of_unknown_size(tmp_path: Path) -> None:
    p = tmp_path / "v3.json"
    p.write_text(keras.applications.MobileNetV3Small(weights=None).to_json())
    fixed = tmp_path / "lenet.json"
    fixed.write_text(seed003_lenet().to_json())
    env = {**os.environ, "PYTHONPATH": SRC}

    def summary(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cnnlab", "summary", *argv, "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=300)

    r = summary(str(p), "--input", "3x224x224")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["totals"]["params"] == 2_542_856 and out["output_shape"] == [1000]
    r = summary(str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert re.search(r"Keras input 'input_layer\w*' has size 3x\?x\? \(unknown sizes\): give it with --input CxHxW",
                     r.stderr)
    r = summary(str(p), "--input", "224x224x3")  # written H x W x C
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "input 224x224x3 does not fit the Keras input" in r.stderr and "(channels first, CxHxW)" in r.stderr
    # a file that fixes its size keeps it: --input is the input it is analysed at, as for any spec
    r = summary(str(fixed), "--input", "1x32x32")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["input_shape"] == [1, 32, 32] and out["layers"][0]["output_shape"] == [6, 28, 28]  # 32 - 5 + 1


def test_mobilenetv2_macs() -> None:
    # MobileNetV2 at 224: 300M multiply-adds (Sandler et al. 2018, Table 4 lists 300M for 1.0 / 224).
    net = from_config(json.loads(keras.applications.MobileNetV2(weights=None).to_json()))
    assert round(analyze(net).totals["macs"] / 1e6) == 301


TF2_JSON = {  # the tf.keras 2 layout: batch_input_shape and nested-list inbound nodes
    "class_name": "Functional", "config": {
        "name": "tf2", "layers": [
            {"class_name": "InputLayer", "name": "in", "config": {"batch_input_shape": [None, 32, 32, 3], "name": "in"},
             "inbound_nodes": []},
            {"class_name": "Conv2D", "name": "c1", "inbound_nodes": [[["in", 0, 0, {}]]],
             "config": {"name": "c1", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                        "activation": "relu", "use_bias": True, "dilation_rate": [1, 1], "groups": 1}},
            {"class_name": "Conv2D", "name": "c2", "inbound_nodes": [[["in", 0, 0, {}]]],
             "config": {"name": "c2", "filters": 4, "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                        "activation": "linear", "use_bias": False}},
            {"class_name": "Add", "name": "sum", "inbound_nodes": [[["c1", 0, 0, {}], ["c2", 0, 0, {}]]],
             "config": {"name": "sum"}},
            {"class_name": "GlobalAveragePooling2D", "name": "gap", "inbound_nodes": [[["sum", 0, 0, {}]]],
             "config": {"name": "gap"}},
        ],
        "input_layers": [["in", 0, 0]], "output_layers": [["gap", 0, 0]]},
    "keras_version": "2.13.1", "backend": "tensorflow"}


def test_tf_keras2_json(tmp_path: Path) -> None:
    p = tmp_path / "tf2.json"
    p.write_text(json.dumps(TF2_JSON))
    a = analyze(load_model(str(p)))
    assert a.totals["params"] == (27 * 4 + 4) + 3 * 4
    assert a.layer("tf2.c1_activation").output_shape == (4, 32, 32)
    assert a.output_shape == (4,)


def _conv_reading(name: str, src: str) -> dict:
    """A Keras 3 Conv2D entry whose one input is the output of layer ``src``."""
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 8, 8, 3], "keras_history": [src, 0, 0]}}
    return {"class_name": "Conv2D", "name": name, "inbound_nodes": [{"args": [tensor], "kwargs": {}}],
            "config": {"name": name, "filters": 3, "kernel_size": [1, 1], "activation": "linear"}}


def test_cycles_and_misordered_inputs_are_one_line(tmp_path: Path) -> None:
    def model(*layers: dict) -> dict:
        first = {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
                 "config": {"name": "in", "batch_shape": [None, 8, 8, 3]}}
        return {"class_name": "Functional", "config": {"name": "m", "layers": [first, *layers],
                                                        "input_layers": ["in", 0, 0], "output_layers": ["b", 0, 0]}}

    env = {**os.environ, "PYTHONPATH": SRC}
    cases = {  # a reads b and b reads a; a three-layer loop; a layer read before it is listed; no such layer
        "two": (model(_conv_reading("a", "b"), _conv_reading("b", "a")),
                "Keras layer 'a' reads 'b', which is computed from its own output (a -> b -> a): the layers form a "
                "cycle; give 'a' an input computed before it"),
        "three": (model(_conv_reading("a", "c"), _conv_reading("b", "a"), _conv_reading("c", "b")),
                  "Keras layer 'a' reads 'c', which is computed from its own output (a -> b -> c -> a)"),
        "order": (model(_conv_reading("b", "a"), _conv_reading("a", "in")),
                  "Keras layer 'b' reads 'a', which comes later in the layer list"),
        "missing": (model(_conv_reading("b", "ghost")), "Keras layer 'b' reads 'ghost', which is not a layer"),
    }
    for key, (cfg, words) in cases.items():
        with pytest.raises(CnnlabError) as e:
            from_config(cfg)
        assert words in str(e.value) and "\n" not in str(e.value), key
        p = tmp_path / f"{key}.json"
        p.write_text(json.dumps(cfg))
        r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(p)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, key
        assert len(r.stderr.strip().splitlines()) == 1


def test_lambda_and_unknown_layers_are_refused() -> None:
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(x)
    x = L.Lambda(lambda t: t * 2, name="double")(x)
    cfg = json.loads(keras.Model(inp, x).to_json())
    with pytest.raises(CnnlabError, match=r"Keras layer 'double' \(Lambda\) is not supported: cnnlab reads "
                                          r"InputLayer, Conv2D, .*Rescaling"):
        from_config(cfg)
    minus = json.loads(keras.Model(inp, L.Conv2D(4, 3)(inp) - 1.0).to_json())  # an op of a tensor and a number
    with pytest.raises(CnnlabError, match=r"\(Subtract\) of 1 tensor\(s\) and 1 number\(s\) is not supported; "
                                          r"cnnlab reads a tensor plus or times one finite number"):
        from_config(minus)
    seq = json.loads(keras.Sequential([keras.Input((10,)), L.Dense(4), L.LayerNormalization(name="ln")]).to_json())
    with pytest.raises(CnnlabError, match=r"'ln' \(LayerNormalization\) is not supported"):
        from_config(seq)


@pytest.mark.parametrize(("cls", "key", "value", "words"), [
    ("Conv2D", "filters", 8.5, "Keras layer 'c' (Conv2D): filters 8.5 is not an integer"),  # never rounded down
    ("Conv2D", "groups", True, "Keras layer 'c' (Conv2D): groups True is not an integer"),
    ("Conv2D", "use_bias", "no", "Keras layer 'c' (Conv2D): use_bias 'no' is not true or false"),
    ("Conv2D", "filters", 10**12, "layer 'c' (Conv): filters must be <= 2,147,483,647"),
    ("Dense", "units", "10", "Keras layer 'd' (Dense): units '10' is not an integer"),
    ("Dropout", "rate", "half", "Keras layer 'drop' (Dropout): rate 'half' is not a finite number"),
    ("LeakyReLU", "negative_slope", [0.1], "Keras layer 'leaky' (LeakyReLU): negative_slope [0.1] is not a finite"),
    ("BatchNormalization", "center", 1, "Keras layer 'bn' (BatchNormalization): center 1 is not true or false"),
])
def test_bad_values_are_refused_not_coerced(cls: str, key: str, value: object, words: str) -> None:
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c"), L.BatchNormalization(name="bn"),
                              L.LeakyReLU(name="leaky"), L.Dropout(0.5, name="drop"), L.Flatten(name="f"),
                              L.Dense(2, name="d")])
    cfg = json.loads(model.to_json())
    assert analyze(from_config(cfg)).totals["params"] == 3 * 3 * 3 * 4 + 4 + 2 * 4 + 6 * 6 * 4 * 2 + 2
    layer = next(x for x in cfg["config"]["layers"] if x["class_name"] == cls)
    layer["config"][key] = value
    with pytest.raises(CnnlabError) as e:
        from_config(cfg)
    assert words.replace(f" ({cls})", "") in str(e.value), str(e.value)


def test_cli_summary_and_errors(tmp_path: Path) -> None:
    model = seed003_lenet()
    good = tmp_path / "lenet.keras"
    model.save(good)
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(good), "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["params"] == 44_426
    broken = tmp_path / "broken.json"
    broken.write_text('{"class_name": "Sequential", "config": {"layers": [')
    lam = tmp_path / "lam.json"
    lam.write_text(json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "i", "batch_shape": [None, 4]}},
        {"class_name": "Lambda", "config": {"name": "f"}}]}}))
    for bad, words in ((broken, "broken.json"), (lam, "Keras layer 'f' (Lambda) is not supported")):
        r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(bad)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_import_cnnlab_loads_neither_torch_nor_keras(tmp_path: Path) -> None:
    p = tmp_path / "lenet.json"
    p.write_text(seed003_lenet().to_json())
    code = ("import sys, cnnlab; net = cnnlab.load_keras(sys.argv[1]); a = cnnlab.analyze(net); "
            "print(a.totals['params'], 'torch' in sys.modules, 'keras' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": SRC})
    assert r.stdout.split() == ["44426", "False", "False"], r.stderr


def test_spec_round_trip_keeps_the_figures(tmp_path: Path) -> None:
    from cnnlab.network import load_spec, save_spec

    net = from_config(json.loads(small_functional().to_json()))
    save_spec(net, tmp_path / "small.yaml")
    again = load_spec(tmp_path / "small.yaml")
    a, b = analyze(net), analyze(again)
    assert a.totals == b.totals and [s.output_shape for s in a.layers] == [s.output_shape for s in b.layers]
    assert b.layer("small.dw_bn").params == 16 and b.layer("small.se_reshape").output_shape == (16, 1, 1)


def test_cli_trains_a_keras_model(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(5):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"c{c}" / f"{i}.png")
    model = tmp_path / "small.keras"
    small_functional().save(model)
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(model), "--data", str(tmp_path / "imgs"),
                        "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 1


def image_folder(root: Path, rng: np.random.Generator) -> None:
    """Three classes of four random 8x8 RGB images."""
    from PIL import Image

    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")


def tiny_sequential() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv"), L.BatchNormalization(name="bn"),
                             L.ReLU(name="relu"), L.Flatten(name="flatten"), L.Dense(3, name="logits")], name="tiny")


def test_train_starts_from_the_weights_of_a_keras_file(tmp_path: Path, monkeypatch) -> None:

    from cnnlab.data import load
    from cnnlab.train import Options, Trainer
    from cnnlab.train.recipes import Recipe

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(6)
    image_folder(tmp_path / "imgs", rng)
    keras.utils.set_random_seed(6)
    saved, other = tiny_sequential(), tiny_sequential()  # two draws of the same architecture
    for m in (saved, other):  # BatchNorm statistics away from their initial 0 and 1
        m.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 4).astype("float32") for _ in range(4)])
    archive, h5 = tmp_path / "tiny.keras", tmp_path / "other.weights.h5"
    saved.save(archive)
    other.save_weights(h5)
    net = load_model(str(archive))
    train = load(str(tmp_path / "imgs"), "train")

    def kernel(model: keras.Model) -> torch.Tensor:  # Keras' (kh, kw, in, out) as PyTorch's (out, in, kh, kw)
        return torch.from_numpy(model.get_layer("conv").get_weights()[0].transpose(3, 2, 0, 1).copy())

    assert not torch.equal(kernel(saved), kernel(other))
    for weights, source in ((archive, saved), (h5, other)):
        lines: list[str] = []
        trainer = Trainer(net, train, None, Recipe(epochs=1, batch_size=4),
                          Options(out=tmp_path / f"run-{weights.suffix}", device="cpu", progress=False, weights=weights,
                                  log=lines.append))
        assert torch.equal(trainer.model.conv.weight.detach().cpu(), kernel(source))
        assert torch.equal(trainer.model.bn.running_var.cpu(), torch.from_numpy(source.get_layer("bn").get_weights()[3]))
        # conv weight and bias, bn gamma, beta, mean, variance and its batch count, dense weight and bias
        assert lines == [f"loaded 9 of 9 tensors from {weights}"]
    with pytest.raises(CnnlabError, match=r"tiny.keras: Keras weights load into a network read from a Keras model, "
                                          r"and 'lenet-rgb8' was not"):
        Trainer(cnnlab.zoo.get("lenet-rgb8", num_classes=3), load(str(tmp_path / "imgs"), "train", size=(32, 32)),
                None, Recipe(epochs=1), Options(out=tmp_path / "run-lenet", device="cpu", progress=False,
                                                weights=archive, log=lambda s: None))
    env = {**os.environ, "PYTHONPATH": SRC, "CNNLAB_CACHE": str(tmp_path / "cache")}
    for extra, words in (((), f"loaded 9 of 9 tensors from {archive}"),  # the archive's own, unasked
                         (("--weights", str(h5)), f"loaded 9 of 9 tensors from {h5}")):
        out = tmp_path / f"cli{len(extra)}"
        r = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(archive), "--data", str(tmp_path / "imgs"),
                            "--epochs", "1", "--batch-size", "4", "--no-progress", "--device", "cpu", "--out", str(out),
                            *extra], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count(words) == 1 and r.stdout.count("loaded ") == 1, r.stdout
        assert len(json.loads((out / "metrics.json").read_text())) == 1


def test_two_thousand_layer_json(tmp_path: Path) -> None:
    """A 2,000-layer config reads whole (its speed is measured by benchmarks/bench_import.py)."""
    layers = [{"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 16, 16, 8]}}]
    for i in range(1000):
        layers.append({"class_name": "Conv2D", "config": {"name": f"c{i}", "filters": 8, "kernel_size": [3, 3],
                                                          "padding": "same", "activation": "linear"}})
        layers.append({"class_name": "ReLU", "config": {"name": f"r{i}"}})
    p = tmp_path / "deep.json"
    p.write_text(json.dumps({"class_name": "Sequential", "config": {"name": "deep", "layers": layers}}))
    a = analyze(load_model(str(p)))
    assert len(a.layers) == 2000 and a.totals["params"] == 1000 * (9 * 8 * 8 + 8)


def test_a_functional_graph_ending_in_softmax_trains_on_logits(tmp_path) -> None:
    """The training form leaves out the final softmax of a graph too, not only of a chain: otherwise the
    loss would apply softmax to probabilities."""
    import torch

    from cnnlab.importers.keras import load_keras
    from cnnlab.network import Graph
    from cnnlab.torch_backend import build

    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inp)
    b = keras.layers.Conv2D(4, 1)(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    out = keras.layers.Dense(5, activation="softmax")(x)
    p = tmp_path / "m.json"
    p.write_text(keras.Model(inp, out).to_json())
    net = load_keras(str(p))
    assert isinstance(net.layers[-1], Graph)
    probs_model, logits_model = build(net).eval(), build(net, logits=True).eval()
    logits_model.load_state_dict(probs_model.state_dict())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        probs, logits = probs_model(x), logits_model(x)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    assert not torch.allclose(logits.sum(1), torch.ones(4), atol=1e-3)
    assert torch.allclose(torch.softmax(logits, 1), probs, atol=1e-6)


def test_a_legacy_h5_model_file_imports_with_its_weights(tmp_path: Path) -> None:
    """``model.save("m.h5")`` (Keras' legacy HDF5 format, tf.keras 2's default): the config comes from its
    ``model_config`` attribute, the weights from ``model_weights`` by layer name, in each layer's
    ``weight_names`` order."""
    keras.utils.set_random_seed(7)
    model = small_functional()
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = tmp_path / "small.h5"
    model.save(path)
    net = load_model(str(path))
    a = check_against_keras(model, net)
    assert (a.totals["params"], a.totals["buffers"]) == counts(model)
    x = rng.uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1e-2
    from cnnlab.importers.keras import archive_has_weights

    assert archive_has_weights(path)  # so `cnnlab train small.h5` starts from these weights


def test_a_tf_keras2_h5_file(tmp_path: Path) -> None:
    """tf.keras 2 wrote byte-string attributes and ``name:0`` weight names; written here with h5py in that
    layout, around the tf.keras 2 JSON of ``test_tf_keras2_json``."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(8)
    kernel, bias = rng.standard_normal((3, 3, 3, 4)).astype("float32"), rng.standard_normal(4).astype("float32")
    kernel2 = rng.standard_normal((1, 1, 3, 4)).astype("float32")
    path = tmp_path / "tf2.h5"
    with h5py.File(path, "w") as h:
        h.attrs["model_config"] = json.dumps(TF2_JSON).encode()
        g = h.create_group("model_weights")
        names = [layer["config"]["name"] for layer in TF2_JSON["config"]["layers"]]
        g.attrs["layer_names"] = [n.encode() for n in names]
        arrays = {"c1": {"c1/kernel:0": kernel, "c1/bias:0": bias}, "c2": {"c2/kernel:0": kernel2}}
        for n in names:
            g.create_group(n).attrs["weight_names"] = [w.encode() for w in arrays.get(n, {})]
            for w, value in arrays.get(n, {}).items():
                g[n].create_dataset(w, data=value)
    net = load_model(str(path))
    assert analyze(net).totals["params"] == (27 * 4 + 4) + 3 * 4
    module = load_keras_weights(cnnlab.build(net), net, path)
    c1, c2 = (m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(c1.weight, torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    assert torch.equal(c1.bias, torch.from_numpy(bias))
    assert torch.equal(c2.weight, torch.from_numpy(kernel2.transpose(3, 2, 0, 1).copy()))
    with h5py.File(path, "a") as h:  # a layer whose arrays are missing
        del h["model_weights/c2/c2/kernel:0"]
        h["model_weights/c2"].attrs["weight_names"] = []
    with pytest.raises(CnnlabError, match=r"^tf2.h5: no weights for Keras layer 'c2' \(looked for layer c2\); "):
        load_keras_weights(cnnlab.build(net), net, path)


def test_legacy_h5_refusals(tmp_path: Path) -> None:
    keras.utils.set_random_seed(9)
    weights_only = tmp_path / "w.weights.h5"
    tiny_sequential().save_weights(weights_only)
    with pytest.raises(CnnlabError, match=r"^w.weights.h5 holds weights only, no model config: give the model "
                                          r"\(model.to_json\(\) or a .keras file\) and this file with --weights$"):
        load_model(str(weights_only))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(CnnlabError, match=r"^cannot read Keras model bad.h5: "):
        load_model(str(bad))
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(bad)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def _conv_k1(name: str, n: int, k: tuple[int, int], **extra: object) -> dict:
    cfg = {"name": name, "nb_filter": n, "nb_row": k[0], "nb_col": k[1], "subsample": [1, 1], "border_mode": "valid",
           "activation": "linear", "bias": True, "dim_ordering": "tf", "init": "glorot_uniform", **extra}
    return {"class_name": "Convolution2D", "config": cfg}


KERAS1_JSON = {  # Keras 1.2 `to_json()` of a Sequential model: its config is the list of layers, Keras 1 names
    "class_name": "Sequential", "keras_version": "1.2.1", "config": [
        _conv_k1("convolution2d_1", 6, (5, 3), batch_input_shape=[None, 32, 30, 3]),
        {"class_name": "Activation", "config": {"name": "activation_1", "activation": "relu"}},
        {"class_name": "MaxPooling2D", "config": {"name": "maxpooling2d_1", "pool_size": [2, 2], "strides": [2, 2],
                                                  "border_mode": "valid", "dim_ordering": "tf"}},
        {"class_name": "Dropout", "config": {"name": "dropout_1", "p": 0.25}},
        {"class_name": "Flatten", "config": {"name": "flatten_1"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "output_dim": 10, "bias": False, "activation": "softmax"}},
    ]}


def test_keras1_and_keras20_sequential_json(tmp_path: Path) -> None:
    """Keras 1 and Keras 2.0 to 2.2.2 wrote a Sequential config as a list of layers; Keras 1 named the
    settings nb_filter, nb_row/nb_col, subsample, border_mode, output_dim, bias, p and dim_ordering."""
    p = tmp_path / "k1.json"
    p.write_text(json.dumps(KERAS1_JSON))
    a = analyze(load_model(str(p)))
    # conv 5x3x3 -> 6: 45 * 6 + 6 = 276, out 6x28x28; pool 6x14x14 = 1176; dense 1176 * 10, no bias
    assert [x.output_shape for x in a.layers] == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (6, 14, 14), (1176,),
                                                 (10,), (10,)]
    assert a.totals["params"] == 276 + 11_760
    assert a.totals["macs"] == 45 * 6 * 28 * 28 + 11_760
    assert next(x for x in a.layers if x.name == "dropout_1").layer.p == 0.25
    k20 = {"class_name": "Sequential", "keras_version": "2.0.6", "config": [  # Keras 2 names, list layout
        {"class_name": "Conv2D", "config": {"name": "conv2d_1", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1],
                                            "padding": "same", "data_format": "channels_last", "use_bias": True,
                                            "activation": "relu", "batch_input_shape": [None, 8, 8, 3]}},
        {"class_name": "ELU", "config": {"name": "elu_1", "alpha": 0.5}},
        {"class_name": "Flatten", "config": {"name": "flatten_1"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 2, "activation": "linear"}}]}
    p.write_text(json.dumps(k20))
    a = analyze(load_model(str(p)))
    assert a.totals["params"] == 27 * 4 + 4 + 256 * 2 + 2
    assert a.layer("elu_1").layer.alpha == 0.5
    channels_first = json.loads(json.dumps(KERAS1_JSON))
    channels_first["config"][0]["config"]["dim_ordering"] = "th"
    with pytest.raises(CnnlabError, match=r"Keras layer 'convolution2d_1': data_format 'channels_first' is not "
                                          r"supported; build the model channels_last"):
        from_config(channels_first)


def test_elu_and_softmax_layers_match_keras(tmp_path: Path) -> None:
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(x)
    x = L.ELU(alpha=0.7, name="elu")(x)
    x = L.Softmax(name="per_pixel")(x)  # over the channels of each pixel
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Softmax(name="probs")(x)
    model = keras.Model(inp, x, name="acts")
    net = from_config(json.loads(model.to_json()))
    check_against_keras(model, net)
    rng = np.random.default_rng(10)
    data = rng.standard_normal((2, 6, 6, 3)).astype("float32")
    model.save(tmp_path / "acts.keras")
    module = load_keras_weights(cnnlab.build(net).eval(), net, tmp_path / "acts.keras")
    with torch.no_grad():
        got = module(torch.from_numpy(data.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, model.predict(data, verbose=0), atol=1e-5, rtol=0)


def test_a_model_name_with_dots_builds(tmp_path: Path) -> None:
    """keras.applications names MobileNetV2 ``mobilenetv2_1.00_96``: a '.' separates PyTorch module paths, so the
    graph is named ``mobilenetv2_1_00_96`` and the model builds and loads its weights."""
    keras.utils.set_random_seed(11)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=4)
    assert model.name == "mobilenetv2_0.35_32"
    path = tmp_path / "mnv2.keras"
    model.save(path)
    net = load_model(str(path))
    assert net.name == net.layers[0].name == "mobilenetv2_0_35_32"
    x = np.random.default_rng(11).random((2, 32, 32, 3), dtype=np.float32)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4, rtol=0)


def test_num_classes_resizes_the_classifier_of_a_keras_file(tmp_path: Path) -> None:
    """A Keras model made for 10 classes trains on 3 with --num-classes 3: its last Dense gets 3 outputs, the
    archive's other weights load, the classifier starts new (and without --num-classes the error asks for it)."""
    image_folder(tmp_path / "imgs", np.random.default_rng(12))
    keras.utils.set_random_seed(12)
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv"), L.Flatten(name="flatten"),
                              L.Dense(10, activation="softmax", name="logits")], name="ten")
    archive = tmp_path / "ten.keras"
    model.save(archive)
    env = {**os.environ, "PYTHONPATH": SRC, "CNNLAB_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "cnnlab", "train", str(archive), "--data", str(tmp_path / "imgs"), "--epochs", "1",
            "--batch-size", "4", "--no-progress", "--device", "cpu"]
    r = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and r.stderr.strip() == ("cnnlab: error: ten outputs 10 values but the data has 3 classes; "
                                                      "build it with --num-classes 3"), r.stderr
    r = subprocess.run([*base, "--out", str(tmp_path / "b"), "--num-classes", "3"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    # conv weight and bias load; the classifier's weight and bias (36*4 -> 3) are new
    assert f"loaded 2 of 4 tensors from {archive}; new classifier logits (3 classes, the file's has 10)" in r.stdout
    from cnnlab.train import checkpoint

    ck = checkpoint.load(tmp_path / "b" / "last.pt")
    assert tuple(ck.model["logits.weight"].shape) == (3, 144)
    assert analyze(ck.net).output_shape == (3,)


def _base_functional() -> keras.Model:
    x = inp = keras.Input((12, 12, 3))
    y = L.Conv2D(6, 3, padding="same", name="conv_a")(x)
    y = L.BatchNormalization(name="bn_a")(y)
    y = L.ReLU(name="relu_a")(y)
    z = L.Conv2D(6, 1, name="conv_b")(x)
    return keras.Model(inp, L.Add(name="sum")([y, z]), name="base.v1")


def _randomized(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in v.path or "gamma" in v.path
                       else rng.standard_normal(w.shape).astype("float32") * 0.5
                       for v, w in zip(model.weights, model.get_weights())])
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_used_as_a_layer(tmp_path: Path, suffix: str) -> None:
    """Transfer learning's usual shape: a base model as a layer of a Sequential (seed 003's VGG16 conv base) or a
    Functional model. Its layers become one node named after it; counts, shapes and loaded outputs equal Keras'
    (weights keyed by scope in Keras 3 files, by layer name in legacy ones)."""
    keras.utils.set_random_seed(13)
    seq_model = keras.Sequential([keras.Input((12, 12, 3)), _base_functional(), L.MaxPooling2D(name="pool"),
                                  L.Flatten(name="flatten"), L.Dense(4, name="head")], name="transfer")
    inner = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(5, 3, name="c1"), L.ReLU(name="r1"),
                              L.Conv2D(7, 3, name="c2")], name="trunk")
    x = inp = keras.Input((12, 12, 3))
    f_model = keras.Model(inp, L.Dense(3, name="logits")(L.GlobalAveragePooling2D(name="gap")(inner(x))), name="tl")
    rng = np.random.default_rng(13)
    data = rng.standard_normal((2, 12, 12, 3)).astype("float32")
    for model, node in ((seq_model, "base_v1"), (f_model, "trunk")):  # a chain of layers: no prefix
        model = _randomized(model, 13)
        path = tmp_path / f"{model.name}{suffix}"
        model.save(path)
        from cnnlab.network import load_spec, save_spec

        save_spec(load_model(str(path)), tmp_path / f"{model.name}.yaml")  # the scopes survive a spec
        net = load_spec(tmp_path / f"{model.name}.yaml")
        a = analyze(net)
        assert (a.totals["params"], a.totals["buffers"]) == counts(model)
        assert a.output_shape == channels_first(model.output_shape)
        assert any(x.name.startswith(node + ".") for x in a.layers), [x.name for x in a.layers]
        module = load_keras_weights(cnnlab.build(net).eval(), net, path)
        with torch.no_grad():
            got = module(torch.from_numpy(data.transpose(0, 3, 1, 2))).numpy()
        want = model.predict(data, verbose=0)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
        assert np.abs(want).max() > 0.1
    # base: conv_a 27*6+6 = 168, bn_a 12 (+12 buffers), conv_b 3*6+6 = 24; head 6*6*6*4+4 = 868
    assert counts(seq_model) == (168 + 12 + 24 + 868, 12)
    seq_model.layers[0].trainable = False  # a frozen base: Keras counts its weights as non-trainable
    net = from_config(json.loads(seq_model.to_json()))
    assert analyze(net).totals["params"] == 168 + 12 + 24 + 868
    assert net.meta["notes"] == ["Keras marks 'base.v1' as not trainable (a frozen base): its weights count as "
                                 "parameters here and as non-trainable in Keras; train with --freeze base_v1 to keep "
                                 "them (and what comes before it)"]


def test_keras1_functional_merge() -> None:
    """Keras 1 wrote residual sums and concatenations as one Merge layer with a mode (and [name, 0, 0] inbound
    nodes): sum is Add, concat Concatenate on concat_axis; other modes are refused by name."""
    def layer(cls: str, name: str, ins: list[str], **cfg: object) -> dict:
        return {"class_name": cls, "name": name, "config": {"name": name, **cfg},
                "inbound_nodes": [[[i, 0, 0] for i in ins]] if ins else []}

    model = {"class_name": "Model", "keras_version": "1.1.2", "config": {
        "name": "k1res", "input_layers": [["in", 0, 0]], "output_layers": [["cat", 0, 0]], "layers": [
            layer("InputLayer", "in", [], batch_input_shape=[None, 8, 8, 4]),
            _conv_k1("a", 4, (3, 3), border_mode="same") | {"name": "a", "inbound_nodes": [[["in", 0, 0]]]},
            layer("Merge", "sum", ["a", "in"], mode="sum", concat_axis=-1),
            layer("Merge", "cat", ["sum", "in"], mode="concat", concat_axis=-1)]}}
    a = analyze(from_config(model))
    assert a.output_shape == (8, 8, 8)  # 4 + 4 channels
    assert a.totals["params"] == 36 * 4 + 4
    model["config"]["layers"][3]["config"]["mode"] = "ave"
    with pytest.raises(CnnlabError, match=r"Keras 1 layer 'cat' \(Merge\) with mode 'ave' is not supported; cnnlab "
                                          r"reads the modes sum, concat, mul, max"):
        from_config(model)


def outputs_match_keras(model: keras.Model, net: cnnlab.network.Network, path: Path, seed: int) -> None:  # type: ignore[name-defined]
    """Saved by Keras and loaded into the built module, the weights give Keras' outputs (maps channels-first)."""
    model.save(path)
    module = load_keras_weights(cnnlab.build(net).eval(), net, path)
    data = np.random.default_rng(seed).standard_normal((2, *model.input_shape[1:])).astype("float32")
    with torch.no_grad():
        got = module(torch.from_numpy(data.transpose(0, 3, 1, 2))).numpy()
    want = model.predict(data, verbose=0)
    np.testing.assert_allclose(got, want.transpose(0, 3, 1, 2) if want.ndim == 4 else want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("k", "s", "padding", "out_pad", "cut"), [
    (2, 2, "same", None, None),     # U-Net's up-convolution: 8 -> 16, nothing to cut
    (4, 2, "same", None, None),     # full 18, cut 1 on each side: the ConvTranspose's own padding
    (3, 1, "same", None, None),     # full 10, cut 1 on each side
    (3, 2, "valid", None, None),    # full 17, kept
    (1, 2, "valid", None, None),    # full 15, one more row and column at the end (output_padding 1)
    (3, 2, "same", None, (0, 1, 0, 1)),  # full 17, TensorFlow cuts the last row and column: a Crop
])
def test_conv2d_transpose_and_upsampling(tmp_path: Path, k: int, s: int, padding: str, out_pad: object,
                                         cut: tuple | None) -> None:
    keras.utils.set_random_seed(14)
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2DTranspose(4, k, strides=s, padding=padding, output_padding=out_pad, name="up")(x)
    x = L.UpSampling2D(2, name="nearest")(x)
    model = _randomized(keras.Model(inp, x, name="dec"), 14)
    net = from_config(json.loads(model.to_json()))
    a = check_against_keras(model, net)
    assert a.totals["params"] == 3 * 4 * k * k + 4
    up = net.layers[0]
    assert (getattr(up, "children", (None, None))[1].crop if cut else None) == cut
    if cut is None:  # Keras' torch backend aligns these cases as TensorFlow does
        outputs_match_keras(model, net, tmp_path / "dec.keras", 14)


def test_conv2d_transpose_follows_tensorflow_where_backends_differ() -> None:
    """Kernel 3, stride 2, 'same': TensorFlow's transposed conv is the gradient of its 'same' conv, which pads
    0 rows on top and 1 below; Keras' torch backend shifts it by a pixel (and warns). cnnlab follows TensorFlow,
    where such weights were trained: checked against that gradient, worked out with autograd here."""
    import torch.nn.functional as F

    from cnnlab.importers.keras import _conv_transpose
    from cnnlab.network import Network, seq

    n = 8
    net = Network("t", (seq("up", *_conv_transpose({"filters": 4, "kernel_size": [3, 3], "strides": [2, 2],
                                                    "padding": "same"}, "up")),), (3, n, n))
    module = cnnlab.build(net).eval()
    w, bias = module.up.conv.weight.detach(), module.up.conv.bias.detach()
    u = torch.randn(1, 3, n, n, generator=torch.Generator().manual_seed(15))
    x = torch.zeros(1, 4, 2 * n, 2 * n, requires_grad=True)
    y = F.conv2d(F.pad(x, (0, 1, 0, 1)), w, stride=2)  # TensorFlow's 'same': (n - 1)*2 + 3 - 2n = 1 pad, at the end
    assert y.shape == (1, 3, n, n)
    (y * u).sum().backward()
    with torch.no_grad():
        torch.testing.assert_close(module(u), x.grad + bias.view(1, -1, 1, 1))


def test_a_vector_reshaped_into_a_map(tmp_path: Path) -> None:
    """A decoder's opening (DCGAN, autoencoders): Dense -> Reshape((H, W, C)) -> Conv2DTranspose. Keras lays the
    vector out as (H, W, C); cnnlab reads it in that order, so Keras' own weights give Keras' outputs."""
    keras.utils.set_random_seed(16)
    model = _randomized(keras.Sequential([
        keras.Input((8, 8, 3)), L.Flatten(name="flat"), L.Dense(4 * 4 * 8, name="code"), L.Reshape((4, 4, 8), name="map"),
        L.Conv2DTranspose(3, 2, strides=2, padding="same", name="up")], name="decoder"), 16)
    net = from_config(json.loads(model.to_json()))
    a = check_against_keras(model, net)
    assert a.layer("map").output_shape == (8, 4, 4) and a.output_shape == (3, 8, 8)
    # code 192*128+128 = 24,704; up 8*3*2*2+3 = 99
    assert a.totals["params"] == 24_704 + 99
    outputs_match_keras(model, net, tmp_path / "decoder.keras", 16)
    bad = json.loads(model.to_json())
    next(x for x in bad["config"]["layers"] if x["class_name"] == "Reshape")["config"]["target_shape"] = [0, -1]
    with pytest.raises(CnnlabError, match=r"Keras layer 'map': cannot reshape 128 values to \[0, -1\]"):
        from_config(bad)


def test_a_sequential_that_starts_with_a_model() -> None:
    """``Sequential([base, GlobalAveragePooling2D(), Dense(1)])`` with no Input of its own: the input is the
    base model's (tf.keras 2 wrote no build_config); with none anywhere, --input gives it."""
    keras.utils.set_random_seed(17)
    base = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(4, 3, name="c")], name="base")
    model = keras.Sequential([base, L.GlobalAveragePooling2D(name="gap"), L.Dense(1, name="out")], name="top")
    model.build((None, 12, 12, 3))
    cfg = json.loads(model.to_json())
    for entry in cfg["config"]["layers"]:
        entry.pop("build_config", None)
    cfg["config"]["layers"] = [e for e in cfg["config"]["layers"] if e["class_name"] != "InputLayer"]
    a = analyze(from_config(cfg))
    assert a.input_shape == (3, 12, 12) and a.totals["params"] == counts(model)[0] == 27 * 4 + 4 + 5
    inner = cfg["config"]["layers"][0]["config"]["layers"]
    cfg["config"]["layers"][0]["config"]["layers"] = [e for e in inner if e["class_name"] != "InputLayer"]
    assert analyze(from_config(cfg)).input_shape == (3, 12, 12)  # Keras 3's build_config of the first layer
    for entry in cfg["config"]["layers"][0]["config"]["layers"]:
        entry.pop("build_config", None)
    with pytest.raises(CnnlabError, match=r"does not state its input shape; give it with --input CxHxW"):
        from_config(cfg)
    assert analyze(from_config(cfg, input_shape=(3, 10, 10))).layer("base.c").output_shape == (4, 8, 8)
