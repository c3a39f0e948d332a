"""`nlakit analyze steering --run RUN`: does the AR's vector for a genre steer the
world model toward that genre? (toy world)

For each genre, the AR's direction for a one-line description of it ("Rhyming poem: a
poem about moon.", against the empty explanation; `nlakit.steer`) is added at block K
of the world's model, `alpha` median activation norms long, while it writes `samples`
continuations of the empty prompt. A random direction of the same length, with the
same sampling seeds, is the control; the unsteered model is the prior. The genre of
every continuation is read by a classifier fitted on the world's own documents
(`nlakit.toyworld.reader`, its held-out accuracy reported). Reported per genre: the
share of continuations in the steered genre under steering, under the control and
unsteered; overall, the paired gain (steered − control) with a 95% bootstrap CI over
continuations. Writes `RUN/eval/steering/{table.csv, summary.json, plot.png}` and
`samples.csv` (the first continuations of each genre).

    from nlakit.eval.steering import SteeringConfig, steering
    summary = steering(SteeringConfig(run="runs/demo"))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import csv_text, write_analysis
from nlakit.eval.plots import pyplot
from nlakit.eval.runs import resolve_run
from nlakit.eval.stats import bootstrap_mean
from nlakit.steer import activation_norm, added_at, generate, random_direction, steering_direction

NAME = directory_of(__name__)  # RUN/eval/steering/
SAMPLES_FILE = "samples.csv"


@dataclass
class SteeringConfig(Config):
    """Steer the toy world's model with the AR's vector for each genre."""

    run: str = option(help="run directory (a toy-world run)")
    alpha: float = option(1.5, "added length, in median block-K activation norms", gt=0)
    samples: int = option(32, "continuations per genre (and per control)", ge=1)
    max_new_tokens: int = option(40, "tokens per continuation", ge=1)
    temperature: float = option(1.0, "sampling temperature", gt=0)
    seed: int = option(0, "seeds the sampling, the random directions and the bootstrap", ge=0)
    bootstrap: int = option(1000, "bootstrap resamples of the gain's CI", ge=100)
    device: str | None = option(None, "device of the AR and the world model")


def genre_text(genre: str) -> str:
    """A one-line description of `genre` in the words of the world's explanations."""
    from nlakit.toyworld.labels import GENRE_NAMES, TOPICS

    topic = next(iter(TOPICS[genre].values()))[0]
    return f"{GENRE_NAMES[genre][0]}: a {genre} about {topic}."


def share(predicted: list[str], genre: str) -> np.ndarray:
    """Whether each continuation was read as `genre`."""
    return np.array([p == genre for p in predicted])


def steering(config: SteeringConfig) -> dict:
    """Steer toward every genre; write and return the summary."""
    from nlakit.models import ActivationReconstructor
    from nlakit.toyworld.labels import GENRES
    from nlakit.toyworld.reader import genre_reader
    from nlakit.toyworld.world import World

    paths = resolve_run(config.run, need_ar=True)
    if paths.world is None:
        raise NLAKitError(
            f"{paths.root}: not a toy-world run (no world); steering is judged by the toy "
            "world's genres. On another model use `nlakit steer --ar AR --model M --text T`."
        )
    world = World(paths.world)
    reader = genre_reader(world, tokens=config.max_new_tokens, seed=config.seed)
    ar = ActivationReconstructor.from_pretrained(paths.ar, device=config.device).eval()
    model = world.model(device=ar.device)
    tokenizer = world.tokenizer()
    layer = ar.meta.layer if ar.meta.layer is not None else world.default_layer

    def continuations(vector: torch.Tensor | None) -> list[str]:
        args = (model, tokenizer, [""], config.samples, config.max_new_tokens)
        if vector is None:
            return generate(*args, config.temperature, config.seed)[0]
        with added_at(model, layer, vector.to(model.device)):
            return generate(*args, config.temperature, config.seed)[0]

    prior = reader.predict(continuations(None))
    table, gains, examples = [], [], []
    for i, genre in enumerate(tqdm(GENRES, desc="steering", unit="genre")):
        text = genre_text(genre)
        scale = config.alpha * activation_norm(model, tokenizer, text, layer)
        direction = steering_direction(ar, text).to(model.device)
        steered_texts = continuations(scale * direction)
        control = random_direction(direction.shape[0], config.seed + 1 + i).to(model.device)
        control_texts = continuations(scale * control)
        hit = share(reader.predict(steered_texts), genre)
        control_hit = share(reader.predict(control_texts), genre)
        gains.append(hit.astype(float) - control_hit.astype(float))
        table.append(
            {
                "genre": genre,
                "text": text,
                "steered_share": float(hit.mean()),
                "control_share": float(control_hit.mean()),
                "unsteered_share": float(share(prior, genre).mean()),
                "gain": float(hit.mean() - control_hit.mean()),
                "added_norm": scale,
            }
        )
        examples += [{"genre": genre, "kind": "steered", "text": t} for t in steered_texts[:3]]
        examples += [{"genre": genre, "kind": "control", "text": t} for t in control_texts[:3]]
    gain = bootstrap_mean(torch.from_numpy(np.concatenate(gains)), config.bootstrap, config.seed)
    summary = {
        "run": str(paths.root),
        "layer": layer,
        "alpha": config.alpha,
        "samples_per_genre": config.samples,
        "steered_share": float(np.mean([t["steered_share"] for t in table])),
        "control_share": float(np.mean([t["control_share"] for t in table])),
        "unsteered_share": float(np.mean([t["unsteered_share"] for t in table])),
        "gain": gain["mean"],
        "gain_ci": [gain["ci_low"], gain["ci_high"]],
        "n_pairs": gain["n"],
        "reader_accuracy": reader.accuracy,
        "reader_test_documents": reader.n_test,
        "genres": table,
    }
    out = paths.analysis_dir(NAME)
    write_analysis(out, table, summary, _figure(table, summary))
    write_text(out / SAMPLES_FILE, csv_text(examples))
    return summary


def _figure(table: list[dict], summary: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.2), dpi=110)
    x = np.arange(len(table))
    keys = (("steered_share", "AR direction"), ("control_share", "random direction"),
            ("unsteered_share", "unsteered"))  # fmt: skip
    for j, (key, label) in enumerate(keys):
        ax.bar(x + 0.27 * j, [t[key] for t in table], 0.27, label=label)
    ax.set_xticks(x + 0.27)
    ax.set_xticklabels([t["genre"] for t in table])
    ax.set_ylim(0, 1)
    ax.set_xlabel("genre steered toward")
    ax.set_ylabel("share of continuations in that genre")
    lo, hi = summary["gain_ci"]
    ax.set_title(
        f"AR steering at block {summary['layer']}, alpha {summary['alpha']:g}: gain "
        f"{summary['gain']:+.2f} [{lo:+.2f}, {hi:+.2f}] over random"
    )
    ax.legend(loc="best")
    return fig
