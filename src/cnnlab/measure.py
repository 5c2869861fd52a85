"""The measured path: analyze any ``nn.Module`` by running it once on fake tensors.

Where the description (:mod:`cnnlab.analysis`) reasons about layers, this path counts what PyTorch
actually does: every aten op of one forward pass is seen by a dispatch mode, and attributed to the
innermost module running at that moment (forward hooks). The tensors are fake
(``FakeTensorMode``): shapes and dtypes propagate, no arithmetic runs and no activation is stored,
so a 4096x4096 input costs what a 224x224 one does.

Rows: one per call of a leaf module (a module called twice gets two rows, marked ``#1``, ``#2``),
and one per op run directly in a module with children (``layer1.0.add``), in execution order;
modules whose tensors forward never reaches follow, counted and marked. Every parameter and buffer
is counted once, on the row where it is first used; integer buffers (``num_batches_tracked``)
are left out.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .analysis import RF, Analysis, LayerStats
from .errors import CnnlabError
from .network import join

__all__ = ["MEASURED_CONVENTIONS", "ModuleAnalysis", "ModuleStats", "analyze_module", "user_code_error"]

MEASURED_CONVENTIONS = (
    "Measured on fake tensors (one forward, no arithmetic). MACs = multiply-accumulates of conv, "
    "mm/bmm/addmm/baddbmm/matmul and attention (QK^T and AV, whichever kernel runs), per sample; "
    "FLOPs = 2 x MACs (torch.utils.flop_counter's total / 2). Elementwise ops, norms and pooling are not MACs. "
    "Params and buffers are counted once, where first used (integer buffers such as num_batches_tracked left out). "
    "Receptive field 0x0: the path from the input is not geometric (conv, pool, pad, elementwise)."
)

UNKNOWN_RF: RF = ((0, 0), (0, 0))
_aten = torch.ops.aten


@dataclass(slots=True)
class ModuleStats(LayerStats):
    """A row of the measured path: ``path`` is the module's dotted path (the name adds a call mark)."""

    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = LayerStats.to_dict(self)
        d["path"], d["depth"] = self.path, self.depth
        return d


@dataclass
class ModuleAnalysis(Analysis):
    """An :class:`Analysis` of a module, with the memory of a training step measured on the way."""

    measured_memory: dict[str, int] = field(default_factory=dict)

    @property
    def memory(self) -> dict[str, int]:
        return {**Analysis.memory.fget(self), **self.measured_memory}  # type: ignore[attr-defined]


# ---------------------------------------------------------------- MACs by aten op

def _numel(s: Sequence[int]) -> int:
    n = 1
    for d in s:
        n *= int(d)
    return n


def _mm(args: Sequence[Any], out: Any) -> int:  # (n, k) @ (k, m), any batch in front
    return _numel(out.shape) * int(args[0].shape[-1])


def _addmm(args: Sequence[Any], out: Any) -> int:  # bias + (n, k) @ (k, m)
    return _numel(out.shape) * int(args[1].shape[-1])


def _conv(args: Sequence[Any], out: Any) -> int:
    x, w, transposed = args[0], args[1], bool(args[6]) if len(args) > 6 else False
    # Each weight meets each output (input, when transposed) position once.
    return _numel(x.shape if transposed else out.shape) * _numel(w.shape[1:])


def _sdpa(args: Sequence[Any], out: Any) -> int:
    q, k, v = args[0], args[1], args[2]
    lead = _numel(q.shape[:-2])
    length, source = int(q.shape[-2]), int(k.shape[-2])
    return lead * length * source * (int(q.shape[-1]) + int(v.shape[-1]))  # QK^T, then AV


_MACS: dict[Any, Callable[[Sequence[Any], Any], int]] = {
    _aten.mm: _mm, _aten.bmm: _mm, _aten.matmul: _mm, _aten.mv: _mm, _aten.dot: _mm,
    _aten.addmm: _addmm, _aten.baddbmm: _addmm, _aten.addmv: _addmm,
    _aten.convolution: _conv, _aten._convolution: _conv,
}
for _name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
              "_scaled_dot_product_fused_attention_overrideable", "scaled_dot_product_attention"):
    if hasattr(_aten, _name):
        _MACS[getattr(_aten, _name)] = _sdpa

