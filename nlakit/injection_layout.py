"""Multi-token injection: how one activation is spread over k marker positions.

A token carries a few bits of input; a residual vector carries far more. With
`tokens = k > 1` the AV prompt holds a run of k markers inside `<concept>…</concept>`
(the template still names the marker once; its rendered id is repeated k times, so
a tokenizer cannot merge the run) and each position gets one `[d_model]` vector:

    repeat   the activation, rescaled to `injection_scale`, at all k positions
    split    a fixed random orthogonal basis Q `[d, d]` cut into k blocks of columns
             Q_1 … Q_k (sizes differing by at most one); position j gets the
             projection Q_j Q_jᵀ v, rescaled to `injection_scale`. Un-rescaled, the k
             parts sum back to v (Q Qᵀ = I); rescaled, each part keeps its direction.

With k = 1 both modes are the single-marker injection, and nothing is recorded: the
AV's `nla_meta.yaml` is byte for byte what it was, so the release's readers load it.
With k > 1 the AV sidecar gets a top-level section the release's reader ignores:

    injection:
      tokens: 4
      mode: split
      seed: 0                                   # split only
      generator: numpy-randomstate-qr-v1        # split only
      basis: injection_basis.safetensors        # split only

Where the split basis lives. Q is stored, as float32 `[d, d]`, in
`injection_basis.safetensors` beside the weights, and that file is what a loaded AV
uses. The seed and generator are recorded as well, and rebuild it when the file is
missing (with a warning). Storing the matrix rather than only a seed makes inference
independent of the random generator and of LAPACK: a reader in another language or
a later numpy gets the very basis the AV was trained with, and loading costs a file
read instead of a d×d QR (seconds at d = 4096, half a minute at 8192). It is 64 MiB
at d = 4096 and 256 MiB at d = 8192, well under 1% of the checkpoint it rides with.
The generator (`random_orthogonal`) is numpy's legacy `RandomState` — whose stream
numpy keeps fixed across versions — then QR with the signs of R's diagonal moved into
Q, which makes Q unique (and Haar-distributed); rebuilt on another machine it agrees
to float64 rounding.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from nlakit.errors import CheckpointError, InjectionError, MetaError, field_error
from nlakit.meta import ModelMeta
from nlakit.store.names import INJECTION_BASIS_FILE
from nlakit.store.readers import read_safetensors

META_KEY = "injection"  # the AV sidecar's section (absent for a single marker)
MODES = ("repeat", "split")
GENERATOR = "numpy-randomstate-qr-v1"  # how `random_orthogonal` draws Q from a seed


# --------------------------------------------------------------------------- the math


def random_orthogonal(d: int, seed: int) -> torch.Tensor:
    """A fixed random orthogonal matrix `[d, d]` (float64) for `seed`: QR of a standard
    normal matrix from numpy's `RandomState(seed)`, R's diagonal signs moved into Q."""
    gaussian = np.random.RandomState(seed).standard_normal((d, d))
    q, r = np.linalg.qr(gaussian)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return torch.from_numpy(q)


def subspace_blocks(d: int, k: int) -> list[tuple[int, int]]:
    """Column ranges `(start, stop)` of the k blocks of a `[d, d]` basis: consecutive,
    covering 0 … d, sizes differing by at most one (the larger ones first)."""
    if not 1 <= k <= d:
        raise InjectionError(f"cannot split d_model {d} into {k} subspaces (need 1 ≤ k ≤ d).")
    size, extra = divmod(d, k)
    bounds = list(itertools.accumulate((size + (j < extra) for j in range(k)), initial=0))
    return list(itertools.pairwise(bounds))


def split_parts(vectors: torch.Tensor, basis: torch.Tensor, k: int) -> torch.Tensor:
    """`[n, k, d]`: part j of each row of `vectors [n, d]` is its projection Q_j Q_jᵀ v
    onto the span of basis block j (`subspace_blocks`); computed in the vectors' dtype.
    The parts sum back to the vectors (to that dtype's rounding)."""
    q = basis.to(vectors.device, vectors.dtype)
    parts = [(vectors @ q[:, a:b]) @ q[:, a:b].T for a, b in subspace_blocks(q.shape[0], k)]
    return torch.stack(parts, dim=1)


# --------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class InjectionLayout:
    """How an AV reads its activation: `tokens` marker positions filled by `mode`
    (`repeat` or `split`); `seed` draws a split's basis, and `basis` `[d, d]` is that
    basis (None until the width is known, and for repeat)."""

    tokens: int = 1
    mode: str = "repeat"
    seed: int = 0
    basis: torch.Tensor | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise InjectionError(f"injection tokens must be an integer ≥ 1, got {self.tokens!r}.")
        if self.mode not in MODES:
            raise InjectionError(f"injection mode must be one of {MODES}, got {self.mode!r}.")

    @classmethod
    def of_config(cls, config: Any) -> InjectionLayout:
        """The layout a training config asks for (`injection_tokens`, `injection_mode`,
        its `seed` for a split); a single marker for configs without these fields (RL,
        the AR)."""
        mode = getattr(config, "injection_mode", "repeat")
        seed = getattr(config, "seed", 0) if mode == "split" else 0  # only a split draws
        return cls(getattr(config, "injection_tokens", 1), mode, seed)

    @property
    def single(self) -> bool:
        """One marker: the released layout (mode and seed play no part)."""
        return self.tokens == 1

    @property
    def split(self) -> bool:
        return self.mode == "split" and not self.single

    def same_as(self, other: InjectionLayout) -> bool:
        """The same positions filled the same way (a split's seed included)."""
        if self.single or other.single:
            return self.single and other.single
        return (self.tokens, self.mode) == (other.tokens, other.mode) and (
            not self.split or self.seed == other.seed
        )

    def record(self) -> dict | None:
        """The sidecar section (`META_KEY`); None for a single marker (nothing written)."""
        if self.single:
            return None
        out: dict[str, Any] = {"tokens": self.tokens, "mode": self.mode}
        if self.split:
            out.update(seed=self.seed, generator=GENERATOR, basis=INJECTION_BASIS_FILE)
        return out

    def with_basis(self, d_model: int) -> InjectionLayout:
        """This layout with a split's basis drawn from its seed (float32 `[d, d]`)."""
        if not self.split or self.basis is not None:
            return self
        if self.tokens > d_model:
            raise InjectionError(
                f"split injection over {self.tokens} tokens needs d_model ≥ {self.tokens}, "
                f"got {d_model}."
            )
        return dataclasses.replace(self, basis=random_orthogonal(d_model, self.seed).float())

    def to(self, device: torch.device | str) -> InjectionLayout:
        if self.basis is None:
            return self
        return dataclasses.replace(self, basis=self.basis.to(device))

    def expand_prompt(self, ids: list[int], marker_id: int) -> list[int]:
        """The rendered AV prompt `ids` with its one marker id repeated `tokens` times."""
        if ids.count(marker_id) != 1:
            raise InjectionError(
                f"the AV prompt holds the marker id {marker_id} {ids.count(marker_id)} times, "
                "expected once before it is expanded."
            )
        p = ids.index(marker_id)
        return [*ids[:p], *[marker_id] * self.tokens, *ids[p + 1 :]]


SINGLE = InjectionLayout()


# --------------------------------------------------------------------------- the sidecar


def _int_field(raw: dict, key: str, source: str | None, minimum: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise field_error(MetaError, source, f"{META_KEY}.{key}", f"an integer ≥ {minimum}", value)
    return value


def parse_layout(meta: ModelMeta) -> InjectionLayout:
    """The layout an AV sidecar records (a single marker when it records none), without
    the split's basis; a malformed section is a `MetaError` naming the field."""
    raw = meta.extra.get(META_KEY)
    if raw is None:
        return SINGLE
    src = meta.source
    if not isinstance(raw, dict):
        raise field_error(MetaError, src, META_KEY, "a mapping {tokens, mode, …}", repr(raw))
    tokens = _int_field(raw, "tokens", src, 1)
    mode = raw.get("mode", "repeat")
    if mode not in MODES:
        raise field_error(MetaError, src, f"{META_KEY}.mode", f"one of {MODES}", repr(mode))
    if mode != "split" or tokens == 1:
        return InjectionLayout(tokens, mode)
    generator = raw.get("generator", GENERATOR)
    if generator != GENERATOR:
        raise field_error(
            MetaError,
            src,
            f"{META_KEY}.generator",
            repr(GENERATOR),
            repr(generator),
            "This AV's split basis was drawn by another tool or version; upgrade nlakit.",
        )
    return InjectionLayout(tokens, mode, _int_field(raw, "seed", src, 0))


def basis_file(meta: ModelMeta, directory: Path) -> Path:
    """Where a split AV's basis is: the bare file name its sidecar records, in `directory`."""
    name = meta.extra.get(META_KEY, {}).get("basis", INJECTION_BASIS_FILE)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+\.safetensors", name):
        raise field_error(
            MetaError,
            meta.source,
            f"{META_KEY}.basis",
            "a file name beside the sidecar, ending in .safetensors",
            repr(name),
        )
    return directory / name


def layout_of(meta: ModelMeta) -> InjectionLayout:
    """The AV's layout, complete: a split's basis read from the file beside the sidecar
    (when the sidecar was read from a directory and the file is there), else drawn from
    the recorded seed — with a warning when the sidecar names a file that is missing."""
    layout = parse_layout(meta)
    if not layout.split:
        return layout
    directory = Path(meta.source).parent if meta.source else None
    path = basis_file(meta, directory) if directory is not None else None
    if path is not None and path.is_file():
        return dataclasses.replace(layout, basis=read_basis(path, meta.d_model))
    if path is not None and META_KEY in meta.extra and "basis" in meta.extra[META_KEY]:
        warnings.warn(
            f"{path}: missing; the split injection's basis is rebuilt from the sidecar's seed "
            f"{layout.seed} ({GENERATOR}), which reproduces it to float rounding.",
            stacklevel=2,
        )
    return layout.with_basis(meta.d_model)


def read_basis(path: Path, d_model: int) -> torch.Tensor:
    """The float32 basis `[d, d]` of `path`, checked for its shape and orthogonality."""
    fix = "Copy it from the AV it belongs to, or delete it to rebuild it from the seed."
    tensors = read_safetensors(path, what="the AV's split-injection basis", fix=fix)
    basis = tensors.get("basis")
    if basis is None or tuple(basis.shape) != (d_model, d_model):
        shape = None if basis is None else list(basis.shape)
        raise CheckpointError(
            f"{path}: expected a tensor `basis` of shape [{d_model}, {d_model}] (d_model from "
            f"the sidecar), got {shape}. {fix}"
        )
    probe = torch.randn(d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ratio = float((basis.double() @ probe).norm() / probe.norm())
    if abs(ratio - 1) > 1e-3:
        raise CheckpointError(
            f"{path}: `basis` is not orthogonal (it rescales a vector by {ratio:.4f}). {fix}"
        )
    return basis.float()


def write_basis(layout: InjectionLayout, out_dir: Path) -> Path | None:
    """Write a split layout's basis beside an AV's weights (nothing for other layouts)."""
    if not layout.split:
        return None
    if layout.basis is None:
        raise InjectionError("split injection without its basis; use `with_basis(d_model)`.")
    path = Path(out_dir) / INJECTION_BASIS_FILE
    save_file(
        {"basis": layout.basis.detach().float().cpu().contiguous()},
        str(path),
        metadata={"seed": str(layout.seed), "generator": GENERATOR},
    )
    return path


def with_layout(meta: ModelMeta, layout: InjectionLayout) -> ModelMeta:
    """`meta` (an AV's sidecar, changed in place) recording `layout`; a single marker
    removes any record, so the sidecar is the released single-marker one."""
    record = layout.record()
    if record is None:
        meta.extra.pop(META_KEY, None)
    else:
        meta.extra[META_KEY] = record
    return meta


def check_checkpoint_layout(init: str, has: InjectionLayout, asked: InjectionLayout) -> None:
    """An AV checkpoint trains on with its own layout; asking for another is refused
    (asking for nothing — a single marker — keeps the checkpoint's)."""
    if asked.single or (has.tokens, has.mode) == (asked.tokens, asked.mode):
        return
    raise InjectionError(
        f"{init}: this AV was trained with {describe(has)}; --injection-tokens "
        f"{asked.tokens} --injection-mode {asked.mode} would change what it reads. Drop the "
        "flags to continue it, or start a fresh AV from the target model."
    )


def describe(layout: InjectionLayout) -> str:
    """The layout in words, for messages and model cards."""
    if layout.single:
        return "one marker (the released layout)"
    if layout.split:
        return f"{layout.tokens} markers, split over a random orthogonal basis (seed {layout.seed})"
    return f"{layout.tokens} markers, the activation repeated"
