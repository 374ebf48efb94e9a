"""Generation backends behind one interface: prompts in, n generations per prompt out.

`hf` (transformers generate), `openai` (any OpenAI-compatible server, e.g. `rlctl serve
vllm`), `vllm` (the in-process offline engine). Every backend reports the same things, so
`compare-logprobs` and the judges never care which one produced a rollout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rlctl.errors import BadInput

# the generation engines, by name: `module:Class`, imported on first use; each class builds
# itself from the command's options (`Class.from_options(options, endpoint)`)
REGISTRY = {
    "hf": "rlctl.backends.generation.hf:HFBackend",
    "openai": "rlctl.backends.generation.openai_api:OpenAIBackend",
    "vllm": "rlctl.backends.generation.vllm_engine:VLLMBackend",
}
BACKENDS = tuple(REGISTRY)


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off (vLLM's convention)
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False

    def record(self) -> dict[str, Any]:
        """The settings that go into every rollout record."""
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out

    @property
    def logprob_temperature(self) -> float:
        """Logprobs are of softmax(logits / T), T = temperature; greedy (T = 0) uses T = 1.
        The trainer recomputes exactly this, so the two are comparable."""
        return self.temperature if self.temperature > 0 else 1.0


@dataclass
class Prompt:
    """What a backend generates from: chat messages (rendered with the chat template, or with
    `template`, a `--chat-template-file`'s text, when given) or text."""

    messages: list[dict[str, str]] | None
    text: str | None
    template: str | None = None

    @classmethod
    def of(
        cls,
        rec: dict[str, Any],
        chat_template: bool,
        system_prompt: str | None,
        template: str | None = None,
    ) -> Prompt:
        messages = rec.get("messages")
        if messages is None and rec.get("prompt") is not None and chat_template:
            messages = [{"role": "user", "content": rec["prompt"]}]
        if not chat_template:
            text = rec.get("prompt")
            if text is None:
                text = "\n\n".join(m["content"] for m in messages or [])
            return cls(None, text)
        if system_prompt and not any(m["role"] == "system" for m in messages or []):
            messages = [{"role": "system", "content": system_prompt}, *(messages or [])]
        return cls(list(messages or []), None, template)


@dataclass
class Generation:
    text: str
    finish_reason: str | None
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = field(default=None)


class Backend(Protocol):
    name: str
    model: str
    # What the generator actually ran (`engine_record`): recorded in the run and every record.
    engine: dict[str, Any]
    # Prompts `rollout` hands to `generate` at once: enough to keep the engine busy (hf: 4
    # batches; openai: 4 per request in flight), few enough that memory stays flat.
    chunk: int

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Generation]]: ...

    def close(self) -> None: ...


def require_chat_template(tokenizer: Any, template: str | None, to: str = "generate") -> None:
    """One line instead of transformers' error when chats meet a tokenizer without a template
    (a base model, `model tiny --no-chat-template`); rollout and train say it alike."""
    if not template and not getattr(tokenizer, "chat_template", None):
        raise BadInput(
            "the model's tokenizer has no chat template; pass --chat-template-file FILE, "
            f"or --no-chat-template to {to} from plain text"
        )


def render(tokenizer: Any, prompt: Prompt) -> str:
    """The exact text a local backend feeds the model."""
    if prompt.messages is not None:
        require_chat_template(tokenizer, prompt.template)
        return tokenizer.apply_chat_template(
            prompt.messages,
            tokenize=False,
            add_generation_prompt=True,
            chat_template=prompt.template,
        )
    return prompt.text or ""


def read_chat_template(path: str | None, option: str = "--chat-template-file") -> str | None:
    """A Jinja chat template file's text, compiled as transformers compiles it, so a syntax
    error is one line with the file and line before any model loads."""
    if not path:
        return None
    from pathlib import Path

    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{option} {path}: cannot read it ({e})") from None
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # another transformers layout: checked when it renders
        return text
    try:
        _compile_jinja_template(text)
    except Exception as e:  # noqa: BLE001 (jinja2's TemplateSyntaxError and its kin)
        line = getattr(e, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise BadInput(f"{option} {where}: not a valid Jinja template ({e})") from None
    return text


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the first stop string (excluded, as vLLM and OpenAI do)."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def checkpoint_dtype(model: str | None) -> str | None:
    """The dtype a local checkpoint's config.json declares (None for a hub id)."""
    import json
    from pathlib import Path

    try:
        conf = json.loads((Path(str(model)).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = conf.get("dtype") or conf.get("torch_dtype")
    return str(value).removeprefix("torch.") if value else None


def engine_record(
    engine: str,
    dtype: str | None,
    requested: str | None,
    fp32_lm_head: bool | None,
    model: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The precision a generator really ran with, and whether anyone chose it: an `auto` or
    absent dtype is the engine's own choice (vLLM's CPU build serves a float32 checkpoint in
    bfloat16 unless told otherwise), which must be visible, not assumed; `checkpoint_dtype`
    is what the weights were saved in, for comparison."""
    if dtype is None:
        chosen_by = "unknown"
    elif requested in (None, "auto"):
        chosen_by = "engine default"
    else:
        chosen_by = "user"
    return {
        "engine": engine,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "dtype_requested": requested,
        "dtype_chosen_by": chosen_by,
        "checkpoint_dtype": checkpoint_dtype(model),
        "fp32_lm_head": fp32_lm_head,
        **more,
    }


def make_backend(
    name: str, options: dict[str, Any], endpoint: dict[str, Any] | None = None
) -> Backend:
    if name not in REGISTRY:
        raise BadInput(f"--backend {name}: use one of {', '.join(BACKENDS)}")
    import importlib

    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls).from_options(options, endpoint)
