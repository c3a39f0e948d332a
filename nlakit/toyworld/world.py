"""A built toy world on disk: its corpus, tokenizer, model and oracle.

world = World("worlds/demo")
docs = world.documents("eval")
text, record = world.oracle().explain(docs[0], position=12)
docs = world.documents_for(table["doc_id"].to_pylist())  # each NLA table row's document
model = world.model()          # a plain AutoModelForCausalLM
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from nlakit.errors import NLAKitError
from nlakit.store.names import BUILD_RECORD
from nlakit.store.readers import read_json
from nlakit.toyworld.documents import Document
from nlakit.toyworld.oracle import Oracle


class World:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        record = self.path / BUILD_RECORD
        build = f"Build one with `nlakit toyworld build --out {self.path}`."
        if not record.is_file():
            raise NLAKitError(f"{self.path}: not a toy world (no {BUILD_RECORD}). {build}")
        self.record = read_json(record, "a toy world's build record", build)

    @property
    def seed(self) -> int:
        return int(self.record["config"]["seed"])

    @property
    def writing_share(self) -> float:
        """The share of its chats that are writing requests (0 for worlds built before)."""
        return float(self.record["config"].get("writing_share", 0.0))

    @property
    def default_layer(self) -> int:
        return int(self.record["default_layer"])

    @property
    def min_pos(self) -> int:
        return int(self.record["min_pos"])

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @cached_property
    def table(self):
        return pq.read_table(self.path / "corpus.parquet")

    def documents(self, split: str | None = None, limit: int | None = None) -> list[Document]:
        """Documents of the corpus (optionally only one split), in doc_id order."""
        table = self.table
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        if limit is not None:
            table = table.slice(0, limit)
        return [Document.from_row(r) for r in table.to_pylist()]

    def documents_for(self, table_doc_ids: Iterable[int | str]) -> list[Document]:
        """The document of each `doc_id` of an NLA table: `Document.table_id` strings, or
        the int64 ids of tables written before doc ids were strings."""
        by_id = {d.table_id: d for d in self.documents()}
        wanted = [str(doc_id) for doc_id in table_doc_ids]
        missing = sorted(set(wanted) - by_id.keys())
        if missing:
            raise NLAKitError(
                f"{self.path}: no document(s) {missing[:5]} in this toy world (of its "
                f"{len(by_id)}); were the rows extracted from this world?"
            )
        return [by_id[doc_id] for doc_id in wanted]

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.tokenizer_dir))

    def model(self, device: str = "cpu", dtype=None):
        from transformers import AutoModelForCausalLM

        return (
            AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=dtype).to(device).eval()
        )

    def oracle(self) -> Oracle:
        return Oracle(self.tokenizer(), seed=self.seed)
