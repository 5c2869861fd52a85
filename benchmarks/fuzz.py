"""Fuzz the spec reader and the command line at scale (issue 13): N random specs, N random command
lines and N random training command lines, each checked as in tests/test_property_hardening.py.

    PYTHONPATH=src python benchmarks/fuzz.py [-n 10000] [--seed 0]

Prints how many inputs ran, the outcomes, and every breach of the contract (a traceback, an exit code
other than 0 or 2, a multi-line error, an analysis that differs from the torch forward pass).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzzing import (  # noqa: E402
    check_command,
    check_parse,
    check_spec,
    command_lines,
    spec_texts,
    training_command_lines,
)


def fuzz(name: str, strategy, check, n: int, rng_seed: int) -> tuple[Counter, list[str]]:
    outcomes: Counter = Counter()
    breaches: list[str] = []

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(example) -> None:
        try:
            outcomes[str(check(example))] += 1
        except Exception as e:  # every breach is counted and shown, the run goes on
            outcomes["BREACH"] += 1
            if len(breaches) < 20:
                breaches.append(f"{example!r:.300}\n    {type(e).__name__}: {str(e)[:300]}\n"
                                f"    {traceback.format_exc().splitlines()[-3].strip()}")

    t0 = time.perf_counter()
    one()
    total = sum(outcomes.values())
    print(f"{name}: {total:,} inputs in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())))
    return outcomes, breaches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="inputs of each kind (default 10,000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))
    spec = folder / "net.yaml"
    spec.write_text("name: fuzz\ninput: [1, 16, 16]\nlayers:\n  - {type: Conv, name: '[/x] c', filters: 4, kernel: 3}\n"
                    "  - {type: MaxPool, kernel: 2}\n  - {type: Flatten}\n  - {type: Dense, name: '=1', units: 3}\n")
    (folder / "metrics.json").write_text('[{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}]')
    breaches: list[str] = []
    for name, strategy, check in (
        ("specs", spec_texts(), lambda s: check_spec(s[1], s[0], folder)),
        ("command lines", command_lines(str(spec), str(folder)), lambda a: f"exit {check_command(a)}"),
        ("training command lines (parsing)", training_command_lines(), lambda a: f"exit {check_parse(a)}"),
    ):
        breaches += fuzz(name, strategy, check, args.n, args.seed)[1]
    for b in breaches:
        print("BREACH", b)
    print(f"breaches: {len(breaches)}")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
