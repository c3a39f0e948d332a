"""Training data: the tables `nlakit build` writes (read by `nlakit.store.load_table`),
as batches for the AV and the AR.

All AV prompts are the same rendered template, so an AV batch is
`[prompt | response | padding]` with the response starting at the same position in
every row; `response_logprobs` reads the model's log-probs of the response tokens
only (the LM head runs on the response positions alone). Packed, the same rows go
back to back in one row without padding (`pack_rows`: position ids restart at each
prompt, from which `transformers` keeps each row's attention to itself). Batches come from a
`BatchSampler`: a seeded permutation per epoch, grouped by length, whose position
(epoch, batch) is saved in checkpoints so a resumed run sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nlakit.errors import NLAKitError
from nlakit.generation import prefix_text, stop_token_ids
from nlakit.meta import av_prompt_content, render_av_prompt_ids
from nlakit.separators import strip_separators
from nlakit.train.losses import token_logprobs


def _templated_response(av, text: str, stops: set[int]) -> list[int]:
    """The response's ids as the chat template writes an assistant turn, cut after
    the first stop token (plain text + a stop token if the template disagrees)."""
    # the prompt as the template renders it, with one marker: the response after it
    # does not depend on how many markers the AV's layout puts in (`av.prompt_ids`)
    prompt = render_av_prompt_ids(av.tokenizer, av.meta.av_template, av.meta.tokens.injection_char)
    messages = [
        {"role": "user", "content": _prompt_content(av)},
        {"role": "assistant", "content": text},
    ]
    full = av.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    ids = (
        full[len(prompt) :]
        if full[: len(prompt)] == prompt
        else av.tokenizer(text, add_special_tokens=False)["input_ids"]
    )
    cut = next((i for i, t in enumerate(ids) if t in stops), None)
    return ids[: cut + 1] if cut is not None else [*ids, min(stops)]


def response_ids(av, responses: list[str]) -> list[list[int]]:
    """Token ids of each AV response as the chat template writes an assistant turn,
    ending with its stop token (the SFT targets).

    Rendering the template row by row is slow, so the texts are tokenized in one
    batch and the end-of-turn ids appended; a sample of rows is checked against the
    template, and a template that disagrees is rendered row by row."""
    stops = set(stop_token_ids(av))
    if not responses:
        return []
    reference = [_templated_response(av, text, stops) for text in responses[:8]]
    tail_start = len(av.tokenizer(responses[0], add_special_tokens=False)["input_ids"])
    tail = reference[0][tail_start:]
    batch = av.tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    fast = [[*ids, *tail] for ids in batch]
    if fast[: len(reference)] == reference:
        return fast
    return [_templated_response(av, text, stops) for text in responses]


def _prompt_content(av) -> str:
    return av_prompt_content(av.meta.av_template, av.meta.tokens.injection_char)


def pad_responses(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`[batch, longest]` response ids (right-padded) and their mask."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.float32)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(seq)
        mask[i, : len(seq)] = 1
    return ids, mask


@dataclass(frozen=True)
class Packed:
    """Prompt + response rows back to back in one row `[1, total]`.

    `predict_at[k]` is the position whose logits predict response token `targets[k]`,
    which sits at (`row[k]`, `col[k]`) of the padded `[batch, R]` layout."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    predict_at: torch.Tensor
    targets: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor


def pack_rows(prompt: list[int], responses: list[list[int]]) -> Packed:
    """The rows `prompt + responses[i]` packed into one row, without padding."""
    ids, positions, predict_at, targets, row, col = [], [], [], [], [], []
    for i, response in enumerate(responses):
        start = len(ids) + len(prompt)
        ids += [*prompt, *response]
        positions += range(len(prompt) + len(response))
        predict_at += range(start - 1, start - 1 + len(response))
        targets += response
        row += [i] * len(response)
        col += range(len(response))
    as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return Packed(
        as_long(ids)[None],
        as_long(positions)[None],
        as_long(predict_at),
        as_long(targets)[None],
        as_long(row),
        as_long(col),
    )


