"""The README tells the truth about the schema and the flags."""

from __future__ import annotations

import re
from pathlib import Path

from scaler.cli import ENV_PREFIX, parser
from scaler.triggers import metadata_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_metadata_table_is_the_generated_one() -> None:
    section = re.search(r"<!-- metadata-table:.*?-->\n(.*?)\n<!-- end metadata-table -->", README, re.S)
    assert section is not None
    assert section.group(1) == metadata_table(), "regenerate with scaler.triggers.metadata_table()"


def test_every_serve_flag_and_its_env_var_is_documented() -> None:
    serve = parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = [a.option_strings[0] for a in serve._actions if a.option_strings and a.dest != "help"]
    assert flags
    for flag in flags:
        env = ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")
        assert f"| `{flag}` | `{env}` |" in README, flag
