"""``cnnlab COMMAND ...``: every module in :mod:`cnnlab.commands` is one command.

Bad input ends with one line on stderr and exit code 2, never a traceback. Command modules
import heavy libraries (torch) inside ``run`` so that the analysis commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .errors import CnnlabError
from .report._safe import safe_text

EPILOG = (
    "Conventions: shapes are channels-first, written CxHxW (e.g. 3x227x227; --layout hwc reads HxWxC). "
    "Params = trainable weights + biases; BatchNorm running statistics are buffers. "
    "MACs = weight multiply-accumulates; FLOPs = 2 x MACs. Connections = (fan_in + 1) x outputs (LeNet-5)."
)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error."""

    commands: dict[str, argparse.ArgumentParser] = {}  # the subcommands' parsers, by name

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {safe_text(message)} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def make_parser() -> Parser:
    from . import __version__, commands

    parser = Parser(prog="cnnlab", description="A workbench for convolutional neural networks.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    mods = [importlib.import_module(f"{commands.__name__}.{m.name}")
            for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    for mod in sorted(mods, key=lambda m: (getattr(m, "ORDER", 50), m.NAME)):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    parser.commands = sub.choices
    return parser


def _warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
    sys.stderr.write(f"cnnlab: warning: {safe_text(message)}\n")


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _warning  # one line, like the errors: no source file or line
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand's help, where its options are listed
        sub = parser.commands.get(getattr(args, "command", None) or "", parser)
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except CnnlabError as e:
        sys.stderr.write(f"cnnlab: error: {safe_text(e)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnlab: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
