from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    """The bottom layer: products, categories, human labels, legacy rules and imports.

    Its app label stays "labelapp", so its tables and migration history are those of the original app.
    """

    name = "labelapp.catalogue"
    label = "labelapp"
    verbose_name = "Catalogue"
