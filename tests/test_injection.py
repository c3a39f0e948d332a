import pytest
import torch
from conftest import DEVICE, DTYPE, close

from nlakit import sites
from nlakit.errors import InjectionError
from nlakit.injection import (
    add_norm_matched,
    added_at_block,
    build_inputs_embeds,
    check_vectors,
    inject_activations,
    marker_mask,
    marker_positions,
    marker_run_positions,
    marker_vectors,
    rescale,
)
from nlakit.injection_layout import InjectionLayout, split_parts
from nlakit.meta import new_meta, render_av_prompt_ids


@pytest.fixture(scope="module")
def meta(tokenizer):
    return new_meta(tokenizer, layer=2, d_model=64)


def prompt(tokenizer, meta) -> list[int]:
    return render_av_prompt_ids(tokenizer, meta.av_template, meta.tokens.injection_char)


def padded_batch(tokenizer, meta, side: str):
    """Three prompts of different lengths, padded on `side`, and their mask."""
    base = prompt(tokenizer, meta)
    rows = [base, base[:1] + base[1:4] + base[1:], base[:1] + base[1:7] + base[1:]]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids, mask = [], []
    for row in rows:
        fill = [pad] * (width - len(row))
        ids.append(fill + row if side == "left" else row + fill)
        m = [0] * len(fill)
        mask.append(m + [1] * len(row) if side == "left" else [1] * len(row) + m)
    return torch.tensor(ids, device=DEVICE), torch.tensor(mask, device=DEVICE)


@pytest.mark.parametrize("side", ["left", "right"])
def test_injected_row_is_the_rescaled_vector_and_nothing_else_changes(
    tokenizer, meta, make_model, arch, side
):
    model = make_model(arch)
    ids, _ = padded_batch(tokenizer, meta, side)
    vectors = torch.randn(3, 64, device=DEVICE) * torch.tensor(
        [[0.1], [5.0], [300.0]], device=DEVICE
    )
    embeds = build_inputs_embeds(model, ids, vectors, meta)
    plain = sites.embedding(model)(ids)
    pos = marker_positions(ids, meta.tokens)
    rows = torch.arange(3)
    expected = rescale(vectors, meta.injection_scale_value).to(DTYPE)
    assert torch.equal(embeds[rows, pos], expected)
    assert close(embeds[rows, pos].float().norm(dim=-1), torch.full((3,), 8.0))
    keep = torch.ones(ids.shape, dtype=torch.bool, device=DEVICE)
    keep[rows, pos] = False
    assert torch.equal(embeds[keep], plain[keep])


def test_embeddings_are_built_as_the_models_own_forward(tokenizer, meta, make_model, arch):
    # Injecting the marker's own embedding row reproduces the plain forward exactly
    # (for Gemma that row includes the √d the embedding module applies).
    model = make_model(arch)
    ids, mask = padded_batch(tokenizer, meta, "left")
    marker_row = sites.embedding(model)(
        torch.tensor([meta.tokens.injection_token_id], device=DEVICE)
    )
    meta_own = new_meta(tokenizer, 2, 64, injection_scale=float(marker_row.detach().float().norm()))
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        embeds = build_inputs_embeds(model, ids, marker_row.expand(3, -1), meta_own)
        got = model(inputs_embeds=embeds, attention_mask=mask).logits
    assert close(got, want, atol=1e-4)


def test_batch_rows_are_independent(tokenizer, meta, make_model):
    model = make_model("qwen3")
    ids, mask = padded_batch(tokenizer, meta, "right")
    vectors = torch.randn(3, 64, device=DEVICE)
    with torch.no_grad():
        batched = model(
            inputs_embeds=build_inputs_embeds(model, ids, vectors, meta), attention_mask=mask
        ).logits
        alone = model(
            inputs_embeds=build_inputs_embeds(model, ids[1:2], vectors[1:2], meta),
            attention_mask=mask[1:2],
        ).logits
    n = int(mask[1].sum())
    assert close(batched[1, :n], alone[0, :n], atol=1e-4)


