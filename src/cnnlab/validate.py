"""Checks on what a spec file says, before anything is built from it.

A spec is untrusted text: every field is checked against the type the layer dataclass declares
(an ``int`` is an int, not a bool, float or string; sizes are positive; floats are finite), so a bad
value is refused when the file is read rather than when training starts, and the YAML reader bounds
nesting, alias expansion and duplicate keys so a small file cannot take the memory or the stack.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, fields
from functools import cache
from typing import Any

from .errors import CnnlabError

MAX_INT = 2**31 - 1  # sizes beyond this are never a real network and overflow the backends
MAX_DEPTH = 100  # nesting of sequences, branches and blocks
MAX_NAME = 200
MAX_META_ITEMS = 1000
MAX_META_TEXT = 10_000
MAX_YAML_NODES = 1_000_000  # nodes after alias expansion
MAX_YAML_DEPTH = 200

# Attributes of torch.nn.Module: a child with one of these names cannot be registered
# (tests/test_validate.py checks this list against torch).
RESERVED_NAMES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory",
    "smart_apply", "state_dict", "to", "to_empty", "train", "training", "type", "xpu", "zero_grad",
    # attributes of cnnlab's own container modules (torch_backend)
    "aux_heads", "branches", "input_shape", "name", "negate", "node", "nodes", "plan", "side", "sink",
})

# Ranges of float fields, by field name: (low, high, low inclusive, high inclusive).
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "p": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, True),
    "alpha": (0.0, math.inf, True, False),
}
# Int fields that may be 0 (indices rather than sizes).
NONNEGATIVE_INTS = frozenset({"table", "crop", "output_padding"})


def short(v: Any, limit: int = 40) -> str:
    """``repr(v)`` cut to ``limit`` characters: messages stay one short line for any value."""
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def is_int(v: Any) -> bool:
    return type(v) is int


def is_number(v: Any) -> bool:
    return type(v) in (int, float)


def check_name(v: Any, where: str) -> str:
    """A node name: a short string that can be a PyTorch module path component."""
    if not isinstance(v, str):
        raise CnnlabError(f"{where}: name {short(v)} must be a string, e.g. name: conv1")
    if len(v) > MAX_NAME or "." in v or v.startswith("_") or v in RESERVED_NAMES \
            or any(not ch.isprintable() for ch in v):
        raise CnnlabError(f"{where}: name {short(v)} cannot name a module: use at most {MAX_NAME} printable "
                          "characters, no '.', no leading '_' and not a torch.nn.Module attribute")
    return v


def _describe(tp: Any) -> str:
    if tp is int:
        return "a positive integer"
    if tp is float:
        return "a finite number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a non-empty list of ({_describe(args[0])})"
        if len(args) == 2 and args[0] == args[1] is int:
            return "a pair [h, w] of positive integers"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    return str(tp)


def _conforms(v: Any, tp: Any, low: int) -> bool:
    if tp is Any:
        return True
    if tp is int:
        return is_int(v) and low <= v <= MAX_INT
    if tp is float:
        return is_number(v) and math.isfinite(v)
    if tp is bool:
        return type(v) is bool
    if tp is str:
        return isinstance(v, str)
    if tp is type(None):
        return v is None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(v, a, low) for a in typing.get_args(tp))
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            return False
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return 0 < len(v) <= 10_000 and all(_conforms(x, args[0], low) for x in v)
        return len(v) == len(args) and all(_conforms(x, a, low) for x, a in zip(v, args))
    return False


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.init}


def _asymmetric(v: Any) -> bool:
    return v == "same" or isinstance(v, (list, tuple)) and len(v) == 4 and (v[0] != v[1] or v[2] != v[3])


def _check_padding(v: Any) -> bool:
    if v in ("same", "valid"):
        return True
    if is_int(v):
        return 0 <= v <= MAX_INT
    return isinstance(v, (list, tuple)) and len(v) in (2, 4) and all(is_int(x) and 0 <= x <= MAX_INT for x in v)


def check_layer_keys(cls: type, args: dict[str, Any], where: str) -> None:
    """Refuse unknown or missing fields of layer class ``cls``; values are checked by ``check_layer``."""
    kind = cls.__name__
    hints = _hints(cls)
    unknown = [k for k in args if k not in hints]
    if unknown:
        raise CnnlabError(f"{where}: bad fields for {kind}: unknown field {short(unknown[0])}; "
                          f"{kind} takes {', '.join(hints)}")
    required = [f.name for f in fields(cls) if f.init and f.name not in args
                and f.default is MISSING and f.default_factory is MISSING]
    if required:
        raise CnnlabError(f"{where}: bad fields for {kind}: missing required field '{required[0]}'")


def _value_problem(key: str, v: Any, tp: Any) -> str | None:
    """What is wrong with value ``v`` of field ``key`` declared as ``tp``, or None."""
    if key == "padding":
        return None if _check_padding(v) else \
            f"padding {short(v)}: use an int >= 0, [h, w], [top, bottom, left, right], 'same' or 'valid'"
    low = 0 if key in NONNEGATIVE_INTS else 1
    if not _conforms(v, tp, low):
        if is_int(v) and _conforms(1, tp, 1):
            bound = f">= {low}" if v < low else f"<= {MAX_INT:,}"
            return f"{key} must be {bound}, got {short(v)}"
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and tuple[int, int] in typing.get_args(tp):
            return f"{short(v)} is not a size: give {key} as a positive int or a pair [h, w] of positive ints"
        want = _describe(tp)
        return f"{key} must be {want.replace('positive', 'non-negative') if low == 0 else want}, got {short(v)}"
    if key in FLOAT_RANGES:
        lo, hi, lo_in, hi_in = FLOAT_RANGES[key]
        if not ((lo <= v if lo_in else lo < v) and (v <= hi if hi_in else v < hi)):
            return f"{key} must be in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}, got {short(v)}"
    return None


def check_layer(layer: Any, where: str, path: str) -> None:
    """Refuse a layer whose field values do not match the types its dataclass declares (ints are ints,
    not bools, floats or strings; sizes positive; floats finite and in range)."""
    cls = type(layer)
    for key, tp in _hints(cls).items():
        if key == "name":
            continue
        problem = _value_problem(key, getattr(layer, key), tp)
        if problem:
            raise CnnlabError(f"{where}: layer '{path}' ({cls.__name__}): {problem}")
    if getattr(layer, "ceil_mode", False) and _asymmetric(getattr(layer, "padding", 0)):
        # Rounding up decides whether a last window that starts in the right padding counts: with
        # padding that differs per side the backends disagree, so it is refused rather than guessed.
        raise CnnlabError(f"{where}: layer '{path}' ({cls.__name__}): ceil_mode with padding {short(layer.padding)} "
                          "(different per side) is ambiguous: use symmetric padding or a ZeroPad layer before it")


def check_meta(meta: Any, where: str) -> dict[str, Any]:
    """Metadata: a mapping of strings to scalars or small lists/mappings of scalars, bounded in size."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise CnnlabError(f"{where}: 'meta' must be a mapping (paper: ..., year: ...), got {short(meta)}")
    count = 0

    def walk(v: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > MAX_META_ITEMS:
            raise CnnlabError(f"{where}: 'meta' has more than {MAX_META_ITEMS} entries: keep metadata short")
        if v is None or type(v) in (bool, int, float):
            if type(v) is float and not math.isfinite(v):
                raise CnnlabError(f"{where}: 'meta' holds {v}: use finite numbers")
            if type(v) is int and abs(v) > 10**18:
                raise CnnlabError(f"{where}: 'meta' holds an integer of {len(str(abs(v)))} digits: keep it short")
            return v
        if isinstance(v, str):
            if len(v) > MAX_META_TEXT:
                raise CnnlabError(f"{where}: a 'meta' text is longer than {MAX_META_TEXT} characters")
            return v
        if hasattr(v, "isoformat"):  # YAML dates
            return v.isoformat()
        if depth >= 3 or not isinstance(v, (list, dict)):
            raise CnnlabError(f"{where}: 'meta' may hold text, numbers and short lists or mappings of them, "
                              f"not {short(v)}")
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise CnnlabError(f"{where}: 'meta' keys must be text, got {short(k)}")
            out[k] = walk(x, depth + 1)
        return out

    return walk(meta, 0)


def check_input(v: Any, where: str) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or len(v) not in (1, 3) or not all(is_int(x) and 1 <= x <= MAX_INT for x in v):
        raise CnnlabError(f"{where}: 'input' must be [C, H, W] (or [N]) of positive integers, got {short(v)}")
    return tuple(v)


# --------------------------------------------------------------------------- YAML and JSON


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys, deep nesting, cyclic aliases and alias
    expansion beyond ``MAX_YAML_NODES`` nodes (a billion-laughs file)."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise CnnlabError(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for k, _ in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                        if k.value in seen:
                            raise CnnlabError(f"{where}: duplicate key {short(k.value)} (line {k.start_mark.line + 1}): "
                                              "give each key once")
                        seen.add(k.value)
            return super().construct_mapping(node, deep)

    try:
        loader = Loader(text)  # the reader refuses control characters here
    except yaml.YAMLError as e:
        raise CnnlabError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise CnnlabError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise CnnlabError(f"{where}: nested too deeply; flatten the spec") from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise CnnlabError(f"{where}: cannot read a value ({str(e).split(';')[0]}): use numbers of sensible size") from None
    finally:
        loader.dispose()


def _expanded_size(root: Any, where: str) -> int:
    """Nodes of the document with every alias expanded, counted without expanding; refuses cycles."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            kids = _kids(node, yaml)
            sizes[key] = min(1 + sum(sizes[id(k)] for k in kids), MAX_YAML_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in active:
            raise CnnlabError(f"{where}: an alias refers to the node that contains it (a cycle): remove it")
        active.add(key)
        stack.append((node, True))
        for k in _kids(node, yaml):
            if id(k) in active:
                raise CnnlabError(f"{where}: an alias refers to the node that contains it (a cycle): remove it")
            if id(k) not in sizes:
                stack.append((k, False))
    total = sizes[id(root)]
    if total > MAX_YAML_NODES:
        raise CnnlabError(f"{where}: aliases expand to more than {MAX_YAML_NODES:,} nodes: write the spec out "
                          "without nested aliases")
    return total


def _kids(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    return []


def load_json(text: str, where: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, duplicate keys and deep nesting."""
    import json

    def constant(name: str) -> Any:
        raise CnnlabError(f"{where}: {name} is not a number JSON allows: give a finite value")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise CnnlabError(f"{where}: duplicate key {short(k)}: give each key once")
            out[k] = v
        return out

    try:
        return json.loads(text, parse_constant=constant, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise CnnlabError(f"{where}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise CnnlabError(f"{where}: nested too deeply; flatten the spec") from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise CnnlabError(f"{where}: cannot read a value ({str(e).split(';')[0]}): use numbers of sensible size") from None
