"""Analysis == real forward pass for every zoo model, at its design input and one other size."""

from __future__ import annotations

import pytest

from cnnlab import zoo
from verify import verify

# Models whose second size needs care (a size where every division still works).
ALT_SIZE: dict[str, tuple[int, int]] = {}


def _sizes(name: str) -> list[tuple[int, int, int]]:
    c, h, w = zoo.info(name).input
    alt = ALT_SIZE.get(name, (h + 32, w + 48))
    return [(c, h, w), (c, *alt)]


@pytest.mark.parametrize("name", zoo.names())
def test_analysis_matches_forward(name: str) -> None:
    net = zoo.get(name)
    for shape in _sizes(name):
        verify(net, shape)
