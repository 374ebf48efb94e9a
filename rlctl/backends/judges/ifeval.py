"""`ifeval`: did the completion follow the prompt's verifiable instructions (IFEval)?

The checking is lm-eval's own (`lm_eval.tasks.ifeval.utils`, Google's checkers as lm-eval ships
them), called unchanged, so a reward here equals lm-eval's per-sample IFEval score on the same
completion. rlctl only supplies what those checkers need offline: NLTK's English Punkt files,
bundled, which lm-eval would otherwise try to download at import.

Upstream draws an instruction's missing or invalid argument at random (IFEval prompt 1122 asks
for at least four '#', and the letter checker only takes a-z, so it picks a random letter on
every call): lm-eval's score for such a prompt depends on the random state. The judge checks
every record under a fixed seed, so a reward is reproducible, and names such instructions in
the verdict (`random_args`) and the run's metrics.

The instructions travel in the record's `reference`: a JSON object (or its text, so it fits
every reference column) with IFEval's own fields `instruction_id_list`, `kwargs` and `prompt`,
as `rlctl data pull ifeval` and `rlctl eval ifeval` write it.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.errors import BadInput

MODES = ("strict", "loose")
FIELDS = ("instruction_id_list", "kwargs", "prompt")


def bundled_nltk_data() -> str:
    return str(files("rlctl.data") / "nltk")


def use_bundled_punkt() -> None:
    """Put rlctl's English Punkt files on NLTK's search path, after any the user has, before
    lm-eval's IFEval module looks for them (it downloads them at import when missing)."""
    bundled = bundled_nltk_data()
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if bundled not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([*paths, bundled])
    if "nltk" in sys.modules:  # read NLTK_DATA at its import: tell a loaded one directly
        import nltk

        if bundled not in nltk.data.path:
            nltk.data.path.append(bundled)


def reference_of(doc: dict[str, Any]) -> str:
    """IFEval's fields of a document, as the JSON text a record's `reference` carries."""
    return json.dumps({k: doc.get(k) for k in FIELDS}, ensure_ascii=False)


def parse_reference(value: Any) -> dict[str, Any] | None:
    """The instructions of a record, or None when it carries none (a null reward)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not isinstance(value.get("instruction_id_list"), list):
        return None
    ids = value["instruction_id_list"]
    kwargs = value.get("kwargs") or [{} for _ in ids]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        return None
    return {"instruction_id_list": ids, "kwargs": kwargs, "prompt": value.get("prompt") or ""}


class IFEvalJudge:
    @classmethod
    def from_options(cls, o: dict[str, Any]) -> IFEvalJudge:
        """From its `judge.ifeval` section."""
        return cls(mode=o["mode"] or "strict")

    def __init__(self, mode: str = "strict") -> None:
        if mode not in MODES:
            raise BadInput(f"--ifeval-mode {mode!r}: expected one of {', '.join(MODES)}")
        use_bundled_punkt()
        from lm_eval.tasks.ifeval import instructions_registry, utils

        self.utils = utils
        self.known = set(instructions_registry.INSTRUCTION_DICT)
        self.mode = mode
        self.name = "ifeval"
        self.registry = instructions_registry.INSTRUCTION_DICT
        self.counts = {"prompts": 0, "no_reference": 0, "random_args": 0}
        self.followed = {m: [0, 0] for m in MODES}  # prompt level: followed, scored
        self.instructions = {m: [0, 0] for m in MODES}  # instruction level

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        out: list[Score] = []
        for rec in records:
            spec = parse_reference(rec.get("reference"))
            if spec is None:
                self.counts["no_reference"] += 1
                out.append((None, {"reason": "no IFEval instructions in the reference"}))
                continue
            unknown = [i for i in spec["instruction_id_list"] if i not in self.known]
            if unknown:
                raise BadInput(
                    f"record {rec.get('id', '?')}: IFEval has no instruction "
                    f"{unknown[0]!r} (lm-eval's registry); check the record's reference"
                )
            inp = self.utils.InputExample(
                key=rec.get("id"),
                instruction_id_list=spec["instruction_id_list"],
                prompt=spec["prompt"],
                kwargs=spec["kwargs"],
            )
            response = completion_text(rec.get("completion"))
            state = random.getstate()
            try:
                drawn = self._random_args(spec)
                random.seed(0)
                strict = self.utils.test_instruction_following_strict(inp, response)
                random.seed(0)
                loose = self.utils.test_instruction_following_loose(inp, response)
            finally:
                random.setstate(state)
            self.counts["prompts"] += 1
            verdict: dict[str, Any] = {"instructions": spec["instruction_id_list"]}
            if drawn:
                verdict["random_args"] = drawn
                self.counts["random_args"] += 1
            for mode, result in (("strict", strict), ("loose", loose)):
                per = [bool(x) for x in result.follow_instruction_list]
                verdict[mode] = per
                verdict[f"prompt_{mode}"] = bool(result.follow_all_instructions)
                self.followed[mode][0] += bool(result.follow_all_instructions)
                self.followed[mode][1] += 1
                self.instructions[mode][0] += sum(per)
                self.instructions[mode][1] += len(per)
            out.append((1.0 if verdict[f"prompt_{self.mode}"] else 0.0, verdict))
        return out

    def _random_args(self, spec: dict[str, Any]) -> list[str]:
        """The instructions whose arguments upstream would draw at random for this record."""
        drawn = []
        for iid, kwargs in zip(spec["instruction_id_list"], spec["kwargs"], strict=True):
            given = {k: v for k, v in (kwargs or {}).items() if v}
            built = set()
            for seed in (1, 2):
                random.seed(seed)
                instruction = self.registry[iid](iid)
                instruction.build_description(**given)
                built.add(repr(instruction.get_instruction_args()))
            if len(built) > 1:
                drawn.append(iid)
        return drawn

    def total(self) -> int:
        return self.counts["prompts"]

    def report(self) -> dict[str, float]:
        """lm-eval's four IFEval scores over what this judge saw, and the records without
        instructions (null rewards)."""
        out: dict[str, float] = {
            "no_reference": self.counts["no_reference"],
            "random_args": self.counts["random_args"],
        }
        for mode in MODES:
            done, n = self.followed[mode]
            if n:
                out[f"prompt_level_{mode}_acc"] = done / n
            done, n = self.instructions[mode]
            if n:
                out[f"inst_level_{mode}_acc"] = done / n
        return out

    def describe(self) -> dict[str, Any]:
        import lm_eval

        return {"mode": self.mode, "checkers": f"lm-eval {lm_eval.__version__} ifeval"}

    def close(self) -> None:
        pass
