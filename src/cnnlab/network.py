"""The network description: a tree of layers, sequences, parallel branches and residual sums.

One description drives analysis, adaptation, the PyTorch module and reports. Names are the
module paths of the built PyTorch module, so ``layer1.0.conv1`` here is ``layer1.0.conv1.weight``
in its ``state_dict``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from .errors import CnnlabError
from .files import write_text
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


@dataclass(frozen=True)
class Merge:
    """A value of a :class:`Graph` made from several others: ``concat`` along channels, ``add``,
    ``mul`` or ``max`` (elementwise, broadcasting as PyTorch does: squeeze-excitation's ``x * scale``;
    Caffe's Eltwise MAX)."""

    name: str
    op: str
    inputs: tuple[str, ...]


MERGE_OPS = ("concat", "add", "mul", "max")


@dataclass(frozen=True)
class Graph:
    """A general DAG: ``nodes`` run in order, node ``i`` reading the value named ``inputs[i]``
    ('' is the graph's input; otherwise a node or a merge). Merges combine several values and are
    worked out when first read; ``output`` names the result ('' for the last node). A concat whose
    branches share layers (DenseNet) is a graph: each layer appears once, not once per path."""

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    merges: tuple[Merge, ...] = ()
    output: str = ""


Node = Layer | Sequential | Concat | Residual | Aux | Graph


@dataclass(frozen=True)
class Network:
    """A named network with its design input ``(C, H, W)`` and metadata (paper, year, ...)."""

    name: str
    layers: tuple[Node, ...]
    input_shape: Shape
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _name_children(tuple(self.layers), self.name or "network"))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the network analysed at its design input."""
        from .analysis import analyze

        return analyze(self)._repr_html_()


def seq(name: str, *children: Node, inline: bool = False) -> Sequential:
    return Sequential(name, _name_children(tuple(children), name), inline)


def concat(name: str, *branches: Node, inline: bool = False) -> Concat:
    return Concat(name, _name_children(tuple(branches), name, prefix="branch"), inline)


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


def graph(name: str, nodes: list[Node] | tuple[Node, ...], inputs: list[str] | tuple[str, ...],
          merges: list[Merge] | tuple[Merge, ...] = (), output: str = "") -> Graph:
    """A :class:`Graph`, checked: every edge names an earlier value, names are distinct, merges
    have a known op and at least two inputs, and the merges form no cycle."""
    nodes_t = _name_children(tuple(nodes), name)
    merges_t = tuple(merges)
    if len(inputs) != len(nodes_t):
        raise CnnlabError(f"graph '{name}': {len(nodes_t)} nodes but {len(inputs)} inputs; give one input per node")
    if not nodes_t:
        raise CnnlabError(f"graph '{name}' has no nodes: give at least one")
    by_merge = {m.name: m for m in merges_t}
    node_names = {n.name for n in nodes_t}
    if len(by_merge) != len(merges_t) or node_names & set(by_merge) or "" in by_merge:
        raise CnnlabError(f"graph '{name}': merge names must be distinct, non-empty and differ from node names")
    for m in merges_t:
        if m.op not in MERGE_OPS or len(m.inputs) < 2:
            raise CnnlabError(f"graph '{name}': merge '{m.name}' needs an op in {', '.join(MERGE_OPS)} "
                              "and at least two inputs")
    seen: set[str] = {""}
    done: set[str] = set()

    def reach(value: str, reader: str, stack: tuple[str, ...] = ()) -> None:
        if value in seen or value in done:
            return
        m = by_merge.get(value)
        if m is None:
            later = "a later node" if value in node_names else "nothing"
            raise CnnlabError(f"graph '{name}': '{reader}' reads '{value}', which names {later}; "
                              "read the input (''), an earlier node or a merge")
        if value in stack:
            raise CnnlabError(f"graph '{name}': merge '{value}' depends on itself")
        for v in m.inputs:
            reach(v, value, (*stack, value))
        done.add(value)

    for n, src in zip(nodes_t, inputs):
        reach(src, n.name)
        seen.add(n.name)
    if output:
        reach(output, "output")
    return Graph(name, nodes_t, tuple(inputs), merges_t, output)


# --------------------------------------------------------------------------- the walker
#
# Every composite kind is described once, here: the parts that hold its children and how values
# (shapes in the analysis, tensors in the PyTorch module) flow through it. Analysis, adaptation,
# the diagram and the PyTorch builder all walk the tree through this table, so a node's path is
# worked out in one place and a new kind is one ``register_kind`` call.


@dataclass(frozen=True)
class Part:
    """Children held in one field of a composite: ``chain`` runs them one after another (layers
    may be inserted there); otherwise each runs on the part's input (a branch). ``single``: the
    field holds one node, not a tuple (a residual's shortcut)."""

    field: str
    nodes: tuple[Node, ...]
    chain: bool = True
    single: bool = False


class Flow(Protocol):
    """What a composite can do with the values flowing through it (shapes or tensors)."""

    def chain(self, nodes: tuple[Node, ...], x: Any) -> Any:
        """Run ``nodes`` one after another on ``x``."""

    def concat(self, xs: list[Any]) -> Any:
        """Concatenate branch outputs along channels."""

    def add(self, body: Any, shortcut: Any, scale: float = 1.0) -> Any:
        """``shortcut + scale * body``."""

    def side(self, nodes: tuple[Node, ...], x: Any) -> None:
        """Run ``nodes`` on ``x`` as a side output (an auxiliary head)."""

    def mul(self, xs: list[Any]) -> Any:
        """The elementwise product of ``xs``, broadcasting (squeeze-excitation's ``x * scale``)."""

    def max(self, xs: list[Any]) -> Any:
        """The elementwise maximum of ``xs``, broadcasting (Caffe's Eltwise MAX, Keras' Maximum)."""


@dataclass(frozen=True)
class Kind:
    """A composite node kind: its parts (in execution order), how it runs, whether it registers
    its children in its parent's namespace, and whether it feeds an auxiliary output."""

    parts: Callable[[Any], tuple[Part, ...]]
    run: Callable[[Any, Any, Flow], Any]
    inline: Callable[[Any], bool] = field(default=lambda node: False)


KINDS: dict[type, Kind] = {}


def register_kind(cls: type, kind: Kind) -> None:
    """Make ``cls`` a composite node that every walker (analysis, adapt, diagram, torch) handles."""
    KINDS[cls] = kind


def _residual_run(n: Residual, x: Any, f: Flow) -> Any:
    y = f.chain(n.body, x)
    s = f.chain((n.shortcut,), x) if n.shortcut is not None else x
    return f.chain(n.post, f.add(y, s, n.scale))


def _aux_run(n: Aux, x: Any, f: Flow) -> Any:
    f.side(n.head, x)
    return x


def _graph_run(g: Graph, x: Any, f: Flow) -> Any:
    values: dict[str, Any] = {"": x}
    merges = {m.name: m for m in g.merges}

    def value(name: str) -> Any:
        if name not in values:
            m = merges[name]
            xs = [value(v) for v in m.inputs]
            if m.op == "concat":
                values[name] = f.concat(xs)
            elif m.op == "mul":
                values[name] = f.mul(xs)
            elif m.op == "max":
                values[name] = f.max(xs)
            else:
                y = xs[0]
                for other in xs[1:]:
                    y = f.add(other, y)
                values[name] = y
        return values[name]

    for node, src in zip(g.nodes, g.inputs):
        values[node.name] = f.chain((node,), value(src))
    return value(g.output or g.nodes[-1].name)


register_kind(Sequential, Kind(lambda n: (Part("children", n.children),), lambda n, x, f: f.chain(n.children, x),
                               lambda n: n.inline))
register_kind(Concat, Kind(lambda n: (Part("branches", n.branches, chain=False),),
                           lambda n, x, f: f.concat([f.chain((b,), x) for b in n.branches]), lambda n: n.inline))
register_kind(Residual, Kind(lambda n: (Part("body", n.body),
                                        *((Part("shortcut", (n.shortcut,), False, True),) if n.shortcut else ()),
                                        Part("post", n.post)), _residual_run))
register_kind(Aux, Kind(lambda n: (Part("head", n.head),), _aux_run))
register_kind(Graph, Kind(lambda n: (Part("nodes", n.nodes, chain=False),), _graph_run))


def kind_of(node: Node) -> Kind:
    kind = KINDS.get(type(node))
    if kind is None:
        raise TypeError(f"not a network node: {node!r}")
    return kind


def is_inline(node: Node) -> bool:
    """Whether ``node`` registers its children in its parent's namespace instead of its own."""
    kind = KINDS.get(type(node))
    return kind is not None and kind.inline(node)


def join(prefix: str, name: str) -> str:
    """The dotted path of ``name`` under ``prefix``: the module path in the built PyTorch module."""
    return f"{prefix}.{name}" if prefix else name


def inner_prefix(node: Node, prefix: str) -> str:
    """The prefix of ``node``'s children: its own path, or its parent's when it is inline."""
    return prefix if is_inline(node) else join(prefix, node.name)


def children(node: Node) -> tuple[Node, ...]:
    """Direct children in execution order (the shortcut of a residual after its body)."""
    if isinstance(node, Layer):
        return ()
    return tuple(n for part in kind_of(node).parts(node) for n in part.nodes)


def namespace(node: Node) -> list[Node]:
    """The nodes registered directly under ``node`` (inline composites expanded)."""
    out: list[Node] = []
    for ch in children(node):
        if is_inline(ch):
            out.extend(namespace(ch))
        else:
            out.append(ch)
    return out


def iter_leaves(nodes: tuple[Node, ...], prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every leaf layer under ``nodes`` with its dotted path, in execution order."""
    for n in nodes:
        if isinstance(n, Layer):
            yield join(prefix, n.name), n
        else:
            yield from iter_leaves(children(n), inner_prefix(n, prefix))


LeafMap = Callable[[str, Layer], tuple[Layer, ...]]


def map_leaves(nodes: tuple[Node, ...], fn: LeafMap, prefix: str = "", chain: bool = True) -> tuple[Node, ...]:
    """``nodes`` with every leaf replaced by the layers ``fn(path, layer)`` gives (none, one, or
    several in a chain; a branch takes exactly one)."""
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, Layer):
            path = join(prefix, n.name)
            new = fn(path, n)
            if len(new) != 1 and not chain:
                raise CnnlabError(f"cannot insert a layer at '{path}': it is a branch, not a step of a sequence")
            out.extend(new)
            continue
        sub = inner_prefix(n, prefix)
        changes: dict[str, Any] = {}
        for part in kind_of(n).parts(n):
            mapped = map_leaves(part.nodes, fn, sub, part.chain and not part.single)
            changes[part.field] = mapped[0] if part.single else mapped
        out.append(replace(n, **changes))  # type: ignore[type-var]
    return tuple(out)


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
    elif isinstance(node, Graph):
        out["nodes"] = [node_to_spec(c) for c in node.nodes]
        out["inputs"] = list(node.inputs)
        if node.merges:
            out["merges"] = [{"name": m.name, "op": m.op, "inputs": list(m.inputs)} for m in node.merges]
        if node.output:
            out["output"] = node.output
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
        at = where if len(where) <= 80 else where[:60] + "..."
        raise CnnlabError(f"{at}: layers nested more than {MAX_DEPTH} levels deep; flatten the network")
    if not isinstance(d, dict) or "type" not in d:
        raise CnnlabError(f"{where}: each layer needs a 'type' (one of {', '.join(sorted(LAYER_TYPES))})")
    kind = d["type"]
    if not isinstance(kind, str):
        raise CnnlabError(f"{where}: 'type' must be a layer type name such as Conv, got {short(kind)}")
    name = check_name(d.get("name", ""), where)
    if kind == "Graph":
        return _graph_from_spec(d, name, where, depth)
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


def _graph_from_spec(d: dict[str, Any], name: str, where: str, depth: int) -> Graph:
    unknown = [k for k in d if k not in ("type", "name", "nodes", "inputs", "merges", "output")]
    if unknown:
        raise CnnlabError(f"{where}: bad fields for Graph: unknown field {short(unknown[0])}; Graph takes "
                          "name, nodes, inputs, merges, output")
    nodes, inputs, merges = d.get("nodes"), d.get("inputs"), d.get("merges", [])
    if not isinstance(nodes, list) or not nodes or not isinstance(inputs, list) or not isinstance(merges, list):
        raise CnnlabError(f"{where}: graph '{name}' needs non-empty 'nodes' and 'inputs' lists (and optionally "
                          "'merges')")
    if not all(isinstance(v, str) for v in inputs) or not isinstance(d.get("output", ""), str):
        raise CnnlabError(f"{where}: graph '{name}': 'inputs' and 'output' name values ('' is the graph's input)")
    ms = []
    for m in merges:
        if (not isinstance(m, dict) or set(m) != {"name", "op", "inputs"} or not isinstance(m["inputs"], list)
                or not all(isinstance(v, str) for v in (m["name"], m["op"], *m["inputs"]))):
            raise CnnlabError(f"{where}: each merge of graph '{name}' needs exactly 'name', 'op' and a list of "
                              f"'inputs' (names), got {short(m)}")
        ms.append(Merge(m["name"], m["op"], tuple(m["inputs"])))
    inner = f"{where}.{name}" if name else where
    return graph(name, [node_from_spec(c, inner, depth + 1) for c in nodes], list(inputs), ms,
                 d.get("output", ""))


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


def check_values(net: Network, where: str) -> Network:
    """``net`` once every node's name can name a module and every layer's values have the types and
    ranges its dataclass declares (what a spec is checked for; importers build layers from files too)."""
    stack = list(net.layers)
    while stack:
        node = stack.pop()
        check_name(node.name, where)
        if not isinstance(node, Layer):
            stack.extend(children(node))
    _check_values(net.layers, where, "")
    return net


def _check_values(nodes: tuple[Node, ...], where: str, prefix: str) -> None:
    """Check every layer's values once the tree is named, so a message names the layer by its path."""
    earlier: dict[str, Layer] = {}
    for path, layer in iter_leaves(nodes, prefix):
        check_layer(layer, where, path)
        problem = share_problem(path, layer, earlier.get(layer.shares)) if layer.shares else None
        if problem:
            raise CnnlabError(f"{where}: {problem}")
        earlier[path] = layer


def share_problem(path: str, layer: Layer, target: Layer | None) -> str | None:
    """Why ``layer`` (at ``path``) cannot call the module of ``target``, the earlier layer its
    ``shares`` names (None: no such layer runs before it), or None when it can. One module serves
    both, so both must be the same type with the same settings."""
    other = layer.shares
    if target is None:
        return (f"layer '{path}' shares weights with '{other}', but no layer of that path runs before it; "
                "name an earlier layer by its dotted path")
    if type(target) is not type(layer):
        return (f"layer '{path}' ({type(layer).__name__}) shares weights with '{other}', a "
                f"{type(target).__name__}; share only between layers of one type")
    for f in fields(layer):
        mine, theirs = getattr(layer, f.name), getattr(target, f.name)
        if f.name not in ("name", "shares") and mine != theirs:
            return (f"layer '{path}' shares weights with '{other}' but its {f.name} is {short(mine)} where "
                    f"'{other}' has {short(theirs)}; give both the same settings")
    return None


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
    write_text(p, json.dumps(data, indent=2) if p.suffix.lower() == ".json" else _yaml_dump(data))


def _yaml_dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
