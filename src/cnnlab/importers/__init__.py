"""Networks written for other frameworks (Keras configs, Caffe prototxt) read into the description."""

from __future__ import annotations


def fresh_name(taken: set[str], base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ... when taken: a layer name no other layer of the import has
    (the name is then taken)."""
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name
