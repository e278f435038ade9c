"""Generate ``docs/rules/`` from the rules' docstrings: ``python -m django_rollout.rules.docs``.

The docstring is the documentation; this only lays it out as Markdown, one page per rule
and an index. A test fails when the committed pages differ from what this writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from django_rollout.rules.base import Rule
from django_rollout.rules.registry import all_rules

FAMILIES = {
    "compat": "C: compatibility with the code that is still running",
    "data": "D: data that is already there",
    "locks": "L: locks and rewrites",
    "code": "M: migration code and graph",
    "history": "H: history and state",
    "runtime": "A: the running application",
}


def page(rule: type[Rule]) -> str:
    """Return the Markdown page of one rule."""
    doc = rule.doc()
    summary, _, body = doc.partition("\n")
    # Turn "Title\n-----" section headings into Markdown headings.
    body = re.sub(r"^(.+)\n-{3,}$", r"## \1", body.strip(), flags=re.M)
    lines = [
        f"# {rule.id} `{rule.name}`",
        "",
        f"**Severity:** {rule.severity} · **Family:** {FAMILIES.get(rule.family(), rule.family())}",
        "",
        summary.strip(),
        "",
        f"**Message:** {rule.message}",
        "",
        f"**Help:** {rule.help}",
        "",
        body,
        "",
    ]
    if rule.recipe_steps:
        lines += ["## The safe recipe (`--explain` fills in your names)", ""]
        lines += [f"{i}. {step}" for i, step in enumerate(rule.recipe_steps, 1)]
        lines.append("")
    lines += [
        "## Suppressing it",
        "",
        f'On the migration: `rollout_ignore = {{"{rule.id}": "<why this is safe here>"}}`;'
        f' project-wide: `ROLLOUT = {{"ignore": {{"{rule.id}": "<why>"}}}}`.',
        "",
    ]
    return "\n".join(lines)


def index() -> str:
    lines = ["# The rule catalogue", "", "Generated from the rules' docstrings.", ""]
    for family, title in FAMILIES.items():
        rules = [r for r in all_rules() if r.family() == family]
        if not rules:
            continue
        lines += [f"## {title}", "", "| id | name | severity | catches |", "|---|---|---|---|"]
        for r in rules:
            summary = r.doc().partition("\n")[0].strip()
            lines.append(f"| [{r.id}]({r.id}.md) | `{r.name}` | {r.severity} | {summary} |")
        lines.append("")
    return "\n".join(lines)


def render_all() -> dict[str, str]:
    pages = {f"{r.id}.md": page(r) for r in all_rules()}
    pages["README.md"] = index()
    return pages


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "docs/rules")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.md"):
        old.unlink()
    for name, text in render_all().items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(render_all())} pages to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
