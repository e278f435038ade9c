"""``models_named``: the models a RunPython function names, and where it cannot tell."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, models
from django.db.migrations.state import ModelState

from django_rollout.graph.code import get_model_key, models_named

pytestmark = pytest.mark.usefixtures("django_settings")


def _model(app: str, name: str) -> ModelState:
    return ModelState(app, name, [("id", models.AutoField(primary_key=True))])


MODELS = {
    (app, name.lower()): _model(app, name)
    for app, name in [("shop", "Product"), ("shop", "Order"), ("crm", "Order"), ("crm", "Contact")]
}
Product: Any = None  # as a migration imports a model class (bad practice, still read)


def _codes(n: int) -> list[str]:
    return [f"C{i}" for i in range(n)]


def two_models(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    Contact = apps.get_model("crm.Contact")
    alias = schema_editor.connection.alias
    for order, code in zip(Order.objects.using(alias).all(), _codes(3), strict=False):
        Contact.objects.create(name=code, order=order)


def by_keywords(apps: Any, schema_editor: Any) -> None:
    apps.get_model(app_label="crm", model_name="contact").objects.update(active=True)


def by_class(apps: Any, schema_editor: Any) -> None:
    for product in Product.objects.all():  # a loop variable named like a model is no model
        product.save()


def computed(apps: Any, schema_editor: Any) -> None:
    for name in ("Order", "Contact"):
        apps.get_model("crm", name).objects.update(active=True)


def handed_on(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Order").objects.update(total=0)
    two_models(apps, schema_editor)


def every_model(apps: Any, schema_editor: Any) -> None:
    for model in apps.get_models():
        model.objects.update()


def editor_sql(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Order").objects.update(total=0)
    schema_editor.execute("UPDATE crm_contact SET active = true")


def cursor_sql(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Order").objects.update(total=0)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE crm_contact SET active = true")


def raw_sql(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    for order in Order.objects.raw("SELECT * FROM shop_order JOIN crm_contact USING (id)"):
        order.save()


def no_model(apps: Any, schema_editor: Any) -> None:
    print(_codes(2))


@pytest.mark.parametrize(
    ("code", "named"),
    [
        (two_models, {("shop", "order"), ("crm", "contact")}),
        (by_keywords, {("crm", "contact")}),
        (by_class, {("shop", "product")}),
    ],
)
def test_the_models_a_function_names(code: Callable[..., Any], named: set[Any]) -> None:
    assert models_named(code, "shop", MODELS) == named


def test_a_class_name_is_the_migrations_own_apps_model_first() -> None:
    def orders(apps: Any, schema_editor: Any) -> None:
        Order.objects.update(total=0)  # type: ignore[name-defined]  # noqa: F821

    assert models_named(orders, "crm", MODELS) == {("crm", "order")}
    assert models_named(orders, "shop", MODELS) == {("shop", "order")}


def test_a_name_the_function_binds_is_no_class() -> None:
    def other_apps_order(apps: Any, schema_editor: Any) -> None:
        Order = apps.get_model("shop", "Order")
        Order.objects.update(total=0)

    # crm has an Order too: the local name is shop's, crm_order is not named.
    assert models_named(other_apps_order, "crm", MODELS) == {("shop", "order")}


@pytest.mark.parametrize(
    "code",
    [
        computed,
        handed_on,
        every_model,
        editor_sql,
        cursor_sql,
        raw_sql,
        no_model,
        functools.partial(two_models),
        lambda apps, schema_editor: apps.get_model("shop", "Order").objects.update(total=0),
    ],
)
def test_code_that_may_reach_further_than_it_names_is_unknown(code: Callable[..., Any]) -> None:
    assert models_named(code, "shop", MODELS) is None


def test_get_model_key_reads_constants_only() -> None:
    import ast

    def key(source: str) -> Any:
        return get_model_key(ast.parse(source, mode="eval").body)

    assert key('apps.get_model("shop", "Order")') == ("shop", "order")
    assert key('apps.get_model("shop.Order")') == ("shop", "order")
    assert key('apps.get_model("shop", model_name="Order")') == ("shop", "order")
    assert key('apps.get_model("shop", name)') is None
    assert key('apps.get_model("shop")') is None
    assert key('get_model("shop", "Order")') is None
    assert key('apps.model("shop", "Order")') is None
