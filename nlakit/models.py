"""The two halves of an NLA: the verbalizer (AV) and the reconstructor (AR).

- `ActivationVerbalizer`: the target model M fine-tuned to read one injected
  activation (see `injection.py`) and write `<explanation>…</explanation>`.
- `ActivationReconstructor`: M truncated to blocks 0..K, final norm replaced by
  identity, LM head dropped, plus `value_head = Linear(d, d, bias=False)`
  initialised to the identity; it reads BOS + the AR template around an
  explanation and predicts the activation at the **last real token**.

Both load from a local directory or a Hub id in the released layout (standard
Hugging Face model directory + `nla_meta.yaml`; the AR also has
`value_head.safetensors` and a `config.json` with K + 1 blocks) and save to it.
The AR loads only blocks 0..K from disk, so the AR of a 70B model never
materialises the blocks above K.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from nlakit import sites
from nlakit.ar_context import ar_inputs
from nlakit.errors import CheckpointError, MetaError, NLAKitError, field_error
from nlakit.injection import build_inputs_embeds, marker_run_positions
from nlakit.injection_layout import InjectionLayout, layout_of, parse_layout, write_basis

# The loading helpers live in `nlakit.loading`; they are re-exported here, where the
# package's modules and users have always imported them from.
from nlakit.loading import (  # noqa: F401
    base_meta,
    check_contract,
    check_role,
    check_role_at,
    four_bit,
    load_causal_lm,
    load_tokenizer,
    local_dir,
    read_model_meta,
    resolve_device,
    resolve_dtype,
)
from nlakit.meta import ModelMeta, render_av_prompt_ids, write_meta
from nlakit.separators import strip_separators
from nlakit.store.names import VALUE_HEAD_FILE
from nlakit.store.readers import read_safetensors

# --------------------------------------------------------------------------- AV


class ActivationVerbalizer(nn.Module):
    """A causal LM that explains an activation injected at the marker of its prompt.

    `layout` is how the activation fills the prompt (`nlakit.injection_layout`: one
    marker, or k markers repeating or splitting it); by default the one its sidecar
    records, a split's basis read from beside the sidecar. `prompt_ids` holds the
    layout's run of markers."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        meta: ModelMeta,
        layout: InjectionLayout | None = None,
    ):
        super().__init__()
        check_contract(model, tokenizer, meta, "av")
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        recorded = parse_layout(meta)
        if layout is None:
            layout = layout_of(meta)
        elif not layout.same_as(recorded):
            raise MetaError(
                f"{meta.source or 'the AV sidecar'}: records the injection layout "
                f"{recorded.record()}, the AV was given {layout.record()}; record the layout "
                "with `nlakit.injection_layout.with_layout`."
            )
        self.layout = layout.with_basis(meta.d_model).to(sites.embedding(model).weight.device)
        rendered = render_av_prompt_ids(tokenizer, meta.av_template, meta.tokens.injection_char)
        self.prompt_ids: list[int] = self.layout.expand_prompt(
            rendered, meta.tokens.injection_token_id
        )
        # the run is found as the injection will find it: fail at load, not at a forward
        marker_run_positions(torch.tensor([self.prompt_ids]), meta.tokens, self.layout.tokens)

    @classmethod
    def from_base(
        cls, model: nn.Module, tokenizer: Any, layer: int, meta: ModelMeta | None = None
    ) -> ActivationVerbalizer:
        """Wrap a loaded base model (used as is, not copied) as a fresh AV for layer K."""
        return cls(model, tokenizer, base_meta(model, tokenizer, layer, meta, "av"))

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
        load_in_4bit: bool = False,
    ) -> ActivationVerbalizer:
        """Load an AV checkpoint (local directory or Hub id) and check its sidecar
        (`load_in_4bit`: the decoder's linear layers in NF4, for QLoRA)."""
        path = local_dir(path_or_id)
        meta = read_model_meta(path, "av")
        model, tokenizer = load_causal_lm(path, device, dtype, trust_remote_code, load_in_4bit)
        return cls(model, tokenizer, meta)

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        out = Path(out_dir)
        sites.unwrap(self.model).save_pretrained(str(out))
        self.tokenizer.save_pretrained(str(out))
        write_basis(self.layout, out)
        write_meta(self.meta, out)
        return out

    @property
    def device(self) -> torch.device:
        return sites.embedding(self.model).weight.device

    @property
    def dtype(self) -> torch.dtype:
        return sites.embedding(self.model).weight.dtype

    def prompt_batch(self, n: int) -> torch.Tensor:
        """The AV prompt ids repeated for `n` rows: `[n, prompt_len]` on the model's device."""
        ids = torch.tensor(self.prompt_ids, dtype=torch.long, device=self.device)
        return ids.unsqueeze(0).expand(n, -1)

    def inputs_embeds(self, input_ids: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """`[batch, seq, d]` embeddings with each row's marker (run) replaced by its vector."""
        return build_inputs_embeds(self.model, input_ids, vectors, self.meta, self.layout)

    def forward(
        self,
        input_ids: torch.Tensor,
        vectors: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """The wrapped model's forward on `input_ids` with the vectors injected."""
        embeds = self.inputs_embeds(input_ids, vectors)
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


# --------------------------------------------------------------------------- AR


def truncated_config(config: Any, n_blocks: int) -> Any:
    """A copy of a text config with only the first `n_blocks` blocks."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = n_blocks
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:n_blocks]
    return config


def ar_layer(meta: ModelMeta, n_config_blocks: int, layer: int | None = None) -> int:
    """The AR's block index K, given the sidecar and the blocks in `config.json`.

    Released AR directories hold K + 1 blocks and record K as `ar.num_hidden_layers`
    (some writers recorded K + 1 there; both are accepted). A full-depth checkpoint
    with a smaller K in its sidecar is truncated to K + 1 blocks at load time.
    """
    if layer is not None:
        recorded = layer
    elif meta.ar_num_hidden_layers is not None:
        recorded = meta.ar_num_hidden_layers
        if recorded == n_config_blocks:  # the block count K + 1 was recorded
            return n_config_blocks - 1
    elif meta.layer_index is not None:
        recorded = meta.layer_index
    else:
        return n_config_blocks - 1
    if not 0 <= recorded < n_config_blocks:
        raise field_error(
            MetaError,
            meta.source,
            "ar.num_hidden_layers",
            f"a block index below the {n_config_blocks} blocks in config.json",
            recorded,
        )
    return recorded


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index `[batch]` of the last real (mask = 1) token of each row, left or right padded."""
    flipped_first = attention_mask.flip(1).int().argmax(dim=1)
    return attention_mask.shape[1] - 1 - flipped_first


def rows_without_suffix(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, suffix: list[int]
) -> list[int]:
    """Rows `[batch, seq]` whose last real tokens are not `suffix` (all of it)."""
    n = len(suffix)
    last = last_token_index(attention_mask)
    offsets = torch.arange(n - 1, -1, -1, device=input_ids.device)
    positions = (last.unsqueeze(1) - offsets).clamp_min(0)
    tails = input_ids.gather(1, positions)
    expected = torch.as_tensor(suffix, dtype=input_ids.dtype, device=input_ids.device)
    ok = (tails == expected).all(dim=1) & (last >= n - 1)
    return (~ok).nonzero().flatten().tolist()


class ActivationReconstructor(nn.Module):
    """Blocks 0..K of M plus a d×d value head: explanation text → activation `[d]`."""

    def __init__(
        self,
        backbone: nn.Module,
        value_head: nn.Linear,
        tokenizer: Any,
        meta: ModelMeta,
        final_norm_state: dict[str, torch.Tensor] | None = None,
    ):
        super().__init__()
        check_contract(backbone, tokenizer, meta, "ar")
        self.backbone = backbone
        self.value_head = value_head
        self.tokenizer = tokenizer
        self.meta = meta
        # The final norm is not used (the AR reads the raw block-K output) but its
        # weights are kept so a saved AR loads as a standard causal LM.
        self.final_norm_state = {k: v.detach().cpu() for k, v in (final_norm_state or {}).items()}
        # A smaller AR (`from_base(blocks=…)`) has fewer blocks than the layer K it predicts.
        self.blocks = sites.num_blocks(backbone)
        self.layer = meta.layer if meta.layer is not None else self.blocks - 1

    # ----------------------------------------------------------------- construction

    @staticmethod
    def _strip(backbone: nn.Module) -> dict[str, torch.Tensor]:
        old_norm = sites.replace_final_norm(backbone, nn.Identity())
        return {k: v.detach().clone() for k, v in old_norm.state_dict().items()}

    @staticmethod
    def identity_head(d_model: int, device=None, dtype=None) -> nn.Linear:
        head = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)
        with torch.no_grad():
            head.weight.copy_(torch.eye(d_model, device=device, dtype=dtype))
        return head

    @classmethod
    def from_base(
        cls,
        model: nn.Module,
        tokenizer: Any,
        layer: int,
        meta: ModelMeta | None = None,
        blocks: int | None = None,
    ) -> ActivationReconstructor:
        """A fresh AR from a loaded base model: copies blocks 0..K (never those above).

        `blocks`: a smaller AR of only the first `blocks` ≤ K + 1 blocks, still predicting
        block K's output. Its sidecar keeps the layer K (`extraction_layer_index`) and
        records the depth `blocks - 1` as `critic.extraction_layer_index`, which is what
        the release's reader checks against `config.json` (depth + 1 blocks)."""
        meta = base_meta(model, tokenizer, layer, meta, "ar")
        blocks = layer + 1 if blocks is None else blocks
        if not 1 <= blocks <= layer + 1:
            raise NLAKitError(
                f"--ar-blocks {blocks}: an AR for block {layer} has 1 … {layer + 1} blocks."
            )
        meta.ar_num_hidden_layers = blocks - 1
        dec = sites.decoder(model)
        later = sites.blocks(model)[blocks:]
        memo = {id(block): nn.Identity() for block in later}  # deepcopy skips them
        backbone = copy.deepcopy(dec, memo)
        layout = sites.layout_of(model)
        setattr(backbone, layout.blocks, getattr(backbone, layout.blocks)[:blocks])
        backbone.config = truncated_config(sites.text_config(dec), blocks)
        norm_state = cls._strip(backbone)
        weight = sites.embedding(backbone).weight
        head = cls.identity_head(weight.shape[1], weight.device, weight.dtype)
        return cls(backbone, head, tokenizer, meta, norm_state)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        layer: int | None = None,
        trust_remote_code: bool = False,
        load_in_4bit: bool = False,
    ) -> ActivationReconstructor:
        """Load an AR directory or Hub id in the released layout, reading only blocks 0..K
        (`load_in_4bit`: the backbone's linear layers in NF4, for QLoRA; the value head
        stays in `dtype`)."""
        from transformers import AutoConfig, AutoModel

        path = local_dir(path_or_id)
        meta = read_model_meta(path, "ar")
        head_file = path / VALUE_HEAD_FILE
        if not head_file.is_file():
            raise CheckpointError(
                f"{path}: no {VALUE_HEAD_FILE}. An AR checkpoint ships its value head beside "
                "config.json; it cannot be derived from the backbone. Re-export the AR."
            )
        tokenizer = load_tokenizer(path, trust_remote_code)
        full_config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        config = sites.text_config(full_config)
        k = ar_layer(meta, config.num_hidden_layers, layer)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        # A multimodal checkpoint (Gemma 3) stores the text decoder under `language_model.`.
        key_mapping = {r"^language_model\.": ""} if config is not full_config else None
        backbone, loading = AutoModel.from_pretrained(
            str(path),
            config=truncated_config(config, k + 1),
            dtype=torch_dtype,
            device_map=str(dev),
            trust_remote_code=trust_remote_code,
            key_mapping=key_mapping,
            output_loading_info=True,
            quantization_config=four_bit(torch_dtype) if load_in_4bit else None,
        )
        if loading["missing_keys"]:
            raise CheckpointError(
                f"{path}: the checkpoint lacks weights the AR backbone needs "
                f"({sorted(loading['missing_keys'])[:5]} …); it is not a {config.model_type} "
                "model with these blocks."
            )
        norm_state = cls._strip(backbone)
        head_state = read_safetensors(
            head_file, what="the AR's value head", fix="Re-export the AR (`nlakit sft ar`)."
        )
        weight = head_state.get("weight", next(iter(head_state.values())))
        d = meta.d_model
        if tuple(weight.shape) != (d, d):
            raise CheckpointError(
                f"{head_file}: value head weight has shape {list(weight.shape)}, expected [{d}, {d}]."
            )
        head = nn.Linear(d, d, bias=False, device=dev, dtype=torch_dtype)
        with torch.no_grad():
            head.weight.copy_(weight)
        if meta.layer_index is None:
            meta.layer_index = k
        meta.ar_num_hidden_layers = k
        return cls(backbone.eval(), head.eval(), tokenizer, meta, norm_state)

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        """Write the released layout: a causal-LM directory with K + 1 blocks, the value
        head, the tokenizer and the sidecar. `AutoModelForCausalLM` loads it as is."""
        from huggingface_hub import save_torch_state_dict
        from transformers import AutoModelForCausalLM

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(sites.text_config(self.backbone))
        causal_cls = AutoModelForCausalLM._model_mapping[type(config)]
        config.architectures = [causal_cls.__name__]
        config.tie_word_embeddings = True  # the AR has no LM head; tying avoids storing one
        prefix = causal_cls.base_model_prefix
        norm_name = sites.layout_of(self.backbone).norm
        state = {f"{prefix}.{k}": v for k, v in self.backbone.state_dict().items()}
        state.update({f"{prefix}.{norm_name}.{k}": v for k, v in self.final_norm_state.items()})
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_torch_state_dict(state, str(out))
        config.save_pretrained(str(out))
        save_file(
            {"weight": self.value_head.weight.detach().contiguous().cpu()},
            str(out / VALUE_HEAD_FILE),
            metadata={"format": "pt"},
        )
        self.tokenizer.save_pretrained(str(out))
        write_meta(self.meta, out)
        return out

    def keep_blocks(self, blocks: int) -> None:
        """Keep only the first `blocks` blocks, in place: a smaller AR made from this
        one, still predicting block K through the same value head."""
        if not 1 <= blocks <= self.blocks:
            raise NLAKitError(f"--ar-blocks {blocks}: this AR has 1 … {self.blocks} blocks.")
        layout = sites.layout_of(self.backbone)
        setattr(self.backbone, layout.blocks, getattr(self.backbone, layout.blocks)[:blocks])
        self.backbone.config = truncated_config(sites.text_config(self.backbone), blocks)
        self.blocks = blocks
        self.meta.ar_num_hidden_layers = blocks - 1

    # ----------------------------------------------------------------- use

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.value_head.weight.dtype

    def tokenize(
        self, explanations: list[str], contexts: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Right-padded AR prompts for `explanations`: `input_ids`, `attention_mask` `[n, seq]`.

        `contexts`: the text before each row's token, read by a context AR
        (`nlakit.ar_context`) and ignored by any other."""
        # The AR ignores graded-prefix separators (nlakit/separators.py says why).
        texts = ar_inputs(
            self.meta, self.tokenizer, [strip_separators(e) for e in explanations], contexts
        )
        enc = self.tokenizer(
            texts,
            add_special_tokens=True,
            padding=True,
            return_tensors="pt",
            padding_side="right",
        )
        suffix = self.meta.tokens.critic_suffix_ids
        if suffix:
            bad = rows_without_suffix(enc["input_ids"], enc["attention_mask"], suffix)
            if bad:
                raise MetaError(
                    f"AR prompts for rows {bad[:10]} do not end in the template suffix "
                    f"(ids {list(suffix)}); an explanation containing the AR template's closing "
                    "text, or a tokenizer change, shifts the readout position."
                )
        return {
            k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")
        }

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Predicted activations `[batch, d]` (raw, in the model dtype) read at the last real token."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.value_head(hidden[rows, last_token_index(attention_mask)])

    @torch.no_grad()
    def reconstruct(
        self, explanations: list[str], batch_size: int = 64, contexts: list[str] | None = None
    ) -> torch.Tensor:
        """Predicted activations `[n, d]` in fp32 on the CPU, in the input order
        (`contexts`: as for `tokenize`).

        Texts are batched by length so that little compute goes to padding.
        """
        order = sorted(range(len(explanations)), key=lambda i: len(explanations[i]))
        out = torch.empty(len(explanations), self.meta.d_model)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            part = None if contexts is None else [contexts[i] for i in rows]
            enc = self.tokenize([explanations[i] for i in rows], part)
            out[rows] = self(**enc).float().cpu()
        return out