_FRIENDLY = {"native_batch_norm": "batch_norm", "_native_batch_norm_legit": "batch_norm",
             "_native_batch_norm_legit_no_training": "batch_norm", "native_layer_norm": "layer_norm",
             "native_group_norm": "group_norm", "native_dropout": "dropout", "_adaptive_avg_pool2d": "adaptive_avg_pool2d",
             "constant_pad_nd": "pad", "_unsafe_view": "view", "_to_copy": "to"}


def _op_name(func: Any) -> str:
    name = func.overloadpacket.__name__
    if "scaled_dot_product" in name:
        return "scaled_dot_product_attention"
    return _FRIENDLY.get(name, name.removesuffix("_with_indices").lstrip("_"))


# ---------------------------------------------------------------- receptive fields

def _pair(v: Any, default: int) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    if not v:
        return default, default
    return (int(v[0]), int(v[-1]))


def _window(rf: RF, k: tuple[int, int], s: tuple[int, int]) -> RF:
    (rh, jh), (rw, jw) = rf
    return (rh + (k[0] - 1) * jh, jh * s[0]), (rw + (k[1] - 1) * jw, jw * s[1])


def _whole(rf: RF, x: Any) -> RF:
    """The output sees the whole H x W map of ``x``."""
    return _window(rf, (int(x.shape[-2]), int(x.shape[-1])), (1, 1))


_ELEMENTWISE = {_aten.native_batch_norm, _aten._native_batch_norm_legit, _aten._native_batch_norm_legit_no_training,
                _aten.native_dropout, _aten.constant_pad_nd, _aten.clone, _aten._to_copy, _aten.cat, _aten.mm,
                _aten.addmm, _aten.reflection_pad2d, _aten.replication_pad2d, _aten.copy_, _aten.alias}
_WHOLE = {_aten._adaptive_avg_pool2d, _aten.adaptive_max_pool2d, _aten.mean, _aten.sum, _aten.amax}


def _rf_out(func: Any, args: Sequence[Any], out: Any, rfs: list[RF | None]) -> RF | None:
    """The receptive field of ``out`` from those of the derived inputs ``rfs``; None: not geometric."""
    if any(r is None for r in rfs):
        return None
    rf: RF = (max((r[0] for r in rfs), key=lambda a: a[0]), max((r[1] for r in rfs), key=lambda a: a[0]))
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    packet = func.overloadpacket
    four = x is not None and x.dim() == 4
    if packet is _aten.convolution or packet is _aten._convolution:
        if not four or bool(args[6]):
            return None
        w = args[1]
        d = _pair(args[5], 1)
        k = (d[0] * (int(w.shape[2]) - 1) + 1, d[1] * (int(w.shape[3]) - 1) + 1)
        return _window(rf, k, _pair(args[3], 1))
    if packet in (_aten.max_pool2d_with_indices, _aten.max_pool2d, _aten.avg_pool2d):
        if not four:
            return None
        k = _pair(args[1], 1)
        s = _pair(args[2], 0) if len(args) > 2 else (0, 0)
        s = k if s == (0, 0) else s
        d = _pair(args[4], 1) if packet is not _aten.avg_pool2d and len(args) > 4 else (1, 1)
        return _window(rf, (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), s)
    if packet in _WHOLE:
        if not four:
            return None
        dims = {int(d) % 4 for d in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else [])}
        if packet in (_aten.mean, _aten.sum, _aten.amax) and not {2, 3} <= dims:
            return None
        return _whole(rf, x)
    if func.is_view or packet is _aten._unsafe_view:
        if x is None or not isinstance(out, torch.Tensor):
            return None
        if x.dim() == 4 and out.dim() == 2 and out.shape[0] == x.shape[0]:
            return _whole(rf, x)  # flattened: every output sees the whole map
        if x.dim() < 3 or out.dim() < 3 or tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            return None
        return rf
    if packet in (_aten._softmax, _aten._log_softmax):  # over the channels (or a vector's features): each position
        if x is None:
            return None
        dim = int(args[1]) % x.dim()
        return _whole(rf, x) if four and dim >= 2 else rf
    if packet in _ELEMENTWISE or torch.Tag.pointwise in func.tags:
        return rf
    return None


# ---------------------------------------------------------------- the recorder