def enable_checkpointing(model) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def test_loss_and_gradients_identical_with_gradient_checkpointing(
    tokenizer, meta, make_model, arch
):
    results = []
    for checkpointing in (False, True):
        model = make_model(arch, seed=1).float()
        model.train()
        if checkpointing:
            enable_checkpointing(model)
            assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        ids, mask = padded_batch(tokenizer, meta, "right")
        vectors = torch.randn(
            3, 64, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(0)
        )
        vectors.requires_grad_(True)
        embeds = build_inputs_embeds(model, ids, vectors, meta)
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, vectors.grad.clone()))
    (loss0, grads0, vgrad0), (loss1, grads1, vgrad1) = results
    assert torch.equal(loss0, loss1)
    assert grads0.keys() == grads1.keys() and len(grads0) > 10
    for name in grads0:
        assert torch.allclose(grads0[name], grads1[name], rtol=1e-5, atol=1e-7), name
    assert vgrad0.abs().sum() > 0
    assert torch.allclose(vgrad0, vgrad1, rtol=1e-5, atol=1e-7)


def test_no_marker_or_two_markers_is_an_error(tokenizer, meta, make_model):
    model = make_model("qwen3")
    ids = torch.tensor([prompt(tokenizer, meta)], device=DEVICE)
    marker = meta.tokens.injection_token_id
    no_marker = ids.masked_fill(ids == marker, tokenizer.pad_token_id)
    with pytest.raises(InjectionError, match=r"rows \[0\] contain \[0\] verified markers"):
        build_inputs_embeds(model, no_marker, torch.randn(1, 64), meta)
    twice = torch.cat([ids, ids], dim=1)
    with pytest.raises(InjectionError, match=r"\[2\] verified markers"):
        build_inputs_embeds(model, twice, torch.randn(1, 64), meta)


def test_marker_with_wrong_neighbours_is_not_used(tokenizer, meta):
    ids = torch.tensor([prompt(tokenizer, meta)])
    pos = int((ids[0] == meta.tokens.injection_token_id).nonzero())
    drifted = ids.clone()
    drifted[0, pos - 1] = tokenizer.pad_token_id
    with pytest.raises(InjectionError, match="between ids"):
        marker_positions(drifted, meta.tokens)


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        (torch.randn(2, 63), r"expected shape \[n, 64\]"),
        (torch.full((2, 64), float("nan")), "NaN or inf"),
        (torch.tensor([[float("inf")] * 64, [1.0] * 64]), r"rows \[0\]"),
    ],
)
def test_bad_vectors(vectors, match):
    with pytest.raises(InjectionError, match=match):
        check_vectors(vectors, 64)


def test_zero_vector_is_injected_as_zeros_with_a_warning(tokenizer, meta, make_model):
    """As the release does: normalising leaves a zero vector zero, and it is injected."""
    ids = torch.tensor([prompt(tokenizer, meta)], device=DEVICE)
    with pytest.warns(UserWarning, match="all zeros"):
        embeds = build_inputs_embeds(make_model("qwen3"), ids, torch.zeros(1, 64), meta)
    pos = ids[0].tolist().index(meta.tokens.injection_token_id)
    assert torch.count_nonzero(embeds[0, pos]) == 0


def test_vector_count_must_match_rows(tokenizer, meta, make_model):
    ids = torch.tensor([prompt(tokenizer, meta)] * 2, device=DEVICE)
    with pytest.raises(InjectionError, match="got 3 vectors for 2 prompts"):
        build_inputs_embeds(make_model("qwen3"), ids, torch.randn(3, 64), meta)


def test_rescale_is_fp32_even_for_bf16_input():
    v = (torch.randn(4, 64) * 1e4).bfloat16()
    out = rescale(v, 150.0)
    assert out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.full((4,), 150.0), rtol=1e-6)
    assert torch.equal(rescale(v, None), v.float())


def test_add_norm_matched_only_touches_the_marker():
    hidden = torch.randn(2, 5, 8)
    vectors = torch.randn(2, 8)
    positions = torch.tensor([1, 3])
    out = add_norm_matched(hidden, positions, vectors, strength=0.5)
    delta = out - hidden
    assert torch.count_nonzero(delta.abs().sum(-1)) == 2
    for row, pos in enumerate(positions.tolist()):
        assert torch.allclose(delta[row, pos].norm(), 0.5 * hidden[row, pos].norm(), rtol=1e-5)
        cos = torch.nn.functional.cosine_similarity(delta[row, pos], vectors[row], dim=0)
        assert cos == pytest.approx(1.0, abs=1e-5)


