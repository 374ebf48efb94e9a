"""The record kinds of DESIGN.md section 4: the public contract between stages.

One table of fields serves three readers: validation (what a stage accepts), the DuckDB views
(the SQL type of each column) and `docs/records.md`. Adding a kind is one entry in `KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], bool]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """Finite only: a NaN reward compares unequal to itself, so it would pick pairs at random
    (chosen == rejected) and poison every average it enters."""
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in v
    )


def _is_id(v: Any) -> bool:
    return isinstance(v, str) or _is_int(v)


def _is_reference(v: Any) -> bool:
    return isinstance(v, str) or _is_num(v) or (isinstance(v, list) and all(map(_is_str, v)))


def _is_chat(v: Any) -> bool:
    return _is_messages(v) and len(v) > 0


def _is_text_or_messages(v: Any) -> bool:
    return isinstance(v, str) or _is_chat(v)


def _is_int_list(v: Any) -> bool:
    return isinstance(v, list) and all(map(_is_int, v))


def _is_num_list(v: Any) -> bool:
    return isinstance(v, list) and all(x is None or _is_num(x) for x in v)


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


@dataclass(frozen=True)
class Field:
    name: str
    check: Check
    expected: str  # shown in errors and docs
    sql: str  # DuckDB column type in the views
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Kind:
    name: str
    table: str  # the SQL view over every stored artifact of this kind
    fields: tuple[Field, ...]
    one_of: tuple[str, ...] = ()  # at least one of these fields must be present
    doc: str = ""

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def columns(self) -> dict[str, str]:
        return {f.name: f.sql for f in self.fields}


_MESSAGES = "a list of {role, content} objects"

_PROMPT_FIELDS = (
    Field(
        "id", _is_id, "a string or integer", "VARCHAR", True, "Stable id, unique in the dataset."
    ),
    Field(
        "messages",
        _is_chat,
        f"a non-empty {_MESSAGES[2:]}",
        "JSON",
        doc="The chat so far (no final answer).",
    ),
    Field("prompt", _is_str, "a string", "VARCHAR", doc="Plain-text prompt, when not chat."),
    Field(
        "reference",
        _optional(_is_reference),
        "a string, number or list of strings",
        "VARCHAR",
        doc="Gold answer (gsm8k: the number after ####) or tests (mbpp: the asserts).",
    ),
    Field("source", _optional(_is_str), "a string", "VARCHAR", doc="Dataset the record came from."),
    Field("meta", _optional(_is_dict), "an object", "JSON", doc="Free-form extras."),
    Field("run_id", _is_str, "a string", "VARCHAR", doc="The run that emitted the record."),
)

_ROLLOUT_FIELDS = (
    *_PROMPT_FIELDS,
    Field("completion", _is_str, "a string", "VARCHAR", True, "The generated text."),
    Field("sample", _is_int, "an integer", "BIGINT", doc="Which of the n samples (0-based)."),
    Field("model", _is_str, "a string", "VARCHAR", doc="Model path or id."),
    Field("backend", _is_str, "a string", "VARCHAR", doc="hf, vllm or openai."),
    Field("finish_reason", _optional(_is_str), "a string", "VARCHAR", doc="stop, length, ..."),
    Field("prompt_token_ids", _is_int_list, "a list of integers", "JSON"),
    Field("completion_token_ids", _is_int_list, "a list of integers", "JSON"),
    Field(
        "completion_logprobs",
        _is_num_list,
        "a list of numbers",
        "JSON",
        doc="Log-probability of each sampled token, as the generator computed it.",
    ),
    Field(
        "sampling",
        _optional(_is_dict),
        "an object",
        "JSON",
        doc="The sampling settings (n, temperature, top_p, top_k, max_tokens, stop, seed).",
    ),
    Field(
        "generator",
        _optional(_is_dict),
        "an object",
        "JSON",
        doc="What the engine really ran: dtype (and who chose it), fp32 head, endpoint run.",
    ),
)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "prompt",
            "prompts",
            _PROMPT_FIELDS,
            one_of=("messages", "prompt"),
            doc="A task for a model: what `data pull` emits and `rollout` reads.",
        ),
        Kind(
            "pair",
            "pairs",
            (
                *_PROMPT_FIELDS[:3],
                Field(
                    "chosen",
                    _is_text_or_messages,
                    f"a string or {_MESSAGES}",
                    "VARCHAR",
                    True,
                    "The preferred continuation (a string, or messages when it spans turns).",
                ),
                Field(
                    "rejected",
                    _is_text_or_messages,
                    f"a string or {_MESSAGES}",
                    "VARCHAR",
                    True,
                    "The dispreferred continuation.",
                ),
                Field("margin", _optional(_is_num), "a number", "DOUBLE", doc="Reward gap."),
                *_PROMPT_FIELDS[4:],
            ),
            one_of=("messages", "prompt"),
            doc="A preference pair for DPO-style training.",
        ),
        Kind(
            "rollout",
            "rollouts",
            _ROLLOUT_FIELDS,
            one_of=("messages", "prompt"),
            doc="One sampled completion of a prompt.",
        ),
        Kind(
            "judged",
            "judged",
            (
                *_ROLLOUT_FIELDS,
                Field("reward", _optional(_is_num), "a number or null", "DOUBLE", True),
                Field("judge", _is_str, "a string", "VARCHAR", True, "Judge name(s)."),
                Field("verdict", _optional(_is_dict), "an object", "JSON", doc="Why this reward."),
            ),
            one_of=("messages", "prompt"),
            doc="A rollout with a reward.",
        ),
        Kind(
            "logprob_diff",
            "logprob_diffs",
            (
                Field("id", _is_id, "a string or integer", "VARCHAR", True, "The rollout's id."),
                Field("sample", _is_int, "an integer", "BIGINT", doc="The rollout's sample."),
                Field("setting", _is_str, "a string", "VARCHAR", doc="Trainer dtype / head."),
                Field("position", _is_int, "an integer", "BIGINT", True, "Token position."),
                Field("token_id", _is_int, "an integer", "BIGINT", True),
                Field("generator_logprob", _is_num, "a number", "DOUBLE", True),
                Field("trainer_logprob", _is_num, "a number", "DOUBLE", True),
                Field("delta", _is_num, "a number", "DOUBLE", True, "trainer − generator."),
                _PROMPT_FIELDS[-1],
            ),
            doc="One completion token of `compare-logprobs`: both logprobs and their gap.",
        ),
        Kind(
            "train_sample",
            "train_samples",
            (
                Field(
                    "id",
                    _optional(_is_id),
                    "a string or integer",
                    "VARCHAR",
                    doc="The prompt's id.",
                ),
                Field("step", _is_int, "an integer", "BIGINT", True, "Optimizer step."),
                Field("prompt", _is_text_or_messages, "a string or messages", "VARCHAR", True),
                Field(
                    "reference",
                    _optional(_is_reference),
                    "a string, number or list of strings",
                    "VARCHAR",
                    doc="The prompt's reference, as the reward read it.",
                ),
                Field("completion", _is_str, "a string", "VARCHAR", True),
                Field(
                    "reward", _optional(_is_num), "a number or null", "DOUBLE", doc="Weighted sum."
                ),
                Field(
                    "rewards", _optional(_is_dict), "an object", "JSON", doc="Per reward function."
                ),
                Field(
                    "advantage",
                    _optional(_is_num),
                    "a number or null",
                    "DOUBLE",
                    doc="GRPO's advantage (TRL's).",
                ),
                _PROMPT_FIELDS[-1],
            ),
            doc="A completion GRPO sampled during training, with its rewards.",
        ),
        Kind(
            "margin_log",
            "margin_logs",
            (
                Field(
                    "step", _is_int, "an integer", "BIGINT", True, "The step the pair trained in."
                ),
                Field(
                    "id", _optional(_is_id), "a string or integer", "VARCHAR", doc="The pair's id."
                ),
                Field("margin", _is_num, "a number", "DOUBLE", True, "Log-ratio margin, no β."),
                Field("kept", _is_bool, "a boolean", "BOOLEAN", True, "Chosen by the filter."),
                Field("beta", _is_num, "a number", "DOUBLE", True, "The batch's β."),
                _PROMPT_FIELDS[-1],
            ),
            doc="One pair of a β-DPO batch: its margin, whether the filter kept it, the batch β.",
        ),
        Kind(
            "eval",
            "evals",
            (
                Field("task", _is_str, "a string", "VARCHAR", True, "lm-eval task name."),
                Field("metric", _is_str, "a string", "VARCHAR", True, "exact_match, pass@1, ..."),
                Field("filter", _is_str, "a string", "VARCHAR", True, "strict-match, none, ..."),
                Field("value", _optional(_is_num), "a number or null", "DOUBLE", True),
                Field("stderr", _optional(_is_num), "a number or null", "DOUBLE"),
                Field(
                    "shots", _optional(_is_int), "an integer", "BIGINT", doc="Few-shot examples."
                ),
                Field(
                    "samples", _optional(_is_int), "an integer", "BIGINT", doc="Documents scored."
                ),
                Field("model", _is_str, "a string", "VARCHAR"),
                Field("backend", _is_str, "a string", "VARCHAR", doc="hf, vllm or openai."),
                Field("lm_eval_version", _is_str, "a string", "VARCHAR"),
                Field("apply_chat_template", _is_bool, "a boolean", "BOOLEAN"),
                Field("fewshot_as_multiturn", _is_bool, "a boolean", "BOOLEAN"),
                Field(
                    "max_gen_toks",
                    _optional(_is_int),
                    "an integer",
                    "BIGINT",
                    doc="Generation budget (null for loglikelihood tasks).",
                ),
                Field("gen_kwargs", _optional(_is_dict), "an object", "JSON"),
                Field("limit", _optional(_is_num), "a number", "DOUBLE", doc="--limit, if any."),
                Field("seed", _optional(_is_int), "an integer", "BIGINT"),
                Field(
                    "data",
                    _is_str,
                    "a string",
                    "VARCHAR",
                    doc="What was scored: hub:DATASET, file:PATH or store:RUN, count, sha256.",
                ),
                _PROMPT_FIELDS[-1],
            ),
            doc="One score of `rlctl eval`: a task, metric and filter of lm-eval's results.",
        ),
    )
}


def kind(name: str) -> Kind:
    """Look a kind up by its name or its table name (`prompt` or `prompts`)."""
    for k in KINDS.values():
        if name in (k.name, k.table):
            return k
    raise KeyError(name)


def validate(record: Any, k: Kind) -> tuple[str, str] | None:
    """Return (field, problem) for the first thing wrong with `record`, or None when valid."""
    if not isinstance(record, dict):
        return "", f"expected a JSON object, got {_type_name(record)}"
    if k.name != "pair" and "chosen" in record and "rejected" in record:
        # a pair has a `prompt` too, so it would pass as a prompt and be sampled as one
        return "", f"this is a pair record (it has chosen and rejected), not a {k.name} record"
    for f in k.fields:
        if f.name not in record:
            if f.required:
                return f.name, f"missing (a {k.name} record needs it)"
            continue
        value = record[f.name]
        if value is None and not f.required:
            continue
        if not f.check(value):
            return f.name, f"expected {f.expected}, got {_type_name(value)}"
    if k.one_of and not any(record.get(n) is not None for n in k.one_of):
        return "/".join(k.one_of), f"missing: a {k.name} record needs one of them"
    return _oversized_int(record, "")


INT64 = (-(2**63), 2**63 - 1)


def _oversized_int(value: Any, where: str) -> tuple[str, str] | None:
    """An integer past 64 bits turns into a rounded DOUBLE (or breaks the view) in DuckDB."""
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return where, f"integer {str(value)[:30]}... does not fit in 64 bits; write it as a string"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(item, (int, dict, list)):
            found = _oversized_int(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    return None


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v).replace("inf", "Infinity").replace("nan", "NaN")
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}
    names |= {list: "a list", dict: "an object"}
    for t, n in names.items():
        if type(v) is t:
            if t is list and v and not all(isinstance(x, dict) for x in v):
                first = _type_name(v[0])
                if " " not in first:  # null, NaN, Infinity
                    return f"a list holding {first}"
                return f"a list of {first.split(' ', 1)[1]}s"
            return n
    return type(v).__name__