def response_logprobs(
    av,
    vectors: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    forward=None,
    packed: bool = False,
) -> torch.Tensor:
    """The AV's log-probs `[batch, R]` of `responses` after the injected prompt
    (`forward` is the AV itself or its DDP wrapper); 0 where `mask` is 0. `packed`:
    computed on the rows packed into one, without padding (the same values)."""
    if packed:
        return _packed_logprobs(av, vectors, responses, mask, forward)
    n, width = responses.shape
    prompt = av.prompt_batch(n)
    ids = torch.cat([prompt, responses.to(prompt.device)], dim=1)
    attention = torch.cat([torch.ones_like(prompt), mask.to(prompt.device).long()], dim=1)
    out = (forward or av)(
        ids, vectors.to(prompt.device), attention_mask=attention, logits_to_keep=width + 1
    )
    return token_logprobs(out.logits[:, :-1], ids[:, -width:])


def truncate_explanations(
    tokenizer, texts: list[str], share: float, generator: torch.Generator
) -> list[str]:
    """Each text without separators, and with probability `share` cut to its first k
    tokens, k uniform on 1 … its length (AR training on prefixes)."""
    out = []
    for text in texts:
        text = strip_separators(text)
        if float(torch.rand((), generator=generator)) < share:
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            k = int(torch.randint(1, max(n, 1) + 1, (), generator=generator))
            text = prefix_text(tokenizer, text, k)
        out.append(text)
    return out


def drop_tokens(tokenizer, texts: list[str], rate: float, generator: torch.Generator) -> list[str]:
    """Each text without separators and with each token deleted with probability `rate`
    (at least one token kept): explanation-token dropout, a regularised AR's input."""
    out = []
    for text in texts:
        ids = tokenizer(strip_separators(text), add_special_tokens=False)["input_ids"]
        keep = torch.rand(len(ids), generator=generator) >= rate
        if len(ids) and not keep.any():
            keep[int(torch.randint(len(ids), (), generator=generator))] = True
        out.append(tokenizer.decode([i for i, k in zip(ids, keep.tolist(), strict=True) if k]))
    return out


class BatchSampler:
    """Deterministic batches: per epoch a permutation seeded by (seed, epoch), cut into
    windows of `bucket` batches that are sorted by length, then shuffled as batches.

    `state()`/`load_state()` give the position (epoch, batch) for checkpoints."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket: int = 32):
        if len(lengths) < batch_size:
            raise NLAKitError(f"batch size {batch_size} exceeds the {len(lengths)} rows available")
        self.lengths, self.batch_size, self.seed, self.bucket = lengths, batch_size, seed, bucket
        self.epoch, self.index = 0, 0
        self._batches = self._epoch_batches(0)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        window = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(order) - self.batch_size + 1, window):
            chunk = sorted(order[start : start + window].tolist(), key=lambda i: self.lengths[i])
            batches += [
                chunk[i : i + self.batch_size]
                for i in range(0, len(chunk) - self.batch_size + 1, self.batch_size)
            ]
        return [batches[i] for i in rng.permutation(len(batches))]

    def next(self) -> list[int]:
        if self.index >= len(self._batches):
            self.epoch, self.index = self.epoch + 1, 0
            self._batches = self._epoch_batches(self.epoch)
        batch = self._batches[self.index]
        self.index += 1
        return batch

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._batches = self._epoch_batches(self.epoch)


def _packed_logprobs(av, vectors, responses, mask, forward) -> torch.Tensor:
    lengths = mask.sum(dim=1).long().tolist()
    rows = [r[:k].tolist() for r, k in zip(responses, lengths, strict=True)]
    pack = pack_rows(av.prompt_ids, rows)
    device = av.device
    out = (forward or av)(
        pack.input_ids.to(device),
        vectors.to(device),
        position_ids=pack.position_ids.to(device),
        logits_to_keep=pack.predict_at.to(device),
        use_cache=False,
    )
    logp = token_logprobs(out.logits, pack.targets.to(device))[0]
    full = torch.zeros(responses.shape, dtype=logp.dtype, device=device)
    return full.index_put((pack.row.to(device), pack.col.to(device)), logp)
