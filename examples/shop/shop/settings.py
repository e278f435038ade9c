"""Settings of the example shop: the demo project and test fixture of django-rollout.

Run the demo from this directory::

    django-rollout --settings shop.settings check

The migration history of the apps below is deliberately imperfect: it records what a team
shipped over a year of releases, mistakes included. ``expected.json`` lists, migration by
migration, what django-rollout must report.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-rollout-example-shop-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_rollout",
    "catalog",
    "customers",
    "orders",
    "billing",
    "settings_store",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("ROLLOUT_EXAMPLE_DB", "rollout_example"),
        "HOST": os.environ.get("ROLLOUT_EXAMPLE_HOST", "127.0.0.1"),
        "PORT": 5432,
        "USER": "postgres",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-gb"
STATIC_URL = "static/"

ROLLOUT = {
    # The history of Django's contrib apps predates this shop: it is the baseline and is not
    # judged again. Our own first release (every app's 0001_initial) went to an empty
    # database with no previous release serving, so it is baseline too.
    "start_after": {
        "admin": "0003_logentry_add_action_flag_choices",
        "auth": "0012_alter_user_first_name_max_length",
        "contenttypes": "0002_remove_content_type_name",
        "sessions": "0001_initial",
        "catalog": "0001_initial",
        "customers": "0001_initial",
        "orders": "0001_initial",
        "billing": "0001_initial",
        "settings_store": "0001_initial",
    },
}
