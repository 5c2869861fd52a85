"""The network description: a tree of layers, sequences, parallel branches and residual sums.

One description drives analysis, adaptation, the PyTorch module and reports. Names are the
module paths of the built PyTorch module, so ``layer1.0.conv1`` here is ``layer1.0.conv1.weight``
in its ``state_dict``.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import CnnlabError
from .layers import LAYER_TYPES, Layer, Shape
from .validate import (
    MAX_DEPTH,
    MAX_NAME,
    check_input,
    check_layer,
    check_layer_keys,
    check_meta,
    check_name,
    load_json,
    load_yaml,
    short,
)

MAX_SPEC_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Sequential:
    """Children run one after another. ``inline`` registers them in the parent's namespace
    (torchvision's Inception v3 names ``Mixed_5b.branch5x5_1`` without a branch level)."""

    name: str
    children: tuple[Node, ...]
    inline: bool = False


@dataclass(frozen=True)
class Concat:
    """Parallel branches on the same input, concatenated along channels (Inception). ``inline``
    registers the branches in the parent's namespace (torchvision's Inception v3 names the two
    halves of a split ``Mixed_7b.branch3x3_2a`` and ``Mixed_7b.branch3x3_2b``)."""

    name: str
    branches: tuple[Node, ...]
    inline: bool = False


@dataclass(frozen=True)
class Residual:
    """``post(shortcut(x) + scale * body(x))``; the shortcut is the identity when None (ResNet)."""

    name: str
    body: tuple[Node, ...]
    shortcut: Node | None = None
    post: tuple[Node, ...] = ()
    scale: float = 1.0


@dataclass(frozen=True)
class Aux:
    """A side head (auxiliary classifier): reads the features here, passes them on unchanged."""

    name: str
    head: tuple[Node, ...]


Node = Layer | Sequential | Concat | Residual | Aux


@dataclass(frozen=True)
class Network:
    """A named network with its design input ``(C, H, W)`` and metadata (paper, year, ...)."""

    name: str
    layers: tuple[Node, ...]
    input_shape: Shape
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _name_children(tuple(self.layers), self.name or "network"))


def seq(name: str, *children: Node, inline: bool = False) -> Sequential:
    return Sequential(name, _name_children(tuple(children), name), inline)


def concat(name: str, *branches: Node, inline: bool = False) -> Concat:
    return Concat(name, _name_children(tuple(branches), name, prefix="branch"), inline)


def is_inline(node: Node) -> bool:
    """Whether ``node`` registers its children in its parent's namespace instead of its own."""
    return isinstance(node, (Sequential, Concat)) and node.inline


def residual(name: str, body: list[Node] | tuple[Node, ...], shortcut: Node | None = None,
             post: list[Node] | tuple[Node, ...] = (), scale: float = 1.0) -> Residual:
    body_t = _name_children(tuple(body), name, check=False)  # checked below, with the shortcut and post
    post_t = _name_children(tuple(post), name, start=body_t, check=False)
    if shortcut is not None and not shortcut.name:
        shortcut = _rename(shortcut, "shortcut")
    node = Residual(name, body_t, shortcut, post_t, scale)
    _check_unique(name, namespace(node))
    return node


def aux(name: str, *head: Node) -> Aux:
    return Aux(name, _name_children(tuple(head), name))


def children(node: Node) -> tuple[Node, ...]:
    """Direct children in execution order (the shortcut of a residual after its body)."""
    if isinstance(node, Sequential):
        return node.children
    if isinstance(node, Concat):
        return node.branches
    if isinstance(node, Residual):
        return node.body + ((node.shortcut,) if node.shortcut is not None else ()) + node.post
    if isinstance(node, Aux):
        return node.head
    return ()


def namespace(node: Node) -> list[Node]:
    """The nodes registered directly under ``node`` (inline sequences and concats expanded)."""
    out: list[Node] = []
    for ch in children(node):
        if is_inline(ch):
            out.extend(namespace(ch))
        else:
            out.append(ch)
    return out


def _rename(node: Node, name: str) -> Node:
    return replace(node, name=name)  # type: ignore[type-var]


def _auto_name(node: Node, counts: dict[str, int], prefix: str | None) -> str:
    base = prefix or type(node).__name__.lower()
    counts[base] = counts.get(base, 0) + 1
    return f"{base}{counts[base]}"


