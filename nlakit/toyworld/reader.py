"""Reading the toy world's labels back from generated text.

A model's continuations have no latent record; `genre_reader` learns to read the
genre from text the way the world writes it: a logistic regression on character
2–4-grams of the first tokens of the world's training documents, each labelled with
its document's genre. Its accuracy on held-out documents is measured and returned
with it, so a result read through it states how well it reads.

    reader = genre_reader(World("runs/demo/world"))
    reader.predict(["Forecast for Galway\\nSaturday: rain"])   # ['weather']
    reader.accuracy                                           # on held-out documents
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlakit.errors import require
from nlakit.toyworld.world import World


@dataclass
class GenreReader:
    model: object  # a fitted sklearn pipeline
    accuracy: float  # on `n_test` held-out documents
    n_train: int
    n_test: int
    tokens: int  # tokens of each document it learned from

    def predict(self, texts: list[str]) -> list[str]:
        return [str(g) for g in self.model.predict(list(texts))]


def openings(world: World, docs, tokens: int) -> list[str]:
    """The text of the first `tokens` tokens of each document (special tokens dropped)."""
    tokenizer = world.tokenizer()
    ids = tokenizer([d.text for d in docs], add_special_tokens=False)["input_ids"]
    return tokenizer.batch_decode([i[:tokens] for i in ids], skip_special_tokens=True)


def genre_reader(
    world: World, n_train: int = 2000, n_test: int = 300, tokens: int = 40, seed: int = 0
) -> GenreReader:
    """A genre classifier for `tokens`-token texts, fitted on the world's training
    documents and scored on its held-out ones."""
    require("sklearn", "eval", "reading the toy world's genres from text")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, test = world.documents("train", limit=n_train), world.documents("eval", limit=n_test)
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    ).fit(openings(world, train, tokens), [d.genre for d in train])
    predicted = model.predict(openings(world, test, tokens))
    accuracy = float(np.mean(predicted == np.array([d.genre for d in test])))
    return GenreReader(model, accuracy, len(train), len(test), tokens)
