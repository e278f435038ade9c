"""Every rule is documented in the fixed sections, and its docs examples hold."""

from __future__ import annotations

import re

import pytest

from django_rollout.findings import Severity
from django_rollout.rules.base import RULE_ID, SECTIONS, Rule
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge_example

RULES = all_rules()
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def section(rule: type[Rule], title: str) -> str:
    doc = rule.doc()
    titles = "|".join(re.escape(t) for t in SECTIONS)
    match = re.search(
        rf"^{re.escape(title)}\n-+\n(.*?)(?=^(?:{titles})\n-+\n|\Z)", doc, re.S | re.M
    )
    assert match, f"{rule.id}: section {title!r} is missing"
    return match.group(1)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_has_every_documentation_section(rule: type[Rule]) -> None:
    for title in SECTIONS:
        assert section(rule, title).strip(), f"{rule.id}: section {title!r} is empty"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_declares_id_name_severity_message_help(rule: type[Rule]) -> None:
    assert RULE_ID.match(rule.id)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", rule.name), rule.name
    assert isinstance(rule.severity, Severity)
    assert "\n" not in rule.message and rule.message
    assert "\n" not in rule.help and rule.help


def test_rule_ids_and_names_are_unique() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    assert len({r.name for r in RULES}) == len(RULES)


def _examples(rule: type[Rule], title: str) -> list[str]:
    blocks = PYTHON_BLOCK.findall(section(rule, title))
    return blocks


OPERATION_RULES = [r for r in RULES if getattr(r, "docs_examples_run", True)]


@pytest.mark.parametrize("rule", OPERATION_RULES, ids=lambda r: r.id)
def test_rule_fires_on_its_example(rule: type[Rule], django_settings: None) -> None:
    blocks = _examples(rule, "Example")
    assert blocks, f"{rule.id}: the Example section needs a ```python block"
    for code in blocks:
        found = {f.rule for f in judge_example(code)}
        assert rule.id in found, f"{rule.id} does not fire on its own Example"


@pytest.mark.parametrize("rule", OPERATION_RULES, ids=lambda r: r.id)
def test_rule_is_silent_on_its_use_instead(rule: type[Rule], django_settings: None) -> None:
    blocks = _examples(rule, "Use instead")
    assert blocks, f"{rule.id}: the Use instead section needs a ```python block"
    for code in blocks:
        found = {f.rule for f in judge_example(code)}
        assert rule.id not in found, f"{rule.id} fires on its own Use instead: {found}"