def _name_children(nodes: tuple[Node, ...], owner: str, prefix: str | None = None,
                   start: tuple[Node, ...] = (), check: bool = True) -> tuple[Node, ...]:
    """Name the unnamed ``nodes`` by type and position (after the layers in ``start``); with
    ``check``, refuse two children of one namespace with the same name."""
    named = nodes
    if not all(n.name for n in nodes):  # zoo builders name every node: counting is the rare path
        counts: dict[str, int] = {}
        for n in start:
            if isinstance(n, Layer):
                _auto_name(n, counts, prefix)
        named = tuple(n if n.name else _rename(n, _auto_name(n, counts, prefix)) for n in nodes)
    if check:
        flat: list[Node] = list(start)
        for n in named:
            if is_inline(n):
                flat.extend(namespace(n))
            else:
                flat.append(n)
        _check_unique(owner, flat)
    return named


def _check_unique(owner: str, nodes: list[Node]) -> None:
    names = [n.name for n in nodes]
    if len(set(names)) == len(names):
        return
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CnnlabError(f"'{owner}' has two children named '{name}': give each a distinct name")
        seen.add(name)


# --------------------------------------------------------------------------- spec files

_NODE_KEYS = {"Sequential": "layers", "Concat": "branches", "Residual": "body", "Aux": "head"}


def node_to_spec(node: Node) -> dict[str, Any]:
    """A plain dict (JSON/YAML-ready) with only non-default fields."""
    if isinstance(node, Layer):
        out: dict[str, Any] = {"type": type(node).__name__}
        for f in fields(node):
            v = getattr(node, f.name)
            default = f.default if f.default is not MISSING else None
            if f.name == "name" and v or (f.name != "name" and v != default):
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out
    kind = type(node).__name__
    out = {"type": kind, "name": node.name}
    if isinstance(node, Sequential):
        out["layers"] = [node_to_spec(c) for c in node.children]
        if node.inline:
            out["inline"] = True
    elif isinstance(node, Concat):
        out["branches"] = [node_to_spec(c) for c in node.branches]
        if node.inline:
            out["inline"] = True
    elif isinstance(node, Residual):
        out["body"] = [node_to_spec(c) for c in node.body]
        if node.shortcut is not None:
            out["shortcut"] = node_to_spec(node.shortcut)
        if node.post:
            out["post"] = [node_to_spec(c) for c in node.post]
        if node.scale != 1.0:
            out["scale"] = node.scale
    elif isinstance(node, Aux):
        out["head"] = [node_to_spec(c) for c in node.head]
    return out


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


_CONTAINER_FIELDS = {"Sequential": {"layers", "inline"}, "Concat": {"branches", "inline"},
                     "Residual": {"body", "shortcut", "post", "scale"}, "Aux": {"head"}}


def _node_list(d: dict[str, Any], key: str, where: str, depth: int, required: bool = True) -> list[Node]:
    v = d.get(key, None if required else [])
    if not isinstance(v, list) or (required and not v):
        raise CnnlabError(f"{where}: {d['type']} needs '{key}': a non-empty list of layers, got {short(v)}")
    return [node_from_spec(c, where, depth + 1) for c in v]


