"""Mutated Caffe and Keras files end in an answer or in one line, never in a traceback: a prototxt or JSON
config from the importer tests has a few of its values replaced by junk (wrong types, NaN, huge or negative
numbers, empty lists, other enum words), fields deleted or entries repeated, and is read and analysed."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError
from cnnlab.importers.caffe import from_prototxt, parse_prototxt
from cnnlab.importers.keras import from_config
from test_import_caffe import ALEXNET, conv, fc, fire, vgg16_v1

JUNK = [0, -1, 1, 2, 3, 7, 10**12, 2.5, float("nan"), float("inf"), True, False, "abc", "", None, [], [1], [1, 2, 3],
        {}, {"a": [1]}, "same", "valid", "MAX", "AVE", "SUM", "PROD", "FLOOR", -3.5]
CAFFE = [ALEXNET, vgg16_v1(),
         'input: "data"\ninput_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32\n' + conv("conv1", "data", 16, 3, 2)
         + fire("fire2", "conv1", 4, 8) + 'layer { name: "s" type: "Scale" bottom: "fire2/concat" bottom: "fire2/concat" '
         "top: \"s\" scale_param { axis: 0 } }\n" + fc("fc", "s", 10)]
KERAS = [{"class_name": "Functional", "config": {
    "name": "g", "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]], "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [None, 16, 16, 3]},
         "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 4, "kernel_size": [3, 3], "strides": [2, 2],
                                                         "padding": "same", "activation": "relu"},
         "inbound_nodes": [[["in", 0, 0, {}]]]},
        {"class_name": "Conv2DTranspose", "name": "up", "config": {"name": "up", "filters": 4, "kernel_size": 3,
                                                                   "strides": 2, "padding": "same"},
         "inbound_nodes": [[["c", 0, 0, {}]]]},
        {"class_name": "Concatenate", "name": "cat", "config": {"name": "cat", "axis": -1},
         "inbound_nodes": [[["up", 0, 0, {}], ["in", 0, 0, {}]]]},
        {"class_name": "BatchNormalization", "name": "bn", "config": {"name": "bn", "epsilon": 1e-3, "center": True},
         "inbound_nodes": [[["cat", 0, 0, {}]]]},
        {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"},
         "inbound_nodes": [[["bn", 0, 0, {}]]]},
        {"class_name": "Dense", "name": "out", "config": {"name": "out", "units": 5, "activation": "softmax"},
         "inbound_nodes": [[["gap", 0, 0, {}]]]}]}},
    {"class_name": "Sequential", "keras_version": "1.2.1", "config": [
        {"class_name": "Convolution2D", "config": {"name": "c1", "nb_filter": 4, "nb_row": 3, "nb_col": 3,
                                                   "border_mode": "same", "subsample": [1, 1], "dim_ordering": "tf",
                                                   "batch_input_shape": [None, 8, 8, 1]}},
        {"class_name": "MaxPooling2D", "config": {"name": "p", "pool_size": [2, 2], "border_mode": "valid"}},
        {"class_name": "Flatten", "config": {"name": "f"}},
        {"class_name": "Dropout", "config": {"name": "d", "p": 0.5}},
        {"class_name": "Dense", "config": {"name": "o", "output_dim": 3}}]}]


def mutate(rng: random.Random, obj: Any, lists: bool) -> None:
    """Replace, delete or repeat one thing somewhere in ``obj``; ``lists``: every mapping value stays a list
    (a parsed prototxt's shape, which no text can break)."""
    if isinstance(obj, dict) and obj:
        k = rng.choice(list(obj))
        if rng.random() < 0.15:
            del obj[k]
        elif rng.random() < 0.45 or not isinstance(obj[k], (dict, list)):
            v = copy.deepcopy(rng.choice(JUNK))
            obj[k] = [v] if lists and not isinstance(v, list) else v
        else:
            mutate(rng, obj[k], lists)
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        r = rng.random()
        if r < 0.1:
            del obj[i]
        elif r < 0.2:
            obj.insert(i, copy.deepcopy(obj[i]))
        elif isinstance(obj[i], (dict, list)):
            mutate(rng, obj[i], lists)
        else:
            obj[i] = copy.deepcopy(rng.choice(JUNK))


def one_line_or_answer(read: Any) -> None:
    try:
        analyze(read())
    except CnnlabError as e:
        assert "\n" not in str(e), str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(st.randoms(use_true_random=False), st.integers(0, len(CAFFE) - 1), st.integers(1, 3))
def test_mutated_prototxt(rng: random.Random, which: int, times: int) -> None:
    net = parse_prototxt(CAFFE[which])
    for _ in range(times):
        mutate(rng, net, lists=True)
    one_line_or_answer(lambda: from_prototxt(net, "f.prototxt", "f"))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(st.randoms(use_true_random=False), st.integers(0, len(KERAS) - 1), st.integers(1, 3))
def test_mutated_keras_config(rng: random.Random, which: int, times: int) -> None:
    data = copy.deepcopy(KERAS[which])
    for _ in range(times):
        mutate(rng, data, lists=False)
    one_line_or_answer(lambda: from_config(data, "f.json", (3, 16, 16)))
