"""Fine-tuning: which parameters train, at what rate, and when frozen ones thaw.

A frozen parameter has ``requires_grad=False`` and sits in no optimizer group, so it gets neither a
gradient nor optimizer state; a BatchNorm whose parameters are all frozen runs in eval mode, or
its running statistics would drift with the new data while its scale and shift stay fixed. The
plan is derived from the module and the recipe alone, so a resumed run rebuilds the same groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import CnnlabError
from .weights import head_of, under


@dataclass
class Plan:
    """``frozen``: parameter names frozen in the first phase; ``thaw``: those unfrozen later."""

    head: str
    frozen: set[str] = field(default_factory=set)
    thaw: set[str] = field(default_factory=set)
    thaw_name: str = ""


def frozen_names(model: nn.Module, spec: str, head: str) -> set[str]:
    """``backbone``: every parameter outside the classifier; a layer name: that layer and all before it."""
    names = [n for n, _ in model.named_parameters()]
    if spec == "backbone":
        return {n for n in names if not under(n, head)}
    modules = [n for n, _ in model.named_modules() if n]
    if spec not in modules:
        tops = ", ".join(n for n, _ in model.named_children())
        raise CnnlabError(f"unknown layer '{spec}' in --freeze: give backbone or a layer of the network ({tops}, "
                          "or a dotted path such as their parts; see 'cnnlab summary MODEL')")
    upto: set[str] = set()
    for n in modules:  # registration order is forward order
        upto.add(n)
        if n == spec:
            break
    upto |= {n for n in modules if under(n, spec)}
    frozen = {n for n in names if n.rpartition(".")[0] in upto}
    if under(head, spec) or head in upto:
        raise CnnlabError(f"--freeze {spec} would freeze the classifier {head} too, leaving nothing to train; "
                          "freeze an earlier layer or use --freeze backbone")
    return frozen


def make_plan(model: nn.Module, freeze: str, unfreeze: str) -> Plan:
    head = head_of(model)
    plan = Plan(head, frozen_names(model, freeze, head))
    if unfreeze == "all":
        plan.thaw, plan.thaw_name = set(plan.frozen), "every frozen layer"
        return plan
    # the top block: the last top-level part of the network that holds frozen parameters
    for name, child in reversed(list(model.named_children())):
        part = {f"{name}.{n}" for n, _ in child.named_parameters()} & plan.frozen
        if part:
            plan.thaw, plan.thaw_name = part, name
            break
    return plan


def apply(model: nn.Module, plan: Plan | None, thawed: bool) -> None:
    """Set ``requires_grad`` for the phase: frozen, or frozen less the thawed block."""
    still = set() if plan is None else plan.frozen - (plan.thaw if thawed else set())
    for n, p in model.named_parameters():
        p.requires_grad_(n not in still)


def param_groups(model: nn.Module, plan: Plan | None, lr: float, lr_backbone: float | None,
                 thawed: bool) -> list[dict[str, Any]]:
    """The optimizer's groups: the classifier at ``lr``, other trainable parameters at ``lr_backbone``
    (default ``lr``), thawed ones last (at ``lr_backbone``, default lr/10), so the group list of a
    second phase extends the first's and a resumed optimizer state fits."""
    head = plan.head if plan is not None else head_of(model)
    frozen = plan.frozen if plan is not None else set()
    back = (lr_backbone or lr) / lr
    groups = [{"params": [], "lr_scale": 1.0, "part": "head"}, {"params": [], "lr_scale": back, "part": "backbone"},
              {"params": [], "lr_scale": (lr_backbone or lr / 10) / lr, "part": "thawed"}]
    for n, p in model.named_parameters():
        if n in frozen:
            if thawed and plan is not None and n in plan.thaw:
                groups[2]["params"].append(p)
        else:
            groups[0 if under(n, head) else 1]["params"].append(p)
    return [g for g in groups if g["params"]]


def thaw_group(model: nn.Module, plan: Plan, lr: float, lr_backbone: float | None) -> dict[str, Any]:
    return next(g for g in param_groups(model, plan, lr, lr_backbone, True) if g["part"] == "thawed")


def freeze_batchnorm(model: nn.Module) -> None:
    """Eval mode for BatchNorm layers whose parameters are all frozen (call after ``model.train()``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def counts(model: nn.Module, head: str) -> list[tuple[str, int, int]]:
    """(part, trainable, frozen) parameter counts for the classifier and the rest."""
    rows = {"classifier " + head: [0, 0], "backbone": [0, 0]}
    for n, p in model.named_parameters():
        row = rows["classifier " + head] if under(n, head) else rows["backbone"]
        row[0 if p.requires_grad else 1] += p.numel()
    return [(k, a, b) for k, (a, b) in rows.items()]