def node_from_spec(d: dict[str, Any], where: str = "spec", depth: int = 0) -> Node:
    """One node of a spec. Keys, names and container fields are checked here; layer values once the
    tree is named (``network_from_spec``), so a bad value is refused on reading, never in training."""
    if depth > MAX_DEPTH:
        raise CnnlabError(f"{where}: layers nested more than {MAX_DEPTH} levels deep")
    if not isinstance(d, dict) or "type" not in d:
        raise CnnlabError(f"{where}: each layer needs a 'type' (one of {', '.join(sorted(LAYER_TYPES))})")
    kind = d["type"]
    if not isinstance(kind, str):
        raise CnnlabError(f"{where}: 'type' must be a layer type name such as Conv, got {short(kind)}")
    name = check_name(d.get("name", ""), where)
    if kind in _CONTAINER_FIELDS:
        unknown = [k for k in d if k not in _CONTAINER_FIELDS[kind] | {"type", "name"}]
        if unknown:
            raise CnnlabError(f"{where}: bad fields for {kind}: unknown field {short(unknown[0])}; {kind} takes "
                              f"name, {', '.join(sorted(_CONTAINER_FIELDS[kind]))}")
        inline = d.get("inline", False)
        if type(inline) is not bool:
            raise CnnlabError(f"{where}: {kind} field 'inline' must be true or false, got {short(inline)}")
        inner = f"{where}.{name}" if name else where
        if kind == "Sequential":
            return seq(name, *_node_list(d, "layers", inner, depth, required=False), inline=inline)
        if kind == "Concat":
            return concat(name, *_node_list(d, "branches", inner, depth), inline=inline)
        if kind == "Residual":
            sc = d.get("shortcut")
            scale = d.get("scale", 1.0)
            if type(scale) not in (int, float) or not math.isfinite(scale):
                raise CnnlabError(f"{where}: Residual field 'scale' must be a finite number, got {short(scale)}")
            return residual(name, _node_list(d, "body", inner, depth),
                            node_from_spec(sc, inner, depth + 1) if sc is not None else None,
                            _node_list(d, "post", inner, depth, required=False), float(scale))
        return aux(name, *_node_list(d, "head", inner, depth))
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise CnnlabError(f"{where}: unknown layer type {short(kind)}; use one of {', '.join(sorted(LAYER_TYPES))}")
    args = {k: v for k, v in d.items() if k != "type"}
    check_layer_keys(cls, args, where)
    try:
        return cls(**{k: _tuplify(v) for k, v in args.items()})
    except TypeError as e:
        raise CnnlabError(f"{where}: bad fields for {kind}: {e}") from None


def network_to_spec(net: Network) -> dict[str, Any]:
    return {"name": net.name, "input": list(net.input_shape), "meta": dict(net.meta),
            "layers": [node_to_spec(n) for n in net.layers]}


def network_from_spec(d: dict[str, Any], where: str = "spec") -> Network:
    if not isinstance(d, dict) or "layers" not in d or "input" not in d:
        raise CnnlabError(f"{where}: a network spec needs 'input' ([C, H, W]) and 'layers'")
    unknown = [k for k in d if k not in ("name", "input", "meta", "layers")]
    if unknown:
        raise CnnlabError(f"{where}: unknown top-level key {short(unknown[0])}; a spec has name, input, meta, layers")
    layers = d["layers"]
    if not isinstance(layers, list) or not layers:
        raise CnnlabError(f"{where}: 'layers' must be a non-empty list of layers, got {short(layers)}")
    name = d.get("name")
    if name is None:
        name = Path(where).stem
    elif not isinstance(name, str) or len(name) > MAX_NAME:
        raise CnnlabError(f"{where}: 'name' must be text of at most {MAX_NAME} characters, got {short(name)}")
    net = Network(name, tuple(node_from_spec(x, where) for x in layers), check_input(d["input"], where),
                  check_meta(d.get("meta"), where))
    _check_values(net.layers, where, "")
    return net


def _check_values(nodes: tuple[Node, ...], where: str, prefix: str) -> None:
    """Check every layer's values once the tree is named, so a message names the layer by its path."""
    for n in nodes:
        path = prefix if is_inline(n) else f"{prefix}.{n.name}" if prefix else n.name
        if isinstance(n, Layer):
            check_layer(n, where, path)
        else:
            _check_values(children(n), where, path)


def load_spec(path: str | Path) -> Network:
    """Read a network from a YAML or JSON spec file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CnnlabError(f"cannot read spec file {p}: {e.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise CnnlabError(f"{p}: {len(raw):,} bytes is too large for a spec file (at most {MAX_SPEC_BYTES:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CnnlabError(f"{p}: not UTF-8 text (byte {e.start}): save the spec as UTF-8") from None
    data = load_json(text, str(p)) if p.suffix.lower() == ".json" else load_yaml(text, str(p))
    try:
        return network_from_spec(data, str(p))
    except RecursionError:
        raise CnnlabError(f"{p}: nested too deeply; flatten the spec") from None


def save_spec(net: Network, path: str | Path) -> None:
    p = Path(path)
    data = network_to_spec(net)
    text = json.dumps(data, indent=2) if p.suffix.lower() == ".json" else _yaml_dump(data)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(p)


def _yaml_dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
