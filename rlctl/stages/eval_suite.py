"""An eval suite file: a lab's protocol (which tasks, at how many shots, on which data) as
YAML, so `rlctl eval suite FILE` runs it the same way every time and the run records it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlctl.errors import BadInput

# What an entry may set; everything else is the command's (model, backend, engine settings).
ENTRY_KEYS = (
    "task",
    "shots",
    "limit",
    "data",
    "fewshot_data",
    "gen_kwargs",
    "apply_chat_template",
    "fewshot_as_multiturn",
    "system_instruction",
)


def load_suite(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(name, entries), or one line naming the file and the entry that is wrong."""
    import difflib

    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"eval suite: {path}: no such file") from None
    except yaml.YAMLError as e:
        raise BadInput(f"eval suite: {path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list) or not doc["tasks"]:
        raise BadInput(f"eval suite: {path}: expected a mapping with a non-empty 'tasks' list")
    entries = []
    for i, entry in enumerate(doc["tasks"]):
        where = f"{path}: tasks[{i}]"
        if isinstance(entry, str):
            entry = {"task": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise BadInput(f"{where}: expected a task name or a mapping with 'task'")
        for key in entry:
            if key not in ENTRY_KEYS:
                near = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"keys: {', '.join(ENTRY_KEYS)}"
                raise BadInput(f"{where}: unknown key '{key}'; {hint}")
        shots = entry.get("shots")
        if shots is not None and (not isinstance(shots, int) or shots < 0):
            raise BadInput(f"{where}: shots must be a whole number >= 0, got {shots!r}")
        entries.append(dict(entry))
    unknown = set(doc) - {"name", "tasks", "description"}
    if unknown:
        raise BadInput(f"eval suite: {path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    return str(doc.get("name") or path.stem), entries