def test_added_at_block_hook_lives_only_inside_the_context(tokenizer, meta, make_model):
    model = make_model("llama")
    ids = torch.tensor([prompt(tokenizer, meta)] * 2, device=DEVICE)
    vectors = torch.randn(2, 64, device=DEVICE)
    with torch.no_grad():
        plain = sites.extract_layer(model, ids, None, 1)
        with added_at_block(model, ids, vectors, meta, block=1):
            added = sites.extract_layer(model, ids, None, 1)
        after = sites.extract_layer(model, ids, None, 1)
    assert torch.equal(after, plain)
    changed = (added - plain).abs().sum(-1) > 0
    pos = marker_positions(ids, meta.tokens)
    expected = torch.zeros_like(changed)
    expected[torch.arange(2), pos] = True
    assert torch.equal(changed, expected)
    assert not sites.blocks(model)[1]._forward_hooks


def test_inject_activations_is_pure(tokenizer, meta):
    ids = torch.tensor([prompt(tokenizer, meta)] * 2)
    embeds = torch.randn(*ids.shape, 64)
    before = embeds.clone()
    vectors = torch.randn(2, 64)
    out = inject_activations(ids, embeds, vectors, meta)
    assert torch.equal(embeds, before)
    assert torch.equal(inject_activations(ids, embeds, vectors, meta), out)
    pos = marker_positions(ids, meta.tokens)
    assert torch.equal(out[torch.arange(2), pos], rescale(vectors, 8.0))


def test_a_packed_row_takes_one_vector_per_marker_in_order(tokenizer, meta):
    one = prompt(tokenizer, meta)
    packed = torch.tensor([[*one, 5, 6, *one]])
    embeds = torch.randn(1, packed.shape[1], 64)
    vectors = torch.randn(2, 64)
    out = inject_activations(packed, embeds, vectors, meta)
    first = int(marker_positions(torch.tensor([one]), meta.tokens)[0])
    at = torch.tensor([first, len(one) + 2 + first])
    assert torch.equal(out[0, at], rescale(vectors, 8.0))
    unchanged = torch.ones(packed.shape[1], dtype=torch.bool)
    unchanged[at] = False
    assert torch.equal(out[0, unchanged], embeds[0, unchanged])
    with pytest.raises(InjectionError, match="2 verified markers for 3 vectors"):
        inject_activations(packed, embeds, torch.randn(3, 64), meta)


# --------------------------------------------------------------------------- k markers


def run_prompt(tokenizer, meta, k: int) -> list[int]:
    return InjectionLayout(k).expand_prompt(prompt(tokenizer, meta), meta.tokens.injection_token_id)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_run_of_k_markers_is_found_whole_under_padding(tokenizer, meta, side):
    one = prompt(tokenizer, meta)
    at = one.index(meta.tokens.injection_token_id)
    rows = [run_prompt(tokenizer, meta, 4), [one[0], 9, 9, *run_prompt(tokenizer, meta, 4)[1:]]]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor(
        [
            [pad] * (width - len(r)) + r if side == "left" else r + [pad] * (width - len(r))
            for r in rows
        ]
    )
    got = marker_run_positions(ids, meta.tokens, 4)
    shift = [width - len(r) if side == "left" else 0 for r in rows]
    starts = [shift[0] + at, shift[1] + at + 2]
    assert got.tolist() == [list(range(s, s + 4)) for s in starts]
    expected = torch.zeros(ids.shape, dtype=torch.bool)
    expected[torch.arange(2)[:, None], got] = True
    assert torch.equal(marker_mask(ids, meta.tokens, 4), expected)
    # k = 1 is the single-marker search, unchanged
    single = torch.tensor([one])
    assert marker_run_positions(single, meta.tokens, 1)[:, 0].tolist() == [at]
    assert torch.equal(marker_mask(single, meta.tokens, 1), marker_mask(single, meta.tokens))


@pytest.mark.parametrize("found", [3, 5])
def test_a_run_of_the_wrong_length_is_an_error(tokenizer, meta, found):
    ids = torch.tensor([run_prompt(tokenizer, meta, found)])
    with pytest.raises(InjectionError, match=r"\[0\] verified runs of 4 markers"):
        marker_run_positions(ids, meta.tokens, 4)


