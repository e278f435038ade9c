"""Source locations: lines recorded while migrations are imported, and the parsed fallback."""

from __future__ import annotations

import ast
import gc
import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.db.migrations.operations.base import Operation

from django_rollout import cli
from django_rollout.graph import source
from django_rollout.graph.loader import LINE_ATTRIBUTE, _recording_operation_lines

pytestmark = pytest.mark.usefixtures("django_settings")

MIGRATION = """\
from django.db import migrations, models

from {helpers} import built_elsewhere

PREBUILT = migrations.RunSQL("SELECT 1", migrations.RunSQL.noop)


class Migration(migrations.Migration):
    operations = [
        migrations.CreateModel(
            "Thing",
            [("id", models.BigAutoField(primary_key=True))],
        ),
        migrations.AddField(
            model_name="thing",
            name="label",
            field=models.CharField(
                max_length=20,
                null=True,
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL("SELECT 2", migrations.RunSQL.noop),
            ],
            state_operations=[
                migrations.AddField("thing", "code", models.IntegerField(null=True)),
                migrations.AddField(
                    "thing", "size", models.IntegerField(null=True)
                ),
            ],
        ),
        built_elsewhere(),
        PREBUILT,
    ]
"""

HELPERS = """\
from django.db import migrations


def built_elsewhere():
    return migrations.RunSQL("SELECT 3", migrations.RunSQL.noop)
"""


@pytest.fixture
def import_file(tmp_path: Path) -> Iterator[Any]:
    names: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def write_and_import(text: str, name: str, recording: bool = True) -> ModuleType:
        path = tmp_path / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        names.append(name)
        if recording:
            with _recording_operation_lines():
                spec.loader.exec_module(module)
        else:
            spec.loader.exec_module(module)
        return module

    yield write_and_import
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


def _project(import_file: Any, recording: bool = True) -> ModuleType:
    helpers = f"rollout_helpers_{uuid.uuid4().hex[:8]}"
    import_file(HELPERS, helpers, recording)
    module: ModuleType = import_file(
        MIGRATION.format(helpers=helpers), f"rollout_mig_{uuid.uuid4().hex[:8]}", recording
    )
    return module


def _line(module: ModuleType, text: str) -> int:
    return Path(str(module.__file__)).read_text().splitlines().index(text) + 1


def test_recorded_lines_equal_the_parsed_lines(import_file: Any) -> None:
    module = _project(import_file)
    path = str(module.__file__)
    operations = module.Migration.operations
    parsed = source._operation_lines(path)
    keys: list[tuple[Any, ...]] = [(0,), (1,), (2,), (2, "database_operations", 0)]
    keys += [(2, "state_operations", 0), (2, "state_operations", 1)]
    for key in keys:
        index, nesting = key[0], list(zip(key[1::2], key[2::2], strict=True))
        recorded = source._recorded_line(path, index, nesting, operations)
        assert recorded is not None, key
        assert recorded == parsed[key], key
    assert source._recorded_line(path, 1, [], operations) == _line(
        module, "        migrations.AddField("
    )


def test_operation_built_in_another_file_gets_the_line_of_its_list_entry(
    import_file: Any,
) -> None:
    module = _project(import_file)
    path = str(module.__file__)
    operations = module.Migration.operations
    assert source._recorded_line(path, 3, [], operations) is None  # recorded in helpers
    assert source.operation_line(path, 3, (), operations) == _line(
        module, "        built_elsewhere(),"
    )
    # Built in the same file, outside the list: the line that built it.
    assert source.operation_line(path, 4, (), operations) == _line(
        module, 'PREBUILT = migrations.RunSQL("SELECT 1", migrations.RunSQL.noop)'
    )


def test_operations_imported_without_recording_are_located_by_parsing(
    import_file: Any,
) -> None:
    module = _project(import_file, recording=False)
    path = str(module.__file__)
    operations = module.Migration.operations
    assert not any(hasattr(op, LINE_ATTRIBUTE) for op in operations)
    nested = source.operation_line(path, 2, (("state_operations", 1),), operations)
    assert nested == _line(module, "                migrations.AddField(")
    assert source.operation_line(path, 1, (), operations) == _line(
        module, "        migrations.AddField("
    )


def test_recording_restores_operation_new_even_when_the_import_fails() -> None:
    original = Operation.__dict__["__new__"]
    with pytest.raises(RuntimeError), _recording_operation_lines():
        assert Operation.__dict__["__new__"] is not original
        raise RuntimeError("a migration module that raises while imported")
    assert Operation.__dict__["__new__"] is original


def test_function_source_shares_the_file_tree_and_keeps_lines(import_file: Any) -> None:
    code = textwrap.dedent(
        """\
        import functools


        def decorate(f):
            return f


        @decorate
        def forwards(apps, schema_editor):
            Thing = apps.get_model("shop", "Thing")
            Thing.objects.create(code=1)


        backwards = lambda apps, schema_editor: None  # noqa: E731
        """
    )
    module = import_file(code, f"rollout_fn_{uuid.uuid4().hex[:8]}")
    tree, path, first = source.function_source(module.forwards)
    assert path == module.__file__ and tree is not None and first is not None
    [create] = [
        n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "create"
    ]
    assert first + create.lineno - 1 == _line(module, "    Thing.objects.create(code=1)")
    assert source.module_tree(str(path)) is not None
    # The def comes from the file's shared tree, not a second parse.
    [node] = tree.body  # type: ignore[attr-defined]
    assert node in source.module_tree(str(path)).body  # type: ignore[union-attr]
    # A lambda cannot be told apart by its line: read on its own, lines still right.
    tree, path, first = source.function_source(module.backwards)
    assert tree is not None and first == _line(
        module, "backwards = lambda apps, schema_editor: None  # noqa: E731"
    )


def test_cli_restores_the_collector_pace(capsys: pytest.CaptureFixture[str]) -> None:
    before = gc.get_threshold()
    assert cli.run(["explain", "C101"]) == 0
    assert gc.get_threshold() == before
    assert "C101" in capsys.readouterr().out


def test_relative_shortens_only_paths_below_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proj" / "app").mkdir(parents=True)
    (tmp_path / "projection").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    below = str(tmp_path / "proj" / "app" / "0001_initial.py")
    sibling = str(tmp_path / "projection" / "0001_initial.py")  # shares the prefix "proj"
    assert source.relative(below) == "app/0001_initial.py"
    assert source.relative("app/../app/0002.py") == "app/0002.py"
    assert source.relative(sibling) == sibling
    assert source.relative(None) is None
