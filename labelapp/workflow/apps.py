from django.apps import AppConfig


class WorkflowConfig(AppConfig):
    """The top layer: labelling rounds, the queue, and the pages that span the catalogue and the models."""

    name = "labelapp.workflow"
    label = "workflow"
    verbose_name = "Labelling workflow"
