from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from django_rollout.rules.code.m402_live_models_in_data_migration import (
    LiveModelsInDataMigration,
)
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge


def _auth_installed() -> bool:
    from django.apps import apps

    return apps.is_installed("django.contrib.auth") and apps.is_installed(
        "django.contrib.contenttypes"
    )


@pytest.fixture
def auth_models(django_settings: None) -> None:
    """The fixtures import django.contrib.auth's live models: they need auth installed.

    Another suite may have configured settings first (settings are per process); then
    ``test_runs_in_its_own_process_when_auth_is_not_installed`` runs this file alone.
    """
    if not _auth_installed():
        pytest.skip("django.contrib.auth is not installed in this process's settings")


CODE_RULES = [r for r in all_rules() if r.family() == "code"]
M402 = [LiveModelsInDataMigration]
HEADER = "from django.db import migrations, models\n"


@pytest.fixture
def write_module(tmp_path: Path) -> Iterator[Any]:
    """Write a migration-like module to a real file and import it (source stays readable)."""
    names: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def write(code: str, name: str | None = None) -> ModuleType:
        name = name or f"rollout_m402_{uuid.uuid4().hex[:10]}"
        path = tmp_path / f"{name}.py"
        path.write_text(HEADER + textwrap.dedent(code), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        names.append(name)
        spec.loader.exec_module(module)
        return module

    yield write
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


def line_of(module: ModuleType, text: str) -> int:
    lines = Path(str(module.__file__)).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


FLAGGED = {
    "from-import": (
        """
        from django.contrib.auth.models import User

        def forwards(apps, schema_editor):
            User.objects.filter(email="").update(email="none@example.com")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "from django.contrib.auth.models import User",
        "User",
    ),
    "aliased-from-import": (
        """
        from django.contrib.auth.models import Group as G

        def forwards(apps, schema_editor):
            G.objects.get_or_create(name="staff")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "import Group as G",
        "Group",
    ),
    "models-module-import": (
        """
        from django.contrib.auth import models as auth_models

        def forwards(apps, schema_editor):
            for user in auth_models.User.objects.all():
                user.save()

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "from django.contrib.auth import models as auth_models",
        "User",
    ),
    "dotted-import": (
        """
        import django.contrib.contenttypes.models

        def forwards(apps, schema_editor):
            django.contrib.contenttypes.models.ContentType.objects.clear_cache()

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "import django.contrib.contenttypes.models",
        "ContentType",
    ),
    "import-inside-function": (
        """
        def forwards(apps, schema_editor):
            from django.contrib.auth.models import Permission
            Permission.objects.filter(codename="x").delete()

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "from django.contrib.auth.models import Permission",
        "Permission",
    ),
    "import-under-try": (
        """
        try:
            from django.contrib.auth.models import User
        except ImportError:
            User = None

        def forwards(apps, schema_editor):
            User.objects.create(username="bot")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "from django.contrib.auth.models import User",
        "User",
    ),
    "model-passed-along": (
        """
        from django.contrib.auth.models import User

        def fill(model):
            model.objects.update(is_staff=False)

        def forwards(apps, schema_editor):
            fill(User)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "from django.contrib.auth.models import User",
        "User",
    ),
    "only-in-reverse": (
        """
        from django.contrib.auth.models import Group

        def backwards(apps, schema_editor):
            Group.objects.filter(name="staff").delete()

        operations = [migrations.RunPython(migrations.RunPython.noop, backwards)]
        """,
        "from django.contrib.auth.models import Group",
        "Group",
    ),
    # A project's model loader at module level (django-oscar's `get_model`, address.0005).
    "module-level-get-model": (
        """
        from django.apps import apps as registry

        Group = registry.get_model("auth", "Group")

        def forwards(apps, schema_editor):
            Group.objects.get_or_create(name="staff")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        'Group = registry.get_model("auth", "Group")',
        "Group",
    ),
    "module-level-get-user-model": (
        """
        from django.contrib.auth import get_user_model

        if True:
            User = get_user_model()

        def forwards(apps, schema_editor):
            User.objects.filter(email="").update(is_active=False)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
        "User = get_user_model()",
        "User",
    ),
}


@pytest.mark.parametrize(("code", "import_line", "model"), FLAGGED.values(), ids=FLAGGED.keys())
@pytest.mark.usefixtures("auth_models")
def test_flags_live_model_used_in_runpython(
    write_module: Any, code: str, import_line: str, model: str
) -> None:
    module = write_module(code)
    findings = judge(module.operations, rules=CODE_RULES)
    assert {f.rule for f in findings} == {"M402"}
    [finding] = findings
    assert finding.location.line == line_of(module, import_line)
    assert finding.location.path is not None
    assert finding.location.path.endswith(Path(str(module.__file__)).name)
    assert f"`{model}`" in finding.message
    assert 'apps.get_model("' in finding.help and f'"{model}")' in finding.help
    assigned = " = " in import_line
    assert ("bound at module level by" if assigned else "imported from") in finding.message


@pytest.mark.usefixtures("auth_models")
def test_flags_function_defined_in_another_module(write_module: Any) -> None:
    helpers = write_module(
        """
        from django.contrib.auth.models import User

        def deactivate(apps, schema_editor):
            User.objects.update(is_active=False)
        """
    )
    migration = write_module(
        f"""
        from {helpers.__name__} import deactivate

        operations = [migrations.RunPython(deactivate, migrations.RunPython.noop)]
        """
    )
    [finding] = judge(migration.operations, rules=M402)
    assert finding.location.path is not None
    assert finding.location.path.endswith(Path(str(helpers.__file__)).name)
    assert finding.location.line == line_of(helpers, "import User")


@pytest.mark.usefixtures("auth_models")
def test_reports_each_import_once(write_module: Any) -> None:
    module = write_module(
        """
        from django.contrib.auth.models import User, Group

        def forwards(apps, schema_editor):
            User.objects.update(is_staff=False)
            User.objects.update(is_active=True)
            Group.objects.all().delete()

        def backwards(apps, schema_editor):
            User.objects.update(is_staff=True)

        operations = [migrations.RunPython(forwards, backwards)]
        """
    )
    findings = judge(module.operations, rules=M402)
    assert len(findings) == 1  # one import line: one finding
    assert findings[0].operation_index == 0


SILENT = {
    "historical-model": """
        def forwards(apps, schema_editor):
            User = apps.get_model("auth", "User")
            User.objects.filter(email="").update(email="none@example.com")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "django-db-models": """
        from django.db.models import F, Q

        def forwards(apps, schema_editor):
            User = apps.get_model("auth", "User")
            User.objects.filter(Q(email="")).update(username=F("email"))

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "helper-function-from-models-module": """
        from django.contrib.auth.models import update_last_login

        def forwards(apps, schema_editor):
            assert callable(update_last_login)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "constant-through-model": """
        from django.contrib.auth.models import AbstractUser, User

        def forwards(apps, schema_editor):
            Model = apps.get_model("auth", "User")
            Model.objects.filter(username="").update(username=User.USERNAME_FIELD)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "abstract-model": """
        from django.contrib.auth.models import AbstractUser

        def forwards(apps, schema_editor):
            assert AbstractUser._meta.abstract

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "model-imported-but-used-outside-runpython": """
        from django.contrib.auth.models import User

        LABEL = User._meta.label

        def forwards(apps, schema_editor):
            apps.get_model(LABEL).objects.update(is_staff=False)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "model-name-shadowed-by-get-model": """
        from django.contrib.auth.models import Group

        def forwards(apps, schema_editor):
            Model = apps.get_model("auth", "Group")
            Model.objects.create(name="staff")

        operations = [
            migrations.RunPython(forwards, migrations.RunPython.noop),
            migrations.AlterField("group", "name", models.CharField(max_length=200)),
        ]
        """,
    "module-import-shadowed-by-local": """
        from django.contrib.auth.models import User

        def forwards(apps, schema_editor):
            User = apps.get_model("auth", "User")
            User.objects.update(is_staff=False)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "module-level-model-used-outside-runpython": """
        from django.contrib.auth import get_user_model

        User = get_user_model()
        LABEL = User._meta.label

        def forwards(apps, schema_editor):
            apps.get_model(LABEL).objects.update(is_staff=False)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "module-level-name-shadowed-by-local": """
        from django.contrib.auth import get_user_model

        User = get_user_model()

        def forwards(apps, schema_editor):
            User = apps.get_model("auth", "User")
            User.objects.update(is_staff=False)

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "meta-of-a-live-model": """
        from django.contrib.auth import get_user_model

        User = get_user_model()

        def forwards(apps, schema_editor):
            schema_editor.execute(f"ANALYZE {User._meta.db_table}")

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "module-level-constants": """
        NAME = "staff"
        LIMIT: int = 10

        def forwards(apps, schema_editor):
            apps.get_model("auth", "Group").objects.filter(name=NAME)[:LIMIT]

        operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
        """,
    "runsql": """
        from django.contrib.auth.models import User

        operations = [migrations.RunSQL("UPDATE auth_user SET is_staff = false", "")]
        """,
}


@pytest.mark.parametrize("code", SILENT.values(), ids=SILENT.keys())
@pytest.mark.usefixtures("auth_models")
def test_ignores_imports_that_query_no_live_model(write_module: Any, code: str) -> None:
    module = write_module(code)
    before = []
    if any(getattr(op, "model_name", None) == "group" for op in module.operations):
        from django.db import migrations, models

        before = [
            migrations.CreateModel(
                "Group",
                [
                    ("id", models.AutoField(primary_key=True)),
                    ("name", models.CharField(max_length=150)),
                ],
            )
        ]
    assert judge(module.operations, before, app_label="auth", rules=M402) == []


@pytest.mark.usefixtures("auth_models")
def test_ignores_state_only_runpython(write_module: Any) -> None:
    module = write_module(
        """
        from django.contrib.auth.models import User

        def forwards(apps, schema_editor):
            User.objects.update(is_staff=False)

        operations = [
            migrations.SeparateDatabaseAndState(
                state_operations=[migrations.RunPython(forwards, migrations.RunPython.noop)]
            )
        ]
        """
    )
    assert judge(module.operations, rules=M402) == []


@pytest.mark.usefixtures("auth_models")
def test_ignores_function_without_readable_source() -> None:
    from django.db import migrations

    code = compile("def forwards(apps, schema_editor):\n    pass\n", "<generated>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    op = migrations.RunPython(namespace["forwards"], migrations.RunPython.noop)
    assert judge([op], rules=M402) == []


@pytest.mark.usefixtures("django_settings")
def test_runs_in_its_own_process_when_auth_is_not_installed() -> None:
    if _auth_installed():
        return  # the tests above ran here
    env = {**os.environ}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