def test_a_run_broken_inside_or_with_a_wrong_neighbour_is_not_used(tokenizer, meta):
    ids = torch.tensor([run_prompt(tokenizer, meta, 4)])
    first = int(marker_run_positions(ids, meta.tokens, 4)[0, 0])
    for where in (first + 1, first - 1, first + 4):  # an interior marker, the left, the right
        broken = ids.clone()
        broken[0, where] = tokenizer.pad_token_id
        with pytest.raises(InjectionError, match="4 times in a row, between ids"):
            marker_run_positions(broken, meta.tokens, 4)


def test_repeat_puts_the_rescaled_vector_at_every_marker_and_nothing_else(tokenizer, meta):
    ids = torch.tensor([run_prompt(tokenizer, meta, 3)] * 2)
    embeds = torch.randn(*ids.shape, 64)
    vectors = torch.randn(2, 64) * 40
    out = inject_activations(ids, embeds, vectors, meta, InjectionLayout(3, "repeat"))
    at = marker_run_positions(ids, meta.tokens, 3)
    rows = torch.arange(2)[:, None]
    assert torch.equal(out[rows, at], rescale(vectors, 8.0)[:, None].expand(-1, 3, -1))
    keep = ~marker_mask(ids, meta.tokens, 3)
    assert torch.equal(out[keep], embeds[keep])


def test_split_puts_each_rescaled_part_at_its_marker(tokenizer, meta):
    layout = InjectionLayout(4, "split", seed=1).with_basis(64)
    ids = torch.tensor([run_prompt(tokenizer, meta, 4)] * 3)
    vectors = torch.randn(3, 64)
    out = inject_activations(ids, torch.zeros(*ids.shape, 64), vectors, meta, layout)
    at = marker_run_positions(ids, meta.tokens, 4)
    injected = out[torch.arange(3)[:, None], at]  # [3, 4, 64]
    parts = split_parts(vectors, layout.basis, 4)
    assert torch.allclose(injected, rescale(parts, 8.0), atol=1e-5)
    assert torch.allclose(injected.norm(dim=-1), torch.full((3, 4), 8.0), atol=1e-4)
    # with the raw scale the k injected parts sum back to the vector
    raw = marker_vectors(vectors, None, layout)
    assert torch.allclose(raw.sum(dim=1), vectors, atol=1e-5)
    # parts of different markers are orthogonal (they live in different subspaces)
    gram = injected[0] @ injected[0].T
    assert torch.allclose(gram - torch.diag(torch.diag(gram)), torch.zeros(4, 4), atol=1e-3)


def test_split_injection_passes_gradients_to_the_vectors(tokenizer, meta):
    layout = InjectionLayout(2, "split").with_basis(64)
    ids = torch.tensor([run_prompt(tokenizer, meta, 2)])
    vectors = torch.randn(1, 64, requires_grad=True)
    out = inject_activations(ids, torch.zeros(*ids.shape, 64), vectors, meta, layout)
    out.pow(3).sum().backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0


def test_split_without_its_basis_is_an_error(tokenizer, meta):
    ids = torch.tensor([run_prompt(tokenizer, meta, 2)])
    with pytest.raises(InjectionError, match="without its basis"):
        inject_activations(ids, torch.zeros(*ids.shape, 64), torch.randn(1, 64), meta,
                           InjectionLayout(2, "split"))  # fmt: skip


def test_a_packed_row_takes_one_vector_per_run_of_markers(tokenizer, meta):
    one = run_prompt(tokenizer, meta, 3)
    packed = torch.tensor([[*one, 5, 6, *one]])
    embeds = torch.randn(1, packed.shape[1], 64)
    vectors = torch.randn(2, 64)
    layout = InjectionLayout(3, "split", seed=2).with_basis(64)
    out = inject_activations(packed, embeds, vectors, meta, layout)
    first = marker_run_positions(torch.tensor([one]), meta.tokens, 3)[0]
    at = torch.stack([first, len(one) + 2 + first])  # [2, 3]
    assert torch.allclose(out[0, at], marker_vectors(vectors, 8.0, layout))
    unchanged = torch.ones(packed.shape[1], dtype=torch.bool)
    unchanged[at.flatten()] = False
    assert torch.equal(out[0, unchanged], embeds[0, unchanged])
    with pytest.raises(InjectionError, match="2 verified runs of 3 markers for 3 vectors"):
        inject_activations(packed, embeds, torch.randn(3, 64), meta, layout)
