"""Declarative config: defaults < YAML file < `--set key=value` < flags (DESIGN.md section 6).

Unknown keys are errors with a "did you mean", because a typo in a recipe that silently falls
back to a default costs a GPU-day. Sections named in `open_sections` pass through unchecked: those
go to TRL's own config classes, which validate them.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput


@functools.cache
def _loader() -> type:
    """YAML 1.2 floats: PyYAML follows YAML 1.1, where `1e-5` (no dot) is a *string*, and a
    learning rate written the way everyone writes it would reach TRL as text. Built on first
    use: commands that read no YAML (`rlctl sql`) do not import PyYAML."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


MAX_VALUES = 100_000  # scalars and containers a config may expand to


def _yaml(text: str) -> Any:
    import yaml

    data = yaml.load(text, Loader=_loader())
    _bounded(data)
    return data


def _bounded(data: Any) -> None:
    """YAML aliases can make a few hundred bytes expand into gigabytes (the "billion laughs"):
    PyYAML shares the aliased nodes, so loading is cheap, but saving the config into run.json
    writes every copy. Count values as they would be written, and stop early."""
    seen = 0
    stack = [data]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise BadInput(
                f"config expands to more than {MAX_VALUES:,} values (YAML aliases?); "
                "write the values out, or split the config"
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{p}: cannot read config ({e})") from e
    import yaml

    try:
        data = _yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}: invalid YAML ({problem})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{p}: a config file must be a mapping of keys to values")
    return data


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """`a.b=3` -> {"a": {"b": 3}}; values are parsed as YAML scalars (`true`, `1e-5`, `[1,2]`)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise BadInput(f"--set {item!r}: expected KEY=VALUE, e.g. --set limit=50")
        key, raw = item.split("=", 1)
        if "#" in raw and not raw.lstrip().startswith(("'", '"')):
            value: Any = raw  # YAML would read `#` as a comment: `--set 'regex=#### [0-9]'`
        else:
            try:
                value = _yaml(raw) if raw else ""
            except yaml.YAMLError:
                value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def check_keys(
    data: Mapping[str, Any],
    defaults: Mapping[str, Any],
    where: str,
    open_sections: Iterable[str] = (),
    prefix: str = "",
    section_keys: Mapping[str, Callable[[], Iterable[str]]] | None = None,
    moved: Mapping[str, str] | None = None,
) -> None:
    """Unknown keys are one line with the nearest known key; a key that belongs to an open
    section (`num_generations`, which is TRL's `trainer.num_generations`) is named there.
    `section_keys` gives an open section's keys, asked only when a key is unknown. `moved`
    says where a value went that a section's name once held (`rlctl judge`'s list of judges,
    now `reward`), for a config written before."""
    open_set = set(open_sections)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            hint = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            did = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            for section, keys in (section_keys or {}).items() if not prefix else ():
                known_there = set(keys())
                near = difflib.get_close_matches(str(key), sorted(known_there), n=1)
                if str(key) in known_there or near:
                    did = f"; did you mean '{section}.{key if key in known_there else near[0]}'?"
                    break
            known = ", ".join(sorted(str(k) for k in defaults))
            raise BadInput(f"{where}: unknown key {dotted!r}{did} (known: {known})")
        if dotted in open_set:
            continue
        if isinstance(defaults[key], Mapping) and defaults[key] and isinstance(value, Mapping):
            check_keys(value, defaults[key], where, open_set, prefix=f"{dotted}.")
        elif isinstance(defaults[key], Mapping) and defaults[key] and dotted not in open_set:
            was = (moved or {}).get(dotted)
            fix = f"; {was}" if was else ""
            raise BadInput(
                f"{where}: {dotted!r} is a section; set its keys, e.g. {dotted}.KEY=…{fix}"
            )
        elif (
            isinstance(value, Mapping)
            and value
            and defaults[key] is not None  # None: the key takes whatever it is given
            and not isinstance(defaults[key], Mapping)
        ):
            # `stop.x` where `stop` is a list: it would be replaced, not merged
            leaf = next(iter(value))
            flat = f"{key}_{leaf}" if f"{key}_{leaf}" in defaults else None
            nested = value[leaf]
            if isinstance(nested, Mapping) and nested:
                flat = next((k for k in (f"{leaf}_{next(iter(nested))}",) if k in defaults), flat)
            did = f"; did you mean '{prefix}{flat}'?" if flat else ""
            raise BadInput(
                f"{where}: {dotted!r} is not a section (it holds {defaults[key]!r}), so "
                f"{dotted}.{leaf} would be dropped{did}"
            )


def resolve(
    defaults: Mapping[str, Any],
    *,
    file: str | Path | None = None,
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    open_sections: Iterable[str] = (),
    section_keys: Mapping[str, Callable[[], Iterable[str]]] | None = None,
    moved: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The config a run actually used; it is saved whole into run.json."""
    config = dict(defaults)
    checks = {"section_keys": section_keys, "moved": moved}
    if file:
        from_file = load_file(file)
        check_keys(from_file, defaults, str(file), open_sections, **checks)
        config = merge(config, from_file)
    from_sets = parse_sets(sets)
    check_keys(from_sets, defaults, "--set", open_sections, **checks)
    config = merge(config, from_sets)
    return merge(config, flags or {})
