"""Guards for writing: what every command checks before its first byte.

    check_output_file("rows.jsonl", force=False, option="--out")   # refuse to overwrite
    check_output_dir("runs/x", option="--out")                      # a directory we may write
    with locked("runs/x"):                                          # one writer at a time
        ...
    changed_settings(old_config, new_config, allowed=("steps",))    # what --resume would change

A directory is locked with an OS file lock (`filelock`) on `DIR/.nlakit.lock`: a second
command writing the same directory is refused at once, and a lock held by a killed
process is released by the OS, so no stale lock survives a crash.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from nlakit.errors import NLAKitError

LOCK_FILE = ".nlakit.lock"


def check_output_file(path: str | os.PathLike, force: bool = False, option: str = "--out") -> Path:
    """`path` may be written: not an existing file (unless `force`), not a directory, in a
    directory that exists or can be made, and writable."""
    path = Path(path)
    if path.is_dir():
        raise NLAKitError(f"{option} {path}: is a directory; name a file to write.")
    if path.exists() and not force:
        raise NLAKitError(
            f"{option} {path}: exists already; pass --force to overwrite it, or choose "
            "another file."
        )
    _check_writable_parent(path, option)
    return path


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` is a directory nlakit may write to (or create)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NLAKitError(
            f"{option} {path}: is a file, not a directory; choose a directory to write to."
        )
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise NLAKitError(
                f"{option} {path}: is not writable; fix its permissions or choose another "
                "directory."
            )
        return path
    _check_writable_parent(path, option)
    return path


def _check_writable_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of `path` is a writable directory."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NLAKitError(
            f"{option} {path}: {parent} is a file, not a directory; choose another path."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NLAKitError(
            f"{option} {path}: {parent} is not writable; fix its permissions or choose "
            "another path."
        )


@contextlib.contextmanager
def locked(directory: str | os.PathLike, what: str = "directory") -> Iterator[Path]:
    """Hold `directory`'s lock (creating the directory) while the block writes it."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        if created:
            _remove_if_only_lock(directory)
        raise NLAKitError(
            f"{directory}: another nlakit command is writing this {what} now; wait for it "
            "to finish, or choose another directory."
        ) from None
    try:
        yield directory
    finally:
        lock.release()
        if created:  # a command that failed before writing leaves no directory behind
            _remove_if_only_lock(directory)


def _remove_if_only_lock(directory: Path) -> None:
    if [p.name for p in directory.iterdir()] in ([], [LOCK_FILE]):
        (directory / LOCK_FILE).unlink(missing_ok=True)
        directory.rmdir()


def changed_settings(
    old: dict, new: dict, allowed: Iterable[str] = (), ignore: Iterable[str] = ()
) -> list[str]:
    """The settings in which `new` differs from `old` (both field → value), less those
    `allowed` to change and those that never matter (`ignore`), as 'name: old → new'."""
    skip = set(allowed) | set(ignore)
    return [
        f"{key}: {old[key]!r} → {new[key]!r}"
        for key in new
        if key in old and key not in skip and old[key] != new[key]
    ]
