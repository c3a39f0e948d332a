"""Error types. Every error nlakit raises on bad input is an `NLAKitError`, so the
CLI can print its message (file, field, expected vs actual, what to do) without a
traceback."""

from __future__ import annotations


class NLAKitError(Exception):
    """Base class for user-facing errors: the message is the whole story."""


class MetaError(NLAKitError, ValueError):
    """A sidecar (`nla_meta.yaml`) is missing, malformed, or disagrees with the tokenizer."""


class InjectionError(NLAKitError, ValueError):
    """Activation vectors or marker positions are not what the injection needs."""


class ArchitectureError(NLAKitError, ValueError):
    """A model's layout is not one nlakit knows how to read, or a layer is out of range."""


class CheckpointError(NLAKitError, ValueError):
    """A checkpoint directory lacks a file or holds an inconsistent one."""


def field_error(
    cls: type[NLAKitError],
    source: str | None,
    field: str,
    expected: object,
    actual: object,
    fix: str = "",
) -> NLAKitError:
    """Build an error that names the file, the field, expected vs actual, and the fix."""
    where = f"{source}: " if source else ""
    message = f"{where}field `{field}`: expected {expected}, got {actual}."
    if fix:
        message += f" {fix}"
    return cls(message)


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency, or raise an `NLAKitError` saying how to install it
    (`pip install 'nlakit[extra]'`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise NLAKitError(
            f"{purpose} needs the `{package}` package, which is not installed: "
            f"pip install 'nlakit[{extra}]' (or pip install {package})"
        ) from None
