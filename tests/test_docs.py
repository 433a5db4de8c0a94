"""Figures the README quotes are the ones the commands wrote (aloha-bench's rule: no hand-typed
results)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_main_table_is_the_reports():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- table_tasks.md -->\n(.*?)<!-- /table_tasks.md -->", readme, re.S)
    assert block, "README.md lost its <!-- table_tasks.md --> block"
    written = (ROOT / "results" / "cpu" / "table_tasks.md").read_text().strip()
    assert block.group(1).strip() == written, (
        "README's main table differs from results/cpu/table_tasks.md: copy the file into the "
        "block after `aloha-bench reproduce --profile cpu --report-only`"
    )
