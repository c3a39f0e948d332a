"""Teacher backends: the LLMs that write explanations for the training data.

`make_teacher(spec)` turns a spec string into a `Teacher`:

- `anthropic:MODEL` — the Anthropic Messages API via the `anthropic` SDK
  (key from `ANTHROPIC_API_KEY`; base URL from `ANTHROPIC_BASE_URL` or `base_url=`;
  no temperature: SDK 2.x and its API version have no sampling parameters);
- `openai:MODEL` or `openai:MODEL@BASE_URL` — any OpenAI-compatible Chat
  Completions server via the `openai` SDK (OpenAI itself, vLLM, SGLang, Ollama,
  llama.cpp); key from `OPENAI_API_KEY`, optional for a local server;
- `hf:PATH` — a local transformers causal LM; concurrent `complete` calls are
  collected into batched `model.generate` calls.

Every backend raises `RetryableError` for failures worth retrying (429, 5xx,
timeouts, dropped connections) and a plain exception for anything else; the
retry policy itself lives in `teacher.teach_all`, so the SDKs' own retries are
switched off. API keys never appear in the messages these errors carry.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nlakit.errors import NLAKitError, require

if TYPE_CHECKING:
    from nlakit.data.teacher import TeacherConfig

logger = logging.getLogger(__name__)

SPEC_FORMS = (
    "anthropic:MODEL (e.g. anthropic:claude-sonnet-4-6)",
    "openai:MODEL (e.g. openai:gpt-5.4-mini)",
    "openai:MODEL@BASE_URL (e.g. openai:llama3:8b@http://localhost:11434/v1)",
    "hf:PATH (a local model directory or Hub id, e.g. hf:Qwen/Qwen3-8B)",
)
KEY_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
# Placeholder key for local OpenAI-compatible servers, which ignore it.
LOCAL_PLACEHOLDER_KEY = "EMPTY"
# Status codes worth retrying (as the SDKs' own policies do): timeout, lock
# conflict, rate limit, and every server-side error (incl. Anthropic's 529).
RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass
class Completion:
    """One teacher reply: its text and the token counts the backend reported."""

    text: str
    input_tokens: int
    output_tokens: int


class RetryableError(Exception):
    """A transient failure: retry later. `retry_after` is the server's requested
    wait in seconds (from `retry-after` / `retry-after-ms`), or None."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Teacher(abc.ABC):
    """An LLM that answers one prompt at a time (many may be in flight at once)."""

    spec: str

    @abc.abstractmethod
    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        """The reply to `prompt` as one user message, sampled per `config`."""

    async def aclose(self) -> None:  # noqa: B027 (backends without resources keep the default)
        """Release clients and workers."""


def redact_secrets(text: str) -> str:
    """`text` with the values of the API key environment variables masked."""
    for name in KEY_ENV_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, f"<{name}>")
    return text


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `retry-after` (seconds or
    an HTTP date); None when absent or unparsable."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _sdk_error(spec: str, exc: Exception, statuses: type, connection: type) -> Exception:
    """Map an SDK exception to `RetryableError` or a plain error, key-free."""
    if isinstance(exc, ValueError):  # the SDKs raise JSONDecodeError for a non-JSON body
        return _malformed(spec, redact_secrets(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, connection):
        return RetryableError(redact_secrets(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, statuses):
        status = exc.status_code
        message = redact_secrets(f"HTTP {status} ({type(exc).__name__}): {exc}")
        if status in RETRYABLE_STATUSES or status >= 500:
            return RetryableError(message, retry_after_seconds(exc.response.headers))
        return RuntimeError(message)
    return RuntimeError(redact_secrets(f"{type(exc).__name__}: {exc}"))


def _malformed(spec: str, what: str) -> RuntimeError:
    return RuntimeError(f"{spec}: malformed reply from the server ({what})")


class AnthropicTeacher(Teacher):
    """Claude through the Messages API (`anthropic.AsyncAnthropic`)."""

    def __init__(self, model: str, base_url: str | None = None):
        anthropic = require("anthropic", "teachers", f"teacher anthropic:{model}")
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise NLAKitError(
                f"teacher anthropic:{model} needs an API key: set the ANTHROPIC_API_KEY "
                "environment variable."
            )
        self.spec = f"anthropic:{model}"
        self.model = model
        # base_url=None lets the SDK read ANTHROPIC_BASE_URL.
        self._client = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)
        self._errors = (anthropic.APIStatusError, anthropic.APIConnectionError)
        self._warned_temperature = False

    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        if config.temperature != 1.0 and not self._warned_temperature:
            self._warned_temperature = True
            logger.warning(
                "%s: the Anthropic API (SDK 2.x) takes no temperature; ignoring "
                "temperature=%s and sampling with the model's default.",
                self.spec,
                config.temperature,
            )
        try:
            # No temperature: SDK 2.x removed the sampling parameters and its API
            # version answers 400 to any of them, even temperature=1.0.
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=config.max_tokens,
                messages=[{"role": "user", "content": prompt}],
                timeout=config.timeout_s,
            )
        except Exception as exc:
            raise _sdk_error(self.spec, exc, *self._errors) from None
        usage = message.usage
        if not isinstance(message.content, list) or usage is None:
            raise _malformed(self.spec, "no content list or no usage")
        if not isinstance(usage.input_tokens, int) or not isinstance(usage.output_tokens, int):
            raise _malformed(self.spec, "usage without token counts")
        text = "".join(getattr(block, "text", "") or "" for block in message.content)
        return Completion(text, usage.input_tokens, usage.output_tokens)

    async def aclose(self) -> None:
        await self._client.close()


