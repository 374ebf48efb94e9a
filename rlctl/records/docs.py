"""Render docs/records.md from the schema table, so the public contract and the validator
cannot drift apart (a test compares the two).

Run: `python -m rlctl.records.docs > docs/records.md`.
"""

from __future__ import annotations

from rlctl.records.schema import KINDS

HEADER = """# Records

Every stage reads and writes **records**: one JSON object per line (JSONL, optionally gzipped as
`.jsonl.gz`), or the same columns in Parquet. Field names are a public contract: stages validate
what they read, and an error names the file, the line and the field, e.g.

    rlctl: error: rollouts.jsonl:17: field 'completion': expected a string, got an integer; ...

Numbers must be finite (a NaN or Infinity, possible in Parquet, is refused: a NaN reward
compares false both ways and would make a pair's chosen and rejected the same sample), and
integers must fit in 64 bits anywhere in a record, `meta` included (a larger one would become a
rounded DOUBLE in SQL; write it as a string). A pair record fed where prompts or rollouts are
expected is refused by name, since its `prompt` would otherwise pass for a prompt.

Every record a stage emits carries `run_id`, the run that wrote it, so lineage survives a pipe:
`rlctl sql "SELECT * FROM lineage"` shows which run read which.

## Formats

| file | how it is read | notes |
| --- | --- | --- |
| `.jsonl` | line by line, constant memory | blank lines are skipped; gzip is detected by content |
| `.jsonl.gz` | streamed through gzip | a truncated gzip is an error at the line where it ends |
| `.parquet` | row batches of 1,024 | nested or mixed-type fields are stored as JSON text and listed in the file's `rlctl.json_columns` metadata, so `meta` round-trips exactly |
| `-` | stdin | with no `-i` and a piped stdin, a stage reads stdin |

`-i` also takes a glob (`'rollouts/*.jsonl'`) and store references: a run id (or a unique prefix
or suffix of one), `RUN:artifact`, or `latest:NAME` (NAME: a command such as `data-pull`, or a
kind such as `prompts`).

Writers publish atomically: records go to a hidden temporary file that is renamed when the stage
succeeds. A stage that fails leaves `<name>.partial` and marks the artifact `complete = false`;
the SQL views never include it. A stage reading a pipe checks, at end of input, that the run
that fed it finished `ok`; if it failed or was killed, the reader fails too instead of treating
a cut stream as complete.

Unknown fields are kept and passed through by every stage; the SQL views show the documented
fields (and `artifact`, the file a row came from), the files keep everything. A field that is absent and a field set to `null` are
treated alike by the validator (except where a field is required).
"""


def render() -> str:
    out = [HEADER]
    for k in KINDS.values():
        out.append(f"## {k.name}\n\n{k.doc} SQL view: `{k.table}`.")
        if k.one_of:
            out.append(f"At least one of {', '.join(f'`{n}`' for n in k.one_of)} is required.")
        out.append(
            "\n| field | type | required | SQL type | meaning |\n| --- | --- | --- | --- | --- |"
        )
        for f in k.fields:
            req = "yes" if f.required else ""
            out.append(f"| `{f.name}` | {f.expected} | {req} | {f.sql} | {f.doc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
