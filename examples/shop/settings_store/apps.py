from django.apps import AppConfig


class SettingsStoreConfig(AppConfig):
    name = "settings_store"
