"""SARIF 2.1.0, for code-scanning upload."""

from __future__ import annotations

import json
from typing import IO, Any

from django_rollout import __version__
from django_rollout.api import Report
from django_rollout.findings import Severity

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
DOCS = "https://github.com/django-rollout/django-rollout/blob/main/docs/rules/{rule}.md"


def sarif_document(report: Report) -> dict[str, Any]:
    from django_rollout.rules.registry import all_rules

    rules = [
        {
            "id": rule.id,
            "name": rule.name,
            "shortDescription": {"text": rule.doc().splitlines()[0] if rule.doc() else rule.name},
            "helpUri": DOCS.format(rule=rule.id),
            "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        }
        for rule in all_rules()
    ]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for f in report.findings:
        result: dict[str, Any] = {
            "ruleId": f.rule or "rehearsal",
            "level": _LEVEL[f.severity],
            "message": {"text": f"{f.message}. {f.help}"},
        }
        if f.rule in index:
            result["ruleIndex"] = index[f.rule]
        if f.location.path:
            region = {"startLine": f.location.line} if f.location.line else {}
            result["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.location.path.replace("\\", "/")},
                        **({"region": region} if region else {}),
                    }
                }
            ]
        results.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "django-rollout",
                        "version": __version__,
                        "informationUri": "https://github.com/django-rollout/django-rollout",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def render_sarif(report: Report, out: IO[str]) -> None:
    out.write(json.dumps(sarif_document(report), indent=2))
    out.write("\n")
