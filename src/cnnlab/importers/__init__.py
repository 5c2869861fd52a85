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


def module_name(raw: str) -> str:
    """A name from another framework as a PyTorch module name: '.' separates module paths there, so it
    becomes '_' (``mobilenetv2_1.00_224`` -> ``mobilenetv2_1_00_224``); a leading '_' or a name that is a
    ``torch.nn.Module`` attribute (a Caffe layer called ``forward``) gets an ``x`` in front."""
    from ..validate import MAX_NAME, RESERVED_NAMES

    name = "".join(ch if ch.isprintable() else "_" for ch in raw.replace(".", "_"))[:MAX_NAME - 1] or "x"
    return "x" + name if name.startswith("_") or name in RESERVED_NAMES else name
