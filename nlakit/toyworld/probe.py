"""Linear probes: which latents are linearly readable from layer-K activations.

    nlakit toyworld probe --world worlds/demo [--layer K]

Activations of held-out documents are extracted at block K (early exit), one row
per token position (from `min_pos`, special tokens excluded); documents are split
70/30 into probe-train and probe-test; one multinomial logistic regression per
label is fitted on standardised features and scored on the held-out documents.
`probe.json` holds the accuracies (`genre_acc`, `structure_acc` = what kind of
token must come next, `topic_acc`, `role_acc`, …) beside each label's majority
baseline.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from nlakit import sites
from nlakit.atomic import write_json
from nlakit.batching import pad_right
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.toyworld.world import World

LABELS = {  # probe name -> record field (or a function of the record)
    "genre": lambda r: r.genre,
    "topic": lambda r: f"{r.genre}/{r.topic}",
    "structure": lambda r: r.next_kind,
    "section": lambda r: r.section,
    "role": lambda r: r.role,
    "after_number": lambda r: r.after_number,
    "end_of_line": lambda r: r.end_of_line,
    "in_quote": lambda r: r.in_quote or r.in_code_string,
}
SPECIAL_ROLES = ("speaker_tag", "end_marker")


@dataclass
class ProbeConfig(Config):
    """Linear probes for the toy world's latents on block-K activations."""

    layer: int | None = option(None, "block index K (default: the world's default layer)", ge=0)
    max_docs: int = option(400, "documents used (held-out first, then training documents)", ge=1)
    steps: int = option(100, "L-BFGS iterations per probe", ge=1)
    weight_decay: float = option(1e-3, "L2 penalty on the probe weights", ge=0)
    test_fraction: float = option(
        0.3, "share of documents whose positions are held out", gt=0, lt=1
    )


def _is_test(doc_id: int, fraction: float) -> bool:
    h = hashlib.sha256(f"probe:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


@torch.no_grad()
def collect(world: World, layer: int, max_docs: int, progress: bool = True):
    """Activations `[n, d]`, the per-row records, and whether each row is a test row."""
    docs = world.documents("eval")
    if len(docs) < max_docs:
        docs += world.documents("train", limit=max_docs - len(docs))
    docs = docs[:max_docs]
    tokenizer, model, oracle = world.tokenizer(), world.model(), world.oracle()
    rows, records, doc_ids = [], [], []
    for start in tqdm(range(0, len(docs), 32), desc="activations", disable=not progress):
        batch = docs[start : start + 32]
        encoded = [tokenizer(d.text, add_special_tokens=True)["input_ids"] for d in batch]
        ids, mask = pad_right(encoded, tokenizer.pad_token_id)
        hidden = sites.extract_layer(model, ids, mask, layer).float()
        for i, doc in enumerate(batch):
            for pos, record in enumerate(oracle.records(doc)):
                if pos < world.min_pos or record is None or record.role in SPECIAL_ROLES:
                    continue
                rows.append(hidden[i, pos])
                records.append(record)
                doc_ids.append(doc.doc_id)
    return torch.stack(rows), records, doc_ids


def fit_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, n_classes: int, steps: int, weight_decay: float
) -> torch.nn.Linear:
    """Multinomial logistic regression fitted with L-BFGS (deterministic)."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], n_classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), y_train)
        loss = loss + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def fit_scored(x: torch.Tensor, y: torch.Tensor, test: torch.Tensor, n_classes: int, config):
    """A probe fitted on the rows not in `test`, and its accuracy on those in it."""
    probe = fit_probe(x[~test], y[~test], n_classes, config.steps, config.weight_decay)
    with torch.no_grad():
        accuracy = float((probe(x[test]).argmax(-1) == y[test]).float().mean())
    return probe, accuracy


def probe_world(world_dir, config: ProbeConfig | None = None, progress: bool = True) -> dict:
    """Fit every probe; write and return `probe.json`'s contents."""
    config = config or ProbeConfig()
    world = World(world_dir)
    layer = world.default_layer if config.layer is None else config.layer
    from transformers import AutoConfig

    depth = AutoConfig.from_pretrained(str(world.model_dir)).num_hidden_layers
    if not 0 <= layer < depth:
        raise NLAKitError(
            f"--layer {layer}: the world's model has {depth} blocks; pass a block index in "
            f"0..{depth - 1}."
        )
    start = time.perf_counter()
    x, records, doc_ids = collect(world, layer, config.max_docs, progress)
    test = torch.tensor([_is_test(d, config.test_fraction) for d in doc_ids])
    mean, std = x[~test].mean(0), x[~test].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    results: dict = {
        "layer": layer,
        "hook": f"blocks.{layer}.hook_resid_post",
        "n_train": int((~test).sum()),
        "n_test": int(test.sum()),
        "n_docs": len(set(doc_ids)),
    }
    for name, get in LABELS.items():
        values = [get(r) for r in records]
        classes = sorted(set(values), key=str)
        y = torch.tensor([classes.index(v) for v in values])
        _, accuracy = fit_scored(x, y, test, len(classes), config)
        majority = torch.bincount(y[~test], minlength=len(classes)).argmax()
        results[f"{name}_acc"] = round(float(accuracy), 4)
        results[f"{name}_majority"] = round(float((y[test] == majority).float().mean()), 4)
        results[f"{name}_classes"] = len(classes)
    results["config"] = asdict(config)
    results["seconds"] = round(time.perf_counter() - start, 2)
    write_json(world.path / "probe.json", results)
    return results


# A latent a probe reads (`latent_probe`): its record field, and the genre whose positions
# it is read at (None: every genre).
LATENTS = {
    "genre": (lambda r: r.genre, None),
    "tone": (lambda r: r.tone, "chat"),
    "chat_topic": (lambda r: r.topic, "chat"),
}


@dataclass
class LatentProbe:
    """A linear probe for one latent, fitted on the base model's block-K activations."""

    latent: str
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    linear: torch.nn.Linear
    accuracy: float  # on the positions of held-out documents
    n_train: int

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> list[str]:
        """The class read from each row of `x [n, d]`."""
        z = (x.float().cpu() - self.mean) / self.std
        return [self.classes[i] for i in self.linear(z).argmax(-1).tolist()]


def latent_probe(
    world: World, layer: int, latent: str, config: ProbeConfig | None = None
) -> LatentProbe:
    """A probe for `latent` (a key of `LATENTS`) on `world`'s model at block `layer`: the
    upper bound of what any linear reader of that block — an AV included — can say of it."""
    config = config or ProbeConfig(max_docs=1500)
    get, genre = LATENTS[latent]
    x, records, doc_ids = collect(world, layer, config.max_docs, progress=False)
    keep = [i for i, r in enumerate(records) if genre is None or r.genre == genre]
    x, records = x[keep], [records[i] for i in keep]
    test = torch.tensor([_is_test(doc_ids[i], config.test_fraction) for i in keep])
    values = [get(r) for r in records]
    classes = sorted(set(values))
    y = torch.tensor([classes.index(v) for v in values])
    mean, std = x[~test].mean(0), x[~test].std(0).clamp_min(1e-6)
    z = (x - mean) / std
    linear, accuracy = fit_scored(z, y, test, len(classes), config)
    return LatentProbe(latent, classes, mean, std, linear, accuracy, int((~test).sum()))
