"""Forms of the onboarding page: the feed upload, the mapping (a column per product field), the first model and
the first round."""

from __future__ import annotations

from django import forms

from classifier.core.names import ARCHITECTURE_NAMES
from labelapp.catalogue.services.imports.mapping import PRODUCT_FIELDS
from labelapp.workflow.services.onboarding import CATEGORY_LEVELS, FIRST_MODEL, FIRST_ROUND, MappingChoice

FIELD_LABELS = {"external_id": "External id", "title": "Title", "description": "Description", "brand": "Brand",
                "gender": "Gender", "size": "Size", "price": "Price", "currency": "Currency", "image": "Image"}


class OnboardingUploadForm(forms.Form):
    file = forms.FileField(label="Feed file", help_text="CSV (any delimiter) or JSON lines, as for a product import")


class MappingForm(forms.Form):
    """A select per product field over the feed's columns; unbound, it holds the importer's defaults."""

    upload = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput)
    source = forms.CharField(max_length=100, label="Source",
                             help_text="The affiliate network's name: products are upserted by (source, id)")

    def __init__(self, data=None, *, columns: list[str], initial_choice: MappingChoice, upload: str, **kwargs):
        initial = {"upload": upload, "source": initial_choice.source, "category_path": initial_choice.category_path}
        initial |= {f"field_{name}": column for name, column in initial_choice.fields.items()}
        initial |= {f"category_level_{n + 1}": column for n, column in enumerate(initial_choice.category_levels)}
        super().__init__(data, initial=initial, **kwargs)
        choices = [("", "— none —"), *((column, column) for column in columns)]
        for name in PRODUCT_FIELDS:
            self.fields[f"field_{name}"] = forms.ChoiceField(choices=choices, required=False,
                                                             label=FIELD_LABELS.get(name, name))
        self.fields["category_path"] = forms.ChoiceField(choices=choices, required=False, label="Category path",
                                                         help_text="A column holding the whole path")
        for level in range(1, CATEGORY_LEVELS + 1):
            self.fields[f"category_level_{level}"] = forms.ChoiceField(
                choices=choices, required=False, label=f"Category level {level}",
                help_text="Or one column per level (these win over the path column)" if level == 1 else "")

    def product_field_names(self) -> list[str]:
        return [f"field_{name}" for name in PRODUCT_FIELDS]

    def category_field_names(self) -> list[str]:
        return ["category_path", *(f"category_level_{level}" for level in range(1, CATEGORY_LEVELS + 1))]

    def choice(self) -> MappingChoice:
        """The mapping chosen (call after is_valid())."""
        data = self.cleaned_data
        return MappingChoice(fields={name: data[f"field_{name}"] for name in PRODUCT_FIELDS},
                             category_path=data["category_path"],
                             category_levels=tuple(data[f"category_level_{level}"]
                                                   for level in range(1, CATEGORY_LEVELS + 1)),
                             source=data["source"].strip())


class FirstModelForm(forms.Form):
    architecture = forms.ChoiceField(choices=[(name, name) for name in ARCHITECTURE_NAMES],
                                     initial=FIRST_MODEL["architecture"])
    epochs = forms.IntegerField(min_value=1, max_value=200, initial=FIRST_MODEL["epochs"])
    weak_targets = forms.BooleanField(required=False, initial=True, label="Learn from the rules' and the feed's "
                                                                         "categories (weak targets)")


class FirstRoundForm(forms.Form):
    batch_size = forms.IntegerField(min_value=1, max_value=10_000, initial=FIRST_ROUND["batch_size"],
                                    label="Products in the round")
