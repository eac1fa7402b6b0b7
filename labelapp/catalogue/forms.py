"""Forms of the catalogue pages that hold more than a field or two: the taxonomy proposal's feed and options."""

from __future__ import annotations

from django import forms

from labelapp.catalogue import selectors
from labelapp.catalogue.services.taxonomy_proposals import (
    FEED_FORMATS,
    FeedPaths,
    proposal_options_for_catalogue,
    source_paths_read,
    taxonomy_proposal_upload_load,
)
from labelapp.catalogue.taxonomy_proposal import (
    FOLD_OTHER,
    FOLD_PARENT,
    ProposalOptions,
    exclusive_rule_parse,
    exclusive_rule_text,
)

PROPOSAL_DEFAULTS = {"depth": "3", "min_products": "5", "exclusive": "leaves", "fold": FOLD_OTHER,
                     "strip_leading": ""}
PROPOSAL_FIELDS = ("feed", *PROPOSAL_DEFAULTS)
MAX_LEVEL_CHOICE = 6


class TaxonomyProposalForm(forms.Form):
    """Which feed (an imported source, or an uploaded file's counted paths) and how to cut it into a tree."""

    feed = forms.ChoiceField(label="Feed", help_text="An imported source, or a feed uploaded below")
    depth = forms.TypedChoiceField(
        coerce=int, label="Depth",
        choices=[(0, "all levels"), *((n, f"{n} level{'s' if n > 1 else ''}") for n in range(1, MAX_LEVEL_CHOICE + 1))])
    min_products = forms.IntegerField(min_value=1, max_value=1_000_000, label="Min products per node")
    exclusive = forms.ChoiceField(
        label="Exclusive", choices=[("leaves", "the leaves"),
                                    *((exclusive_rule_text(n), f"level {n}") for n in range(1, MAX_LEVEL_CHOICE + 1))])
    fold = forms.ChoiceField(label="Products left on a parent",
                             choices=[(FOLD_OTHER, "an “Other” leaf"), (FOLD_PARENT, "stay on the parent")])
    strip_leading = forms.CharField(required=False, max_length=500, label="Drop leading names",
                                    widget=forms.TextInput(attrs={"placeholder": "e.g. Home, Shop"}),
                                    help_text="Breadcrumb names removed from the start of paths, comma-separated "
                                              "(e.g. Home, Shop)")

    def __init__(self, data=None, **kwargs):
        """Bound when `data` names a feed; options it leaves out take their defaults."""
        if data is not None and data.get("feed"):
            data = {**PROPOSAL_DEFAULTS, **{name: data[name] for name in PROPOSAL_FIELDS if name in data}}
            super().__init__(data, **kwargs)
        else:
            super().__init__(None, initial=PROPOSAL_DEFAULTS, **kwargs)
        self._uploads: dict[str, FeedPaths] = {}
        choices = [("", "— choose —")]
        feed = self.data.get("feed", "")
        if feed.startswith("upload:") and (paths := taxonomy_proposal_upload_load(token=feed[len("upload:"):])):
            self._uploads[feed] = paths
            choices.append((feed, f"uploaded: {paths.name}"))
        choices += [(f"source:{source}", f"source {source}") for source in selectors.product_sources()]
        self.fields["feed"].choices = choices

    def clean_feed(self) -> str:
        feed = self.cleaned_data["feed"]
        if not feed:
            raise forms.ValidationError("Choose a source or upload a feed.")
        return feed

    def feed_paths(self) -> FeedPaths:
        """The chosen feed's counted paths (call after is_valid())."""
        feed = self.cleaned_data["feed"]
        if feed in self._uploads:
            return self._uploads[feed]
        return source_paths_read(source=feed[len("source:"):])

    def proposal_options(self) -> ProposalOptions:
        """The options as the proposal core takes them (call after is_valid())."""
        data = self.cleaned_data
        names = tuple(name.strip() for name in data["strip_leading"].split(",") if name.strip())
        return proposal_options_for_catalogue(
            depth=data["depth"] or None, min_products=data["min_products"],
            exclusive_level=exclusive_rule_parse(data["exclusive"]), fold=data["fold"], strip_leading=names)

    def query_items(self) -> list[tuple[str, str]]:
        """The form's values as (name, value) pairs, for links and hidden fields that repeat the proposal."""
        values = self.data if self.is_bound else self.initial
        return [(name, str(values.get(name, ""))) for name in PROPOSAL_FIELDS]


class FeedUploadForm(forms.Form):
    """A feed file to propose a taxonomy from (within IMPORT_UPLOAD_MAX_BYTES); only its counted paths are kept."""

    file = forms.FileField(label="Feed file", help_text="CSV or JSON lines, as for a product import")
    mapping = forms.FileField(required=False, label="Mapping", help_text="TOML mapping (optional)")
    format = forms.ChoiceField(required=False, label="Format",
                               choices=[("", "from the extension"), *((f, f) for f in FEED_FORMATS)])
    path_field = forms.CharField(required=False, max_length=200, label="Category path field",
                                 help_text="Default: the mapping's, else category / category_path / product_type…")
