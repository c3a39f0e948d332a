"""`nlakit view RUN [RUN …] [--out DIR] [--no-serve] [--export FILE]` (see `view.py`)."""

from __future__ import annotations

import argparse

from nlakit.config import add_config_args, config_from_args


def _cmd_view(args) -> None:
    from nlakit.viewer.view import ViewConfig, view

    view(config_from_args(ViewConfig, args, ViewConfig(runs=list(args.inputs))))


def register(sub, chosen: str | None) -> None:
    p = sub.add_parser("view", help="browse tokens, explanations and errors in the browser")
    p.set_defaults(func=_cmd_view)
    if chosen != "view":
        return
    from nlakit.viewer.view import ViewConfig

    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN",
        help="run directories (after nlakit eval) or parquet tables of explanations",
    )
    p.add_argument(
        "--no-serve",
        dest="serve",
        action="store_false",
        default=argparse.SUPPRESS,
        help="only write the page; do not serve it",
    )
    add_config_args(p, ViewConfig, skip=("runs", "serve"))
