"""`nlakit view RUN [RUN …] [--out DIR] [--no-serve] [--export FILE]` (see `view.py`)."""

from __future__ import annotations

from nlakit.config_cli import add_config, config_from_args


def _cmd_view(args) -> None:
    from nlakit.viewer.view import ViewConfig, view

    view(config_from_args(ViewConfig, args, runs=list(args.inputs)))


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
    add_config(p, ViewConfig, skip=("runs",))  # --serve false, or --no-serve: only write the page