@dataclass
class _Call:
    module: nn.Module
    path: str
    depth: int
    parent: _Call | None
    index: int  # the module's n-th call (1-based)
    inputs: list[Any] = field(default_factory=list)
    output: Any = None


@dataclass
class _Row:
    name: str
    path: str
    type: str
    kind: str
    depth: int
    call: _Call | None
    input_shape: tuple[int, ...] = ()
    output: Any = None
    params: int = 0
    buffers: int = 0
    macs: int = 0
    findings: list[tuple[str, str]] = field(default_factory=list)


def _first_tensor(x: Any) -> Any:
    for t in tree_flatten(x)[0]:
        if isinstance(t, torch.Tensor):
            return t
    return None


class _Recorder(TorchDispatchMode):
    def __init__(self, paths: dict[int, str], leaves: set[int], owned: dict[StorageWeakRef, tuple[str, str, int]],
                 inputs: list[torch.Tensor]) -> None:
        super().__init__()
        self.paths, self.leaves, self.owned = paths, leaves, owned
        self.stack: list[_Call] = []
        self.calls: dict[int, int] = {}
        self.rows: list[_Row] = []
        self.open: dict[int, _Row] = {}  # id(call) -> the row of a leaf call
        self.used: set[StorageWeakRef] = set()
        self.rf: dict[int, RF | None] = {id(t): ((1, 1), (1, 1)) if t.dim() == 4 else None for t in inputs}
        self.keep: list[Any] = list(inputs)  # keeps ids in ``rf`` from being reused

    # module hooks
    def pre(self, module: nn.Module, args: Any) -> None:
        path = self.paths.get(id(module), type(module).__name__)
        n = self.calls[id(module)] = self.calls.get(id(module), 0) + 1
        depth = path.count(".") if path else -1
        call = _Call(module, path, depth, self.stack[-1] if self.stack else None, n, list(tree_flatten(args)[0]))
        if id(module) in self.leaves:
            x = _first_tensor(args)
            row = _Row(path or type(module).__name__, path, type(module).__name__, _kind(module), max(depth, 0), call,
                       tuple(x.shape) if x is not None else ())
            self.rows.append(row)
            self.open[id(call)] = row
        self.stack.append(call)

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        call = self.stack.pop()
        call.output = output
        row = self.open.pop(id(call), None)
        if row is not None:
            row.output = output

    # ops
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        row = self.row_for(func, flat, out)
        if row is not None:
            counter = _MACS.get(func.overloadpacket)
            if counter is not None:
                row.macs += counter(args, out)
            for t in flat:
                self.touch(row, t)
        derived = [self.rf[id(t)] for t in flat if id(t) in self.rf]
        if derived:
            rf = _rf_out(func, args, out, derived)
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.rf[id(t)] = rf
                    self.keep.append(t)
        return out

    def row_for(self, func: Any, flat: list[torch.Tensor], out: Any) -> _Row | None:
        call = self.stack[-1] if self.stack else None
        if call is not None and id(call) in self.open:
            return self.open[id(call)]
        if func.is_view or func.overloadpacket in (_aten.detach, _aten.lift_fresh) or not flat \
                or _first_tensor(out) is None:
            return None  # views (their base is counted where it is used), constants, queries
        name = _op_name(func)
        path = call.path if call is not None else ""
        depth = (call.depth + 1) if call is not None else 0
        x = flat[0] if flat else None
        packet = func.overloadpacket
        kind = "conv" if packet in (_aten.convolution, _aten._convolution) else "dense" if packet in _MACS else "other"
        row = _Row(join(path, name), join(path, name), name, kind, depth, call, tuple(x.shape) if x is not None else ())
        row.output = out
        self.rows.append(row)
        return row

    def touch(self, row: _Row, t: torch.Tensor) -> None:
        key = StorageWeakRef(t.untyped_storage())
        info = self.owned.get(key)
        if info is None or key in self.used:
            return
        self.used.add(key)
        kind, _, n = info
        if kind == "param":
            row.params += n
        else:
            row.buffers += n


def _kind(m: nn.Module) -> str:
    if isinstance(m, (nn.modules.conv._ConvNd,)):
        return "conv"
    if isinstance(m, (nn.Linear, nn.Bilinear)):
        return "dense"
    return "other"


