"""Ranking: each candidate priced with the same analysis, sorted, duplicates dropped."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..network import network_to_spec
from .results import UPSAMPLE_AREA, Candidate, Edit, Fix
from .runs import Context, edited, n_rows, repeated_map, run_at


def _price(c: Context, cand: Candidate) -> tuple[tuple[Any, ...], Fix] | None:
    name, desc, changes, own, shape = cand.name, cand.description, cand.changes, cand.edits, cand.input
    edits = (*c.requested, *own, Edit("input", value=shape))
    net = edited(c, [*own, Edit("input", value=shape)])
    r = run_at(net, shape)
    if not r.ok:
        return None
    assert r.a is not None
    remaining = [f"{p}: {'HW'[i]} drops {n_rows(ax.dropped, i)}" for p, i, ax in r.drops()]
    repeats = repeated_map(r)
    if repeats:
        remaining.append(repeats)
    area = shape[1] * shape[2] / (c.shape[1] * c.shape[2])
    if area > UPSAMPLE_AREA:
        remaining.append(f"input: upsampled {area:.1f}x in area")
    enlarges = area > UPSAMPLE_AREA or bool(repeats)
    params, macs = r.totals["params"], r.totals["macs"]
    design = c.before.by_name()
    new = tuple(ly.name for ly in r.a.layers if ly.params and (ly.name not in design or
                                                               design[ly.name].params != ly.params))
    keeps = not set(new) - c.class_paths
    if remaining:
        desc += f" (leaves {', '.join(remaining)})"
    distortion = sum(abs(m - n) / n for m, n in zip(shape[1:], c.shape[1:]))
    key = (len(r.drops()), enlarges, not keeps, round(abs(params - c.base_params) / max(c.base_params, 1), 6),
           round(distortion, 6), len(changes), macs)
    return key, Fix(0, name, desc, tuple(changes), tuple(shape), params, macs, tuple(remaining), keeps, edits, new)


def rank(c: Context, cands: list[Candidate]) -> list[Fix]:
    priced = [p for p in (_price(c, x) for x in cands) if p]
    priced.sort(key=lambda kf: kf[0])
    seen: set[str] = set()
    fixes: list[Fix] = []
    for _, f in priced:
        if "+" in f.name and f.name.startswith("match-channels") and not f.keeps_weights:
            continue  # the channel change in a fix that retrains anyway: the same fix without it is listed
        sig = json.dumps([list(f.input), network_to_spec(edited(c, f.edits))["layers"]], default=str)
        if sig not in seen:
            seen.add(sig)
            fixes.append(replace(f, id=len(fixes) + 1))
    return fixes