def is_local_url(url: str) -> bool:
    """Whether `url` points at this machine or a private network (no key needed)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or "." not in host or host.endswith((".local", ".internal")):
        return True  # dotless names are LAN / container hosts (e.g. http://vllm:8000)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


class OpenAITeacher(Teacher):
    """Any OpenAI-compatible Chat Completions server (`openai.AsyncOpenAI`)."""

    def __init__(self, model: str, base_url: str | None = None):
        openai = require("openai", "teachers", f"teacher openai:{model}")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None or not is_local_url(base_url):
                where = f"the server at {base_url}" if base_url else "the OpenAI API"
                raise NLAKitError(
                    f"teacher openai:{model} needs an API key for {where}: set the "
                    "OPENAI_API_KEY environment variable (a local server such as vLLM, SGLang, "
                    "Ollama or llama.cpp needs none: pass openai:MODEL@http://localhost:PORT/v1)."
                )
            key = LOCAL_PLACEHOLDER_KEY
        self.spec = f"openai:{model}" + (f"@{base_url}" if base_url else "")
        self.model = model
        # OpenAI's own newer models reject `max_tokens`; other servers may know only it.
        official = base_url is None or urlsplit(base_url).hostname == "api.openai.com"
        self._cap_field = "max_completion_tokens" if official else "max_tokens"
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)
        self._errors = (openai.APIStatusError, openai.APIConnectionError)

    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=config.temperature,
                timeout=config.timeout_s,
                **{self._cap_field: config.max_tokens},
            )
        except Exception as exc:
            raise _sdk_error(self.spec, exc, *self._errors) from None
        choices = response.choices
        if not isinstance(choices, list) or not choices or choices[0].message is None:
            raise _malformed(self.spec, "no choices")
        text = choices[0].message.content
        if not isinstance(text, str):
            raise _malformed(self.spec, "no message content")
        usage = response.usage  # some local servers omit usage: count it as unknown (0)
        n_in = int(usage.prompt_tokens or 0) if usage else 0
        n_out = int(usage.completion_tokens or 0) if usage else 0
        return Completion(text, n_in, n_out)

    async def aclose(self) -> None:
        await self._client.close()


class HFTeacher(Teacher):
    """A local transformers causal LM; concurrent prompts share `generate` calls.

    `complete` queues its prompt and awaits a future; one worker task cuts the
    queue into batches of up to `config.concurrency` prompts and runs each batch
    through one left-padded `model.generate` call in a thread, so the event loop
    keeps queueing the next batch meanwhile.
    """

    # How long the worker waits for more prompts before cutting a partial batch
    # (seconds): negligible next to one generate call.
    GATHER_WINDOW_S = 0.002

    def __init__(
        self,
        path: str,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
    ):
        from nlakit.models import load_causal_lm

        self.spec = f"hf:{path}"
        self.model, self.tokenizer = load_causal_lm(path, device, dtype, trust_remote_code)
        self.tokenizer.padding_side = "left"
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return sorted(i for i in ids if i is not None)

    def generate_batch(self, prompts: list[str], config: TeacherConfig) -> list[Completion]:
        """Replies to `prompts` from one `model.generate` call (blocking)."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
        # The chat template already holds any BOS; don't add a second one.
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        sampling = (
            {"do_sample": True, "temperature": config.temperature}
            if config.temperature > 0
            else {"do_sample": False}
        )
        stop_ids = self._stop_ids()
        with torch.no_grad():
            output = self.model.generate(
                **batch,
                max_new_tokens=config.max_tokens,
                eos_token_id=stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
        completions = []
        for row, prompt_mask in zip(new_tokens, batch["attention_mask"], strict=True):
            stop = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
            reply = self.tokenizer.decode(row[:stop], skip_special_tokens=True)
            completions.append(Completion(reply, int(prompt_mask.sum()), stop))
        return completions

    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((prompt, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(config))
        return await future

    async def _drain(self, config: TeacherConfig) -> None:
        while self._pending:
            # Let every caller that is about to submit do so before cutting the batch.
            while len(self._pending) < config.concurrency:
                seen = len(self._pending)
                await asyncio.sleep(self.GATHER_WINDOW_S)
                if len(self._pending) == seen:
                    break
            batch = self._pending[: config.concurrency]
            del self._pending[: config.concurrency]
            try:
                prompts = [prompt for prompt, _ in batch]
                completions = await asyncio.to_thread(self.generate_batch, prompts, config)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), completion in zip(batch, completions, strict=True):
                if not future.done():
                    future.set_result(completion)

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._worker = None


def make_teacher(spec: str, **kwargs: Any) -> Teacher:
    """The teacher a spec names (see the module docstring). `kwargs` go to the
    backend: `base_url` for anthropic/openai; `device`, `dtype`,
    `trust_remote_code` for hf."""
    scheme, sep, rest = spec.partition(":")
    if not sep or not rest or scheme not in ("anthropic", "openai", "hf"):
        raise NLAKitError(
            f"--teacher {spec!r}: not understood; expected one of: " + "; ".join(SPEC_FORMS)
        )
    if scheme == "anthropic":
        return AnthropicTeacher(rest, **kwargs)
    if scheme == "hf":
        return HFTeacher(rest, **kwargs)
    model, at, base_url = rest.rpartition("@")
    if not at:
        return OpenAITeacher(rest, **kwargs)
    if not model or not base_url.startswith(("http://", "https://")):
        raise NLAKitError(
            f"teacher spec {spec!r}: expected openai:MODEL@BASE_URL with a non-empty MODEL and "
            f"an http:// or https:// BASE_URL, got model {model!r} and base URL {base_url!r}."
        )
    if "base_url" in kwargs:
        raise NLAKitError(
            f"teacher spec {spec!r} already names a base URL; don't also pass base_url=."
        )
    return OpenAITeacher(model, base_url=base_url, **kwargs)
