"""Write a synthetic but realistic Django project with a long migration history.

    python benchmarks/synthetic.py [DIR] [--apps 40] [--per-app 52] [--seed 2024]

Default DIR: benchmarks/.work/synthetic (git-ignored). The project is deterministic for a
given seed. Each app starts with a ``0001_initial`` of a few models, then grows one migration
at a time with the mix a real project accumulates: new models, nullable and NOT NULL (with a
default) columns, altered and renamed columns, indexes, unique constraints, foreign keys to
earlier apps (and to ``AUTH_USER_MODEL``) with the dependencies ``makemigrations`` writes, removed
columns, data migrations (``RunPython`` with a reverse, ``RunSQL``), and now and then two
parallel migrations joined by a merge migration. ``models.py`` matches the last state.

The settings use PostgreSQL at 127.0.0.1:5432 (user postgres, database from
``ROLLOUT_BENCH_DB``, default ``test``): ``showmigrations`` needs a connection, ``check`` does
not. ``settings_linter`` adds ``django_migration_linter`` for ``lintmigrations``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / ".work" / "synthetic"
PROJECT = "synth_project"

NOUNS = [
    "Customer",
    "Order",
    "Invoice",
    "Product",
    "Shipment",
    "Payment",
    "Refund",
    "Coupon",
    "Address",
    "Warehouse",
    "Supplier",
    "Category",
    "Review",
    "Ticket",
    "Comment",
    "Report",
    "Budget",
    "Contract",
    "Employee",
    "Team",
    "Project",
    "Task",
    "Event",
    "Booking",
    "Vehicle",
    "Device",
    "Account",
    "Ledger",
    "Subscription",
    "Plan",
    "Campaign",
    "Lead",
    "Quote",
    "Asset",
]
WORDS = [
    "status",
    "title",
    "code",
    "amount",
    "note",
    "label",
    "priority",
    "score",
    "rank",
    "region",
    "currency",
    "kind",
    "source",
    "channel",
    "reference",
    "comment",
    "level",
    "weight",
    "color",
    "origin",
    "version",
    "quota",
    "flag",
    "slug",
    "summary",
    "phase",
    "tier",
    "margin",
    "rate",
]


@dataclass
class FieldSpec:
    kind: str  # char, int, bigint, bool, text, decimal, datetime, date, fk
    null: bool = False
    default: str | None = None  # python source
    max_length: int = 100
    db_index: bool = False
    target: str | None = None  # "app.Model" for fk
    protected: bool = False  # indexed or constrained: not renamed or removed
    related_name: str | None = None

    def source(self) -> str:
        opts: list[str] = []
        if self.kind == "char":
            opts.append(f"max_length={self.max_length}")
        if self.kind == "decimal":
            opts += ["max_digits=12", "decimal_places=2"]
        if self.default is not None:
            opts.append(f"default={self.default}")
        if self.null:
            opts.append("null=True")
            if self.kind in ("char", "text"):
                opts.append("blank=True")
        if self.db_index:
            opts.append("db_index=True")
        cls = {
            "char": "CharField",
            "int": "IntegerField",
            "bigint": "BigIntegerField",
            "bool": "BooleanField",
            "text": "TextField",
            "decimal": "DecimalField",
            "datetime": "DateTimeField",
            "date": "DateField",
            "fk": "ForeignKey",
        }[self.kind]
        if self.kind == "fk":
            on_delete = "models.SET_NULL" if self.null else "models.CASCADE"
            opts = [self.target or "", f"on_delete={on_delete}", *opts]
            if self.related_name:
                opts.append(f"related_name={self.related_name!r}")
            return f"models.ForeignKey({', '.join(opts)})"
        return f"models.{cls}({', '.join(opts)})"


@dataclass
class ModelSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    indexes: list[tuple[str, list[str]]] = field(default_factory=list)
    constraints: list[tuple[str, list[str]]] = field(default_factory=list)
    created_in: str = ""


@dataclass
class AppSpec:
    label: str
    models: dict[str, ModelSpec] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)


FK_USER = "settings.AUTH_USER_MODEL"


class Generator:
    def __init__(self, apps: int, per_app: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n_apps = apps
        self.per_app = per_app
        self.apps: list[AppSpec] = []
        self.counter = 0

    # ----------------------------------------------------------------- helpers
    def uniq(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def new_field_name(self, model: ModelSpec) -> str:
        for _ in range(20):
            name = self.rng.choice(WORDS)
            if name not in model.fields:
                return name
        return self.uniq(self.rng.choice(WORDS))

    def plain_field(self, *, nullable: bool | None = None) -> FieldSpec:
        kind = self.rng.choice(
            ["char", "char", "int", "bool", "text", "decimal", "datetime", "date", "bigint"]
        )
        null = self.rng.random() < 0.5 if nullable is None else nullable
        spec = FieldSpec(kind=kind, null=null, max_length=self.rng.choice([32, 64, 100, 255]))
        if not null or kind == "bool":
            spec.null = False if kind == "bool" else spec.null
            spec.default = {
                "char": '""',
                "text": '""',
                "int": "0",
                "bigint": "0",
                "bool": "False",
                "decimal": '"0.00"',
                "datetime": "django.utils.timezone.now",
                "date": "datetime.date(2020, 1, 1)",
            }[kind]
        return spec

    def fk_target(self, app_index: int) -> tuple[str, tuple[str, str] | str] | None:
        """A model of an earlier app (or the user model), with the dependency to add."""
        if app_index == 0 or self.rng.random() < 0.2:
            return FK_USER, "swappable"
        other = self.apps[self.rng.randrange(app_index)]
        model = self.rng.choice(list(other.models.values()))
        return f'"{other.label}.{model.name}"', (other.label, model.created_in)

    # --------------------------------------------------------------- operations
    def op_create_model(self, app: AppSpec, app_index: int, mig: str, deps: set) -> str:
        name = self.rng.choice(NOUNS)
        while name in app.models:
            name = f"{self.rng.choice(NOUNS)}{self.rng.choice(NOUNS)}"
        model = ModelSpec(name=name, created_in=mig)
        for _ in range(self.rng.randint(3, 7)):
            model.fields[self.new_field_name(model)] = self.plain_field()
        if app.models and self.rng.random() < 0.6:  # FK to a sibling model
            sibling = self.rng.choice([m for m in app.models.values()])
            model.fields[sibling.name.lower()] = FieldSpec(
                kind="fk",
                target=f'"{app.label}.{sibling.name}"',
                related_name=f"{name.lower()}_set_{sibling.name.lower()}",
            )
        if self.rng.random() < 0.4:
            target, dep = self.fk_target(app_index)
            fname = self.uniq("owner") if "owner" in model.fields else "owner"
            model.fields[fname] = FieldSpec(
                kind="fk",
                null=True,
                target=target,
                related_name=f"{app.label}_{name.lower()}_{fname}",
            )
            deps.add(dep)
        app.models[name] = model
        lines = [
            f"        migrations.CreateModel(\n            name={name!r},\n            fields=["
        ]
        lines.append(
            '                ("id", models.BigAutoField(auto_created=True, '
            'primary_key=True, serialize=False, verbose_name="ID")),'
        )
        for fname, spec in model.fields.items():
            lines.append(f"                ({fname!r}, {spec.source()}),")
        lines.append("            ],\n        ),")
        return "\n".join(lines)

    def pick_model(self, app: AppSpec) -> ModelSpec:
        return self.rng.choice(list(app.models.values()))

    def op_add_field(self, app: AppSpec, nullable: bool) -> str:
        model = self.pick_model(app)
        name = self.new_field_name(model)
        spec = self.plain_field(nullable=nullable)
        model.fields[name] = spec
        if not nullable and self.rng.random() < 0.3 and spec.kind in ("char", "int"):
            # makemigrations' one-off default: the column has no default afterwards
            one_off = '"n/a"' if spec.kind == "char" else "1"
            written = FieldSpec(**{**spec.__dict__, "default": one_off}).source()
            spec.default = None
            return (
                f"        migrations.AddField(\n            model_name={model.name.lower()!r},\n"
                f"            name={name!r},\n            field={written},\n"
                f"            preserve_default=False,\n        ),"
            )
        return (
            f"        migrations.AddField(\n            model_name={model.name.lower()!r},\n"
            f"            name={name!r},\n            field={spec.source()},\n        ),"
        )

    def op_add_fk(self, app: AppSpec, app_index: int, deps: set) -> str:
        model = self.pick_model(app)
        target, dep = self.fk_target(app_index)
        deps.add(dep)
        name = self.new_field_name(model) + "_ref"
        while name in model.fields:
            name = self.uniq("ref")
        spec = FieldSpec(
            kind="fk",
            null=True,
            target=target,
            related_name=f"{app.label}_{model.name.lower()}_{name}",
        )
        model.fields[name] = spec
        return (
            f"        migrations.AddField(\n            model_name={model.name.lower()!r},\n"
            f"            name={name!r},\n            field={spec.source()},\n        ),"
        )

    def mutable_fields(self, model: ModelSpec, kinds: tuple[str, ...] | None = None) -> list[str]:
        return [
            n
            for n, f in model.fields.items()
            if not f.protected and f.kind != "fk" and (kinds is None or f.kind in kinds)
        ]

    def op_alter_field(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model)
        if not names:
            return None
        name = self.rng.choice(names)
        spec = model.fields[name]
        choice = self.rng.random()
        if spec.kind == "char" and choice < 0.5:
            spec.max_length = spec.max_length * 2
        elif spec.kind == "int" and choice < 0.5:
            spec.kind = "bigint"
        elif not spec.null and spec.kind != "bool":
            spec.null = True
        elif spec.null and spec.kind in ("char", "int", "text"):
            spec.null = False
            spec.default = '""' if spec.kind != "int" else "0"
        else:
            spec.db_index = not spec.db_index
        return (
            f"        migrations.AlterField(\n            model_name={model.name.lower()!r},\n"
            f"            name={name!r},\n            field={spec.source()},\n        ),"
        )

    def op_rename_field(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model)
        if not names:
            return None
        old = self.rng.choice(names)
        new = self.new_field_name(model)
        model.fields = {(new if k == old else k): v for k, v in model.fields.items()}
        return (
            f"        migrations.RenameField(\n            model_name={model.name.lower()!r},\n"
            f"            old_name={old!r},\n            new_name={new!r},\n        ),"
        )

    def op_remove_field(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model)
        if len(names) < 3:
            return None
        name = self.rng.choice(names)
        del model.fields[name]
        return (
            f"        migrations.RemoveField(\n            model_name={model.name.lower()!r},\n"
            f"            name={name!r},\n        ),"
        )

    def op_add_index(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model, ("char", "int", "bigint", "date", "datetime"))
        if not names:
            return None
        cols = self.rng.sample(names, k=min(len(names), self.rng.choice([1, 1, 2])))
        for c in cols:
            model.fields[c].protected = True
        idx = f"{app.label}_{self.uniq('ix')}"[:30]
        model.indexes.append((idx, cols))
        return (
            f"        migrations.AddIndex(\n            model_name={model.name.lower()!r},\n"
            f"            index=models.Index(fields={cols!r}, name={idx!r}),\n        ),"
        )

    def op_add_constraint(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model, ("char", "int", "bigint"))
        if len(names) < 2:
            return None
        cols = self.rng.sample(names, k=2)
        for c in cols:
            model.fields[c].protected = True
        name = f"{app.label}_{self.uniq('uq')}"[:30]
        model.constraints.append((name, cols))
        return (
            f"        migrations.AddConstraint(\n            model_name={model.name.lower()!r},\n"
            f"            constraint=models.UniqueConstraint(fields={cols!r}, name={name!r}),\n"
            f"        ),"
        )

    def op_run_python(self, app: AppSpec, functions: list[str]) -> str:
        model = self.pick_model(app)
        n = len(functions) // 2
        functions.append(
            f"def forwards_{n}(apps, schema_editor):\n"
            f"    Model = apps.get_model({app.label!r}, {model.name!r})\n"
            f"    for obj in Model.objects.all().iterator():\n"
            f"        obj.save()\n"
        )
        functions.append(f"def backwards_{n}(apps, schema_editor):\n    pass\n")
        return f"        migrations.RunPython(forwards_{n}, backwards_{n}),"

    def op_run_sql(self, app: AppSpec) -> str | None:
        model = self.pick_model(app)
        names = self.mutable_fields(model, ("int", "bigint"))
        if not names:
            return None
        col = self.rng.choice(names)
        table = f"{app.label}_{model.name.lower()}"
        return (
            f"        migrations.RunSQL(\n"
            f'            sql=\'UPDATE "{table}" SET "{col}" = 0 WHERE "{col}" IS NULL\',\n'
            f"            reverse_sql=migrations.RunSQL.noop,\n        ),"
        )

    def random_op(self, app: AppSpec, app_index: int, deps: set, functions: list[str]) -> str:
        while True:
            r = self.rng.random()
            if r < 0.08:
                op = self.op_create_model(app, app_index, self.current, deps)
            elif r < 0.28:
                op = self.op_add_field(app, nullable=True)
            elif r < 0.42:
                op = self.op_add_field(app, nullable=False)
            elif r < 0.56:
                op = self.op_alter_field(app)
            elif r < 0.61:
                op = self.op_rename_field(app)
            elif r < 0.68:
                op = self.op_add_index(app)
            elif r < 0.71:
                op = self.op_add_constraint(app)
            elif r < 0.79:
                op = self.op_add_fk(app, app_index, deps)
            elif r < 0.86:
                op = self.op_remove_field(app)
            elif r < 0.95:
                op = self.op_run_python(app, functions)
            else:
                op = self.op_run_sql(app)
            if op:
                return op

    # ---------------------------------------------------------------- writing
    def generate(self, out: Path) -> int:
        total = 0
        for i in range(self.n_apps):
            app = AppSpec(label=f"app{i:02d}")
            self.apps.append(app)
            mig_dir = out / app.label / "migrations"
            mig_dir.mkdir(parents=True)
            (out / app.label / "__init__.py").write_text("")
            (mig_dir / "__init__.py").write_text("")
            number = 1
            parents: list[str] = []
            while number <= self.per_app:
                branch = number > 3 and number + 2 <= self.per_app and self.rng.random() < 0.06
                if branch:
                    # two parallel migrations from the same parent, then a merge
                    a = self.write_migration(out, app, i, number, parents, branch=True)
                    b = self.write_migration(out, app, i, number + 1, parents, branch=True)
                    m = f"{number + 2:04d}_merge_{a[:4]}_{b[:4]}"
                    self.write(out, app, m, [(app.label, a), (app.label, b)], [], [])
                    parents = [m]
                    number += 3
                    total += 3
                    continue
                name = self.write_migration(out, app, i, number, parents)
                parents = [name]
                number += 1
                total += 1
            self.write_models(out, app)
        return total

    def write_migration(
        self,
        out: Path,
        app: AppSpec,
        app_index: int,
        number: int,
        parents: list[str],
        branch: bool = False,
    ) -> str:
        deps: set = set()
        functions: list[str] = []
        if number == 1:
            name = "0001_initial"
            self.current = name
            ops = [
                self.op_create_model(app, app_index, name, deps)
                for _ in range(self.rng.randint(2, 4))
            ]
        else:
            slug_op = self.rng.choice(WORDS)
            name = f"{number:04d}_{slug_op}"
            self.current = name
            if branch:
                ops = [self.op_add_field(app, nullable=True)]
            else:
                ops = [
                    self.random_op(app, app_index, deps, functions)
                    for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3]))
                ]
        dependencies: list = [(app.label, p) for p in parents]
        dependencies += sorted(d for d in deps if d != "swappable" and d[0] != app.label)
        swappable = "swappable" in deps
        self.write(
            out, app, name, dependencies, ops, functions, swappable=swappable, initial=number == 1
        )
        return name

    def write(
        self,
        out: Path,
        app: AppSpec,
        name: str,
        dependencies: list,
        ops: list[str],
        functions: list[str],
        swappable: bool = False,
        initial: bool = False,
    ) -> None:
        app.migrations.append(name)
        dep_lines = []
        if swappable:
            dep_lines.append("        migrations.swappable_dependency(settings.AUTH_USER_MODEL),")
        dep_lines += [f"        ({a!r}, {m!r})," for a, m in dependencies]
        body = [
            "# Generated by benchmarks/synthetic.py",
            "",
            "import datetime  # noqa: F401",
            "",
            "import django.utils.timezone  # noqa: F401",
            "from django.conf import settings  # noqa: F401",
            "from django.db import migrations, models",
            "",
            "",
        ]
        for fn in functions:
            body += [fn, ""]
        body += [
            "class Migration(migrations.Migration):",
            *(["    initial = True", ""] if initial else []),
            "    dependencies = [",
            *dep_lines,
            "    ]",
            "",
            "    operations = [",
            *ops,
            "    ]",
            "",
        ]
        (out / app.label / "migrations" / f"{name}.py").write_text("\n".join(body))

    def write_models(self, out: Path, app: AppSpec) -> None:
        lines = [
            "import datetime  # noqa: F401",
            "",
            "import django.utils.timezone  # noqa: F401",
            "from django.conf import settings  # noqa: F401",
            "from django.db import models",
            "",
        ]
        for model in app.models.values():
            lines += ["", f"class {model.name}(models.Model):"]
            for fname, spec in model.fields.items():
                lines.append(f"    {fname} = {spec.source()}")
            if model.indexes or model.constraints:
                lines.append("")
                lines.append("    class Meta:")
                if model.indexes:
                    lines.append("        indexes = [")
                    for idx, cols in model.indexes:
                        lines.append(f"            models.Index(fields={cols!r}, name={idx!r}),")
                    lines.append("        ]")
                if model.constraints:
                    lines.append("        constraints = [")
                    for cname, cols in model.constraints:
                        lines.append(
                            f"            models.UniqueConstraint(fields={cols!r}, name={cname!r}),"
                        )
                    lines.append("        ]")
            lines.append("")
        (out / app.label / "models.py").write_text("\n".join(lines))


SETTINGS = '''"""Settings of the synthetic benchmark project (by benchmarks/synthetic.py)."""

import os

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "{project}.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
{apps}
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        }},
    }},
]

STATIC_URL = "static/"

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("ROLLOUT_BENCH_HOST", "127.0.0.1"),
        "PORT": os.environ.get("ROLLOUT_BENCH_PORT", "5432"),
        "NAME": os.environ.get("ROLLOUT_BENCH_DB", "test"),
        "USER": os.environ.get("ROLLOUT_BENCH_USER", "postgres"),
        "PASSWORD": os.environ.get("ROLLOUT_BENCH_PASSWORD", ""),
    }}
}}
'''

MANAGE = """#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{project}.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_project(out: Path, apps: int = 40, per_app: int = 52, seed: int = 2024) -> int:
    """(Re)write the project into ``out``; return the number of generated migrations."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    gen = Generator(apps, per_app, seed)
    total = gen.generate(out)
    pkg = out / PROJECT
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    labels = "\n".join(f'    "{a.label}",' for a in gen.apps)
    (pkg / "settings.py").write_text(SETTINGS.format(project=PROJECT, apps=labels))
    (pkg / "settings_linter.py").write_text(
        "from .settings import *  # noqa: F403\n\n"
        'INSTALLED_APPS = [*INSTALLED_APPS, "django_migration_linter"]  # noqa: F405\n'
    )
    (pkg / "urls.py").write_text(
        "from django.contrib import admin\nfrom django.urls import path\n\n"
        'urlpatterns = [path("admin/", admin.site.urls)]\n'
    )
    (out / "manage.py").write_text(MANAGE.format(project=PROJECT))
    (out / "GENERATED").write_text(f"apps={apps} per_app={per_app} seed={seed} total={total}\n")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--per-app", type=int, default=52)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    total = write_project(args.dir, args.apps, args.per_app, args.seed)
    print(f"wrote {total} migrations in {args.apps} apps to {args.dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