def _shape(t: Any, batch: int) -> tuple[int, ...]:
    """A tensor's shape per sample: the batch dimension dropped when it leads."""
    if not isinstance(t, torch.Tensor):
        t = _first_tensor(t)
    if t is None:
        return ()
    s = tuple(int(d) for d in t.shape)
    return s[1:] if s and s[0] == batch else s


# ---------------------------------------------------------------- the entry point

Shapes = Sequence[int] | Sequence[Sequence[int]]


def _input_shapes(input_shape: Shapes) -> list[tuple[int, ...]]:
    shapes = [input_shape] if input_shape and isinstance(input_shape[0], int) else list(input_shape)  # type: ignore[list-item]
    if not shapes:
        raise CnnlabError("input_shape is empty: give one shape per input, e.g. (3, 224, 224)")
    out = []
    for s in shapes:
        if not isinstance(s, (tuple, list)) or not all(isinstance(v, int) and v >= 1 for v in s):
            raise CnnlabError(f"input shape {s!r}: give positive integers without the batch, e.g. (3, 224, 224)")
        out.append(tuple(s))
    return out


def user_frames(e: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``e``'s traceback in a user's code: outside cnnlab, torch and Python's own library
    (torchvision and other packages count as the user's: that is where their model is written)."""
    import sysconfig

    ours = tuple(os.path.join(str(Path(d).resolve()), "") for d in (Path(__file__).parent, Path(torch.__file__).parent))
    stdlib = os.path.join(str(Path(sysconfig.get_paths()["stdlib"]).resolve()), "")

    def users(name: str) -> bool:
        path = str(Path(name).resolve())
        if name.startswith("<") or path.startswith(ours):
            return False
        return not path.startswith(stdlib) or "site-packages" in path or "dist-packages" in path

    return [f for f in traceback.extract_tb(e.__traceback__) if users(f.filename)]


def user_code_error(e: BaseException, what: str) -> CnnlabError:
    """One line for an exception raised in a user's code: the innermost frame outside torch and cnnlab."""
    mine = user_frames(e)
    where = f"{mine[-1].filename}:{mine[-1].lineno}: " if mine else ""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "DataDependent" in type(e).__name__ or "DynamicOutputShape" in type(e).__name__:
        msg = (f"{msg} (forward reads tensor values, e.g. .item(), .tolist() or a data-dependent shape; the measured "
               "path runs on shapes only: keep control flow on shapes)")
    return CnnlabError(f"{what} failed: {where}{type(e).__name__}: {msg}".rstrip(": "))


def analyze_module(model: nn.Module, input_shape: Shapes, *, mode: str = "eval", dtype: torch.dtype = torch.float32,
                   batch: int = 1, depth: int | None = None, kwargs: Mapping[str, Any] | None = None,
                   input_dtypes: Sequence[torch.dtype | None] | None = None, name: str | None = None) -> ModuleAnalysis:
    """Analyze ``model`` at ``input_shape`` (one shape without the batch, or a list for several inputs).

    ``mode`` sets train/eval for the run (restored after); ``dtype`` is the floating type of the inputs,
    parameters and buffers; ``input_dtypes`` overrides it per input (e.g. ``torch.long`` for token ids);
    ``kwargs`` are extra keyword arguments of ``forward``; ``depth`` folds deeper rows into their
    ancestor at that depth, as torchinfo does. The model itself is neither changed nor run for real.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    if not isinstance(model, nn.Module):
        raise CnnlabError(f"analyze_module takes an nn.Module, got {type(model).__name__}")
    if mode not in ("eval", "train"):
        raise CnnlabError(f"mode '{mode}': give eval or train")
    if not isinstance(batch, int) or batch < 1:
        raise CnnlabError(f"batch must be an integer >= 1, got {batch!r}")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise CnnlabError(f"depth must be an integer >= 1, got {depth!r}")
    shapes = _input_shapes(input_shape)
    kinds = list(input_dtypes or [None] * len(shapes))
    if len(kinds) != len(shapes):
        raise CnnlabError(f"{len(kinds)} input dtypes for {len(shapes)} inputs: give one per input")

    named_p = list(model.named_parameters(remove_duplicate=False))
    named_b = [(n, b) for n, b in model.named_buffers(remove_duplicate=False) if b is not None]
    modules = list(model.named_modules(remove_duplicate=False))
    paths: dict[int, str] = {}
    aliases: dict[int, list[str]] = {}
    for p, m in modules:
        paths.setdefault(id(m), p)
        aliases.setdefault(id(m), []).append(p)
    leaves = {id(m) for _, m in modules if not any(True for _ in m.children())}

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    notes: list[str] = []
    saved: dict[StorageWeakRef, int] = {}
    with fake_mode:
        fakes: dict[int, torch.Tensor] = {}
        owned: dict[StorageWeakRef, tuple[str, str, int]] = {}
        param_bytes = trainable = buffer_bytes = 0
        tied: dict[int, list[str]] = {}
        for kind, group in (("param", named_p), ("buffer", named_b)):
            for n, t in group:
                tied.setdefault(id(t), []).append(n)
                if id(t) in fakes:
                    continue
                dt = dtype if t.is_floating_point() else t.dtype
                f = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=dt, device="cpu")
                if kind == "param" and t.requires_grad:
                    f.requires_grad_(True)
                fakes[id(t)] = f
                if kind == "buffer" and not t.is_floating_point():
                    continue  # num_batches_tracked, index tables: bookkeeping, not state of the model
                owned[StorageWeakRef(f.untyped_storage())] = (kind, n, t.numel())
                if kind == "param":
                    param_bytes += t.numel() * f.element_size()
                    trainable += t.numel() * f.element_size() if t.requires_grad else 0
                else:
                    buffer_bytes += t.numel() * f.element_size()
        state = {n: fakes[id(t)] for n, t in [*named_p, *named_b]}
        inputs = [torch.empty((batch, *s), dtype=k or dtype, device="cpu") for s, k in zip(shapes, kinds)]
        rec = _Recorder(paths, leaves, owned, inputs)

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = StorageWeakRef(t.untyped_storage())
        if key not in owned:
            saved[key] = t.untyped_storage().nbytes()
        return t

    hooks = []
    for m in {id(m): m for _, m in modules}.values():
        hooks.append(m.register_forward_pre_hook(rec.pre))
        hooks.append(m.register_forward_hook(rec.post))
    was = {id(m): m.training for _, m in modules}
    model.train(mode == "train")
    try:
        with fake_mode, rec, torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            output = torch.func.functional_call(model, state, tuple(inputs), dict(kwargs or {}), strict=False)
    except CnnlabError:
        raise
    except Exception as e:  # the user's forward: one line naming their file and line
        raise user_code_error(e, f"running {type(model).__name__}.forward on {' and '.join(_fmt(s) for s in shapes)}") from None
    finally:
        for h in hooks:
            h.remove()
        for _, m in modules:
            m.training = was[id(m)]

    rows = rec.rows
    # tensors forward never reached: counted on a row of their owner, marked
    left: dict[str, list[int]] = {}
    for key, (kind, n, count) in owned.items():
        if key not in rec.used:
            slot = left.setdefault(n.rpartition(".")[0], [0, 0])
            slot[0 if kind == "param" else 1] += count
    for path, (p, b) in left.items():
        m = model.get_submodule(path) if path else model
        row = _Row(path or type(model).__name__, path, type(m).__name__, _kind(m), path.count(".") if path else 0, None)
        row.params, row.buffers = p, b
        row.findings.append(("unused", f"forward never reaches these {p:,} params and {b:,} buffers: "
                                       "counted in the totals, not run"))
        rows.append(row)
    if left:
        notes.append(f"{sum(v[0] for v in left.values()):,} params and {sum(v[1] for v in left.values()):,} buffers "
                     f"that forward never reaches are counted ({', '.join(p or '(root)' for p in left)})")
    for names in tied.values():
        if len(names) > 1:
            notes.append(f"tied: {', '.join(names)} are one tensor, counted once")
    for ps in aliases.values():
        if len(ps) > 1 and ps[0]:
            notes.append(f"shared: {', '.join(ps)} are one module, its parameters counted once")
    if any(not b.is_floating_point() for _, b in named_b):
        notes.append("integer buffers (num_batches_tracked, index tables) are left out of the buffer counts")
    # a module called several times: one row per call, marked
    counts = rec.calls
    for r in rows:
        if r.call is not None and r.call.path == r.path and counts.get(id(r.call.module), 1) > 1:
            n = counts[id(r.call.module)]
            r.name = f"{r.path or r.type}#{r.call.index}"
            if r.call.index == 1:
                r.findings.append(("repeated", f"{r.path or r.type} runs {n} times: one row per call"))
    if depth is not None:
        rows = _fold(rows, depth, counts)
    _unique_names(rows)
    stats = [_stats(r, rec, batch) for r in rows]
    out_shape = _shape(output, batch)
    b = torch.empty((), dtype=dtype).element_size()
    act_bytes = sum(saved.values())
    measured = {
        "param_bytes": param_bytes, "buffer_bytes": buffer_bytes, "gradient_bytes": trainable,
        "sgd_momentum_bytes": trainable, "adam_bytes": 2 * trainable, "saved_for_backward_bytes": act_bytes,
        "train_sgd_bytes": param_bytes + buffer_bytes + 2 * trainable + act_bytes,
        "train_adam_bytes": param_bytes + buffer_bytes + 3 * trainable + act_bytes,
    }
    meta = {"path": "measured", "mode": mode, "dtype": str(dtype).removeprefix("torch."),
            "inputs": [list(s) for s in shapes], "notes": notes, "conventions": MEASURED_CONVENTIONS}
    a = ModuleAnalysis(name or type(model).__name__, shapes[0], stats, out_shape, batch, b, meta, {},
                       measured_memory=measured)
    return a


def _fmt(s: Sequence[int]) -> str:
    return "x".join(str(v) for v in s)


def _unique_names(rows: list[_Row]) -> None:
    """Ops of the same kind in one module (two ``bmm`` in an attention) are numbered like repeated calls."""
    total: dict[str, int] = {}
    for r in rows:
        total[r.name] = total.get(r.name, 0) + 1
    seen: dict[str, int] = {}
    for r in rows:
        if total[r.name] > 1:
            seen[r.name] = seen.get(r.name, 0) + 1
            r.name = f"{r.name}#{seen[r.name]}"


def _fold(rows: list[_Row], depth: int, counts: dict[int, int]) -> list[_Row]:
    """torchinfo's ``depth``: rows deeper than ``depth`` levels are summed into their ancestor at that level."""
    out: list[_Row] = []
    merged: dict[int, _Row] = {}
    for r in rows:
        if r.depth < depth:
            out.append(r)
            continue
        anc = r.call
        while anc is not None and anc.depth >= depth:
            anc = anc.parent
        if anc is None or anc.depth != depth - 1:  # an unused module: fold by path
            key_path = ".".join(r.path.split(".")[:depth])
            row = next((x for x in out if x.call is None and x.path == key_path), None)
            if row is None:
                row = _Row(key_path, key_path, r.type, r.kind, depth - 1, None)
                out.append(row)
            row.params += r.params
            row.buffers += r.buffers
            row.findings += r.findings
            continue
        row = merged.get(id(anc))
        if row is None:
            n = counts.get(id(anc.module), 1)
            name = f"{anc.path}#{anc.index}" if n > 1 else anc.path
            x = _first_tensor(anc.inputs)
            row = _Row(name, anc.path, type(anc.module).__name__, _kind(anc.module), anc.depth, anc,
                       tuple(x.shape) if x is not None else ())
            merged[id(anc)] = row
            out.append(row)
        row.output = anc.output
        if r.macs > row.macs:
            row.kind = r.kind  # a folded block is conv or dense by where its MACs are
        row.params += r.params
        row.buffers += r.buffers
        row.macs += r.macs
        row.findings += [f for f in r.findings if f[0] != "repeated"]
    return out


def _stats(r: _Row, rec: _Recorder, batch: int) -> ModuleStats:
    t = _first_tensor(r.output)
    rf = rec.rf.get(id(t)) if t is not None else None
    out = _shape(t, batch) if t is not None else ()
    inp = r.input_shape[1:] if r.input_shape and r.input_shape[0] == batch else r.input_shape
    macs = r.macs // batch
    size = _numel(out) if out else 0
    return ModuleStats(r.name, r.type, r.kind, r.depth, inp, out, r.params, r.buffers, macs,
                       macs + size if macs else 0, rf or UNKNOWN_RF, tuple(r.findings), path=r.path)
