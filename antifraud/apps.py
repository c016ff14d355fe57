from django.apps import AppConfig


class AntifraudConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "antifraud"
    verbose_name = "Anti-fraud"
