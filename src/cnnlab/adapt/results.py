"""What an adaptation reports: findings, edits, candidate and ranked fixes, the diagnosis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CnnlabError
from ..layers import AvgPool, Conv, MaxPool, PartialConv, Shape, Subsample, fmt_shape

ROUNDING = {"floor": "floor (PyTorch, TensorFlow)", "ceil": "ceil (Caffe)"}
POOLS = (MaxPool, AvgPool)  # the layers whose rounding mode is selectable (their builders honour ceil_mode)
PADDABLE = (Conv, PartialConv, MaxPool, AvgPool, Subsample)  # exact types whose builders honour any padding
UPSAMPLE_AREA = 1.5  # a fix that enlarges the input area beyond this invents pixels


@dataclass(frozen=True)
class Finding:
    layer: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Edit:
    """One change: ``input`` (value: C, H, W), ``set`` (value: fields of the layer at ``path``),
    ``replace`` (value: the layer that takes its place), ``insert`` (value: a layer placed before
    ``path``) or ``prepend`` (a layer placed first)."""

    op: str
    path: str = ""
    value: Any = None


@dataclass(frozen=True)
class Fix:
    """A ranked option: what it changes, what it costs, and what it leaves unsolved."""

    id: int
    name: str
    description: str
    changes: tuple[str, ...]
    input: Shape
    params: int
    macs: int
    remaining: tuple[str, ...]
    keeps_weights: bool  # every designed weight fits, the resized class layers aside
    edits: tuple[Edit, ...] = field(repr=False, default=())
    new_weights: tuple[str, ...] = ()  # layers whose weights a trained design cannot give, class layers included

    @property
    def weights(self) -> str:
        """Where the weights come from, naming the layers that need new ones."""
        if not self.new_weights:
            return "designed"
        more = len(self.new_weights) - 2
        names = ", ".join(self.new_weights[:2]) + (f" and {more} more" if more > 0 else "")
        return f"designed except {names}" if self.keeps_weights else f"new: {names}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "params": self.params,
                "macs": self.macs, "input": list(self.input), "changes": list(self.changes),
                "remaining": list(self.remaining), "keeps_weights": self.keeps_weights, "weights": self.weights,
                "new_weights": list(self.new_weights)}


@dataclass
class Report:
    """The diagnosis. ``after`` is the network run unchanged at the new input (None when it cannot)."""

    model: str
    design_input: Shape
    input: Shape
    rounding: str
    findings: list[Finding]
    before: dict[str, int]
    after: dict[str, int] | None
    fixes: list[Fix]
    layers: list[dict[str, Any]]
    verdict: str
    error: str | None = None
    min_input: Shape | None = None  # the least change to ``input`` that runs
    min_input_any: Shape | None = None  # the smallest input that runs at all
    other_rounding: dict[str, Any] | None = None

    def _repr_html_(self) -> str:
        """Jupyter's rich display: totals at both inputs, findings, ranked fixes, the verdict."""
        from ..report.notebook import report_html

        return report_html(self)

    def fix(self, key: int | str) -> Fix:
        """A fix by rank (1 = best) or by name."""
        for f in self.fixes:
            if key in (f.id, f.name, str(f.id)):
                return f
        span = f"1-{len(self.fixes)}" if self.fixes else "none"
        raise CnnlabError(f"no fix '{key}' for {self.model} at {fmt_shape(self.input)} (fixes: {span}); "
                          "run 'cnnlab adapt' without --apply to list them")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "design_input": list(self.design_input), "input": list(self.input),
            "rounding": self.rounding, "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings], "before": self.before,
        }
        if self.after is not None:
            d["after"] = self.after
        if self.error:
            d["error"] = self.error
        if self.min_input:
            d["min_input"] = list(self.min_input)
        if self.min_input_any:
            d["min_input_any"] = list(self.min_input_any)
        if self.other_rounding:
            d["other_rounding"] = self.other_rounding
        d["fixes"] = [f.to_dict() for f in self.fixes]
        d["layers"] = self.layers
        return d


@dataclass(frozen=True)
class Candidate:
    """A fix before it is priced: its name, what it does, the changes in words, its own edits
    (on top of the requested ones) and the input it takes."""

    name: str
    description: str
    changes: tuple[str, ...]
    edits: tuple[Edit, ...]
    input: Shape

    def then(self, other: Candidate) -> Candidate:
        """This fix followed by ``other`` (at ``other``'s input)."""
        return Candidate(f"{self.name}+{other.name}", f"{self.description}; then {other.description}",
                         self.changes + other.changes, self.edits + other.edits, other.input)
