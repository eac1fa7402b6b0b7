"""Propose a category tree from a feed's own category paths, for a catalogue that has no taxonomy yet.

Pure (no Django): counted paths in, a proposed tree out, with every merge, fold and drop it made and why.
The rules, in the order they apply to each product's path:

1. The path is split with `normalise.category_path_split` (any delimiter: '>', '>>', '/', '|', a JSON list…).
   Names listed in `strip_leading` are removed from its start ('Home > Shop > Tools' → 'Tools').
2. Sibling names that are the same up to case, spaces, hyphens, underscores, dots and apostrophes are one node
   ('T-Shirts', 'T Shirts', 'TShirts', 't-shirts'; 'Men's' and 'Mens'); the spelling most products use names it.
   Nothing else is merged: not plurals, not '&' and 'and', not synonyms.
3. The path is cut to `depth` levels, and before a name longer than a category name may be. A name the
   taxonomy CSV would split again (a lone 'Tops/T-shirts' at the top) has its delimiter written ' - '.
4. A node with fewer than `min_products` products (its own and its descendants') is folded into its parent:
   its products count for the parent. A node's count includes its subtree, so the kept tree is exactly the
   nodes with at least `min_products` products. A top-level node below the minimum has no parent: it is
   dropped with its products (reported as not covered).
5. Products left on a node that keeps children (its folded children's, and paths that end there) go to a
   catch-all leaf `other_name` ('Other') under it, when there are at least `min_products` of them and
   `fold` is 'other' (the default), so that exclusive leaves cover them; otherwise they stay on the node.
6. Exclusive: the leaves of the proposed tree, or with `exclusive_level` N the nodes at depth N and the
   leaves above it (a branch that ends early still gets its exclusive class).

The result is deterministic: the same counted paths give the same tree in any input order (siblings sorted
by name, catch-alls last; ties between spellings go to the alphabetically first).
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from labelapp.catalogue import normalise

FOLD_OTHER = "other"
FOLD_PARENT = "parent"
FOLD_CHOICES = (FOLD_OTHER, FOLD_PARENT)
EXCLUSIVE_LEAVES = "leaves"
MERGE_REASON = "same name up to case, spaces and punctuation"
CSV_HEADER = ("path", "exclusive")

PathCounts = Mapping[tuple[str, ...], int]

# What name_key ignores: the spellings of one name that feeds mix ('T-Shirts', 'T Shirts', 'Men's', 'Mens').
_KEY_IGNORED_RE = re.compile(r"[\s\-‐‑–—_.'’`]+")
# A delimiter inside a name that the taxonomy CSV would split on (see rule 3).
_NAME_DELIMITER_RE = re.compile(r"\s*[>›»→＞|¦/\\]+\s*")


def name_key(name: str) -> str:
    """Return the key under which sibling names are merged: casefolded, without spaces and light punctuation."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return _KEY_IGNORED_RE.sub("", folded) or " ".join(folded.split())


def exclusive_rule_parse(text: str) -> int | None:
    """Read an exclusive rule: 'leaves' is None, 'level:N' is N (N >= 1); raise ValueError otherwise."""
    text = text.strip().lower()
    if text == EXCLUSIVE_LEAVES:
        return None
    prefix, _, number = text.partition(":")
    if prefix == "level" and number.isdigit() and int(number) >= 1:
        return int(number)
    raise ValueError(f"exclusive must be 'leaves' or 'level:N' (N >= 1), got {text!r}")


def exclusive_rule_text(level: int | None) -> str:
    """The exclusive rule as the command and the page write it: 'leaves' or 'level:N'."""
    return EXCLUSIVE_LEAVES if level is None else f"level:{level}"


@dataclass(frozen=True)
class ProposalOptions:
    """How a proposal is cut, folded and flagged; `depth` None keeps every level."""

    depth: int | None = None
    min_products: int = 1
    exclusive_level: int | None = None  # None: the leaves are exclusive
    fold: str = FOLD_OTHER
    other_name: str = "Other"
    strip_leading: tuple[str, ...] = ()
    max_name_length: int = 255
    max_path_length: int = 2000

    def __post_init__(self):
        if self.depth is not None and self.depth < 1:
            raise ValueError("depth must be at least 1 (or None for every level)")
        if self.min_products < 1:
            raise ValueError("min_products must be at least 1")
        if self.exclusive_level is not None and self.exclusive_level < 1:
            raise ValueError("exclusive_level must be at least 1 (or None for the leaves)")
        if self.fold not in FOLD_CHOICES:
            raise ValueError(f"fold must be one of {', '.join(FOLD_CHOICES)}, got {self.fold!r}")
        if not self.other_name.strip():
            raise ValueError("other_name must not be empty")

    def as_dict(self) -> dict:
        """The options as plain values (kept on the import run that applies a proposal)."""
        return {"depth": self.depth, "min_products": self.min_products,
                "exclusive": exclusive_rule_text(self.exclusive_level), "fold": self.fold,
                "other_name": self.other_name, "strip_leading": list(self.strip_leading)}


@dataclass(frozen=True)
class ProposedNode:
    names: tuple[str, ...]
    products: int  # products in its subtree
    own_products: int  # products that land on this node itself
    is_leaf: bool
    is_exclusive: bool
    is_catch_all: bool = False  # the 'Other' leaf made for products left on its parent

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def depth(self) -> int:
        return len(self.names)

    @property
    def path(self) -> str:
        return normalise.PATH_SEPARATOR.join(self.names)


@dataclass(frozen=True)
class ProposalChange:
    """One thing the proposal did to the feed's paths: merged, folded, dropped or gathered into a catch-all."""

    kind: str  # 'merged' | 'folded' | 'dropped' | 'other'
    path: str
    into: str  # '' for a drop
    products: int
    reason: str


@dataclass(frozen=True)
class TaxonomyProposal:
    options: ProposalOptions
    nodes: tuple[ProposedNode, ...]  # depth first: a parent before its children
    changes: tuple[ProposalChange, ...]  # biggest first
    products_total: int
    products_without_path: int  # no path, or only `strip_leading` names
    products_dropped: int  # under a top-level name below the minimum
    products_cut_to_depth: int
    products_cut_at_long_name: int
    names_rewritten: int  # paths whose names had a delimiter written ' - ' (rule 3)

    @property
    def products_covered(self) -> int:
        return sum(node.products for node in self.nodes if node.depth == 1)

    @property
    def products_on_exclusive(self) -> int:
        """Products on an exclusive node or below one: those a labeller can give an exclusive class."""
        return sum(node.products for node in self.nodes if node.is_exclusive)

    @property
    def covered_percent(self) -> float:
        return 100 * self.products_covered / self.products_total if self.products_total else 0.0

    @property
    def exclusive_percent(self) -> float:
        return 100 * self.products_on_exclusive / self.products_total if self.products_total else 0.0

    @property
    def products_on_inner_nodes(self) -> int:
        return sum(node.own_products for node in self.nodes if not node.is_leaf)

    @property
    def leaves(self) -> int:
        return sum(node.is_leaf for node in self.nodes)

    @property
    def exclusive(self) -> int:
        return sum(node.is_exclusive for node in self.nodes)

    def nodes_per_level(self) -> dict[int, int]:
        return dict(sorted(Counter(node.depth for node in self.nodes).items()))

    def change_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(change.kind for change in self.changes).items()))


@dataclass(slots=True)
class _Trie:
    count: int = 0  # products whose path passes through this node
    ends: int = 0  # products whose path ends here
    spellings: Counter = field(default_factory=Counter)
    children: dict[str, _Trie] = field(default_factory=dict)
    catch_all: bool = False

    def name(self) -> str:
        return min(self.spellings.items(), key=lambda item: (-item[1], item[0]))[0]


def _countable(value: object) -> str:
    """A path value as a string category_path_split reads the same way (lists as JSON), so equal values count once."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, (list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def path_counts_split(text_counts: Mapping[str, int]) -> Counter[tuple[str, ...]]:
    """Turn counted path texts into counted paths of names, split with normalise.category_path_split."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text, count in text_counts.items():
        counts[tuple(normalise.category_path_split(text))] += count
    return counts


def path_counts_collect(values: Iterable[object]) -> Counter[tuple[str, ...]]:
    """Count feed category paths (texts in any delimiter, lists of names…) as paths of names (no path: ())."""
    return path_counts_split(Counter(_countable(value) for value in values))


def _round_trips(names: list[str]) -> bool:
    """Whether the taxonomy CSV reads this path, and its top-level name alone, back as the same names."""
    return (normalise.category_path_split(normalise.PATH_SEPARATOR.join(names)) == names
            and normalise.category_path_split(names[0]) == names[:1])


class _Builder:
    """Fold counted paths into a trie (rules 1-3), then read the proposed tree off it (rules 4-6)."""

    def __init__(self, options: ProposalOptions):
        self.options = options
        self.strip_keys = {name_key(name) for name in options.strip_leading}
        self.root = _Trie()
        self.stats = Counter()
        self.nodes: list[ProposedNode] = []
        self.changes: list[ProposalChange] = []

    def add(self, names: tuple[str, ...], count: int) -> None:
        self.stats["total"] += count
        path = self._path_prepared(list(names), count)
        if not path:
            self.stats["without_path"] += count
            return
        node = self.root
        node.count += count
        for name in path:
            node = node.children.setdefault(name_key(name), _Trie())
            node.count += count
            node.spellings[name] += count
        node.ends += count

    def _path_prepared(self, names: list[str], count: int) -> list[str]:
        options = self.options
        while names and name_key(names[0]) in self.strip_keys:
            names = names[1:]
        too_long = next((i for i, name in enumerate(names) if len(name) > options.max_name_length), None)
        if too_long is not None:
            names = names[:too_long]
            self.stats["cut_at_long_name"] += count
        if options.depth is not None and len(names) > options.depth:
            names = names[:options.depth]
            self.stats["cut_to_depth"] += count
        while names and len(normalise.PATH_SEPARATOR.join(names)) > options.max_path_length:
            names = names[:-1]
            self.stats["cut_at_long_name"] += count
        if names and not _round_trips(names):
            names = [_NAME_DELIMITER_RE.sub(" - ", name).strip(" -") or name for name in names]
            self.stats["names_rewritten"] += count
            if not _round_trips(names):
                return []
        return names

    def build(self) -> TaxonomyProposal:
        minimum = self.options.min_products
        for key in self._sorted_keys(self.root):
            child = self.root.children[key]
            if child.count >= minimum:
                self._emit(child, (child.name(),))
            else:
                self.stats["dropped"] += child.count
                self.changes.append(ProposalChange(
                    "dropped", child.name(), "", child.count,
                    f"fewer than {minimum} products, and a top-level name has no parent to fold into"))
        nodes = tuple(self._flagged(node) for node in self.nodes)
        return TaxonomyProposal(
            options=self.options, nodes=nodes,
            changes=tuple(sorted(self.changes, key=lambda c: (-c.products, c.kind, c.path, c.into))),
            products_total=self.stats["total"], products_without_path=self.stats["without_path"],
            products_dropped=self.stats["dropped"], products_cut_to_depth=self.stats["cut_to_depth"],
            products_cut_at_long_name=self.stats["cut_at_long_name"], names_rewritten=self.stats["names_rewritten"],
        )

    @staticmethod
    def _sorted_keys(node: _Trie) -> list[str]:
        return sorted(node.children, key=lambda key: (node.children[key].catch_all,
                                                      node.children[key].name().casefold(), key))

    def _emit(self, node: _Trie, names: tuple[str, ...]) -> None:
        """Append a kept node and its kept subtree, folding its small children into it (rules 4 and 5)."""
        minimum, path = self.options.min_products, normalise.PATH_SEPARATOR.join(names)
        self._merges_record(node, names)
        own = node.ends
        for key in self._sorted_keys(node):
            child = node.children[key]
            if child.count < minimum:
                own += child.count
                del node.children[key]
                self.changes.append(ProposalChange("folded", f"{path} > {child.name()}", path, child.count,
                                                   f"fewer than {minimum} products"))
        if node.children and own and self.options.fold == FOLD_OTHER and own >= minimum:
            catch_all = node.children.get(name_key(self.options.other_name))
            if catch_all is None:
                catch_all = node.children[name_key(self.options.other_name)] = _Trie(catch_all=True)
                catch_all.spellings[self.options.other_name] = own
            catch_all.count += own
            catch_all.ends += own
            self.changes.append(ProposalChange(
                "other", f"{path} > {catch_all.name()}", path, own,
                "products left on the parent (folded children, paths ending there) in one leaf"))
            own = 0
        self.nodes.append(ProposedNode(names, node.count, own, is_leaf=not node.children, is_exclusive=False,
                                       is_catch_all=node.catch_all))
        for key in self._sorted_keys(node):
            child = node.children[key]
            self._emit(child, (*names, child.name()))

    def _merges_record(self, node: _Trie, names: tuple[str, ...]) -> None:
        if len(node.spellings) < 2 or node.catch_all:
            return
        into = normalise.PATH_SEPARATOR.join(names)
        parent = normalise.PATH_SEPARATOR.join(names[:-1])
        for spelling, count in sorted(node.spellings.items()):
            if spelling != names[-1]:
                merged = f"{parent} > {spelling}" if parent else spelling
                self.changes.append(ProposalChange("merged", merged, into, count, MERGE_REASON))

    def _flagged(self, node: ProposedNode) -> ProposedNode:
        level = self.options.exclusive_level
        exclusive = node.is_leaf if level is None else node.depth == level or (node.is_leaf and node.depth < level)
        return ProposedNode(node.names, node.products, node.own_products, node.is_leaf, exclusive, node.is_catch_all)


def taxonomy_propose(*, path_counts: PathCounts, options: ProposalOptions | None = None) -> TaxonomyProposal:
    """Propose a category tree from counted feed paths (names tuple -> products); see the module's rules."""
    builder = _Builder(options or ProposalOptions())
    for names, count in sorted(path_counts.items()):
        if count > 0:
            builder.add(tuple(names), count)
    return builder.build()


def proposal_csv_text(proposal: TaxonomyProposal) -> str:
    """The proposal as the 'path,exclusive' CSV that `import_taxonomy` reads: every node, parents first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for node in proposal.nodes:
        writer.writerow((node.path, "true" if node.is_exclusive else "false"))
    return out.getvalue()


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def proposal_summary_lines(proposal: TaxonomyProposal, *, changes_limit: int = 20) -> list[str]:
    """A plain-text summary: nodes per level, leaves, products covered and what was merged, folded or dropped."""
    p, options = proposal, proposal.options
    total = p.products_total
    levels = ", ".join(f"level {depth}: {count:,}" for depth, count in p.nodes_per_level().items()) or "none"
    lines = [
        f"Proposed taxonomy (depth {options.depth or 'all'}, min {options.min_products} products, exclusive "
        f"{exclusive_rule_text(options.exclusive_level)}, fold into {options.fold})",
        f"  nodes: {len(p.nodes):,} ({levels}); leaves {p.leaves:,}, exclusive {p.exclusive:,}",
        f"  products: {total:,} read; covered {p.products_covered:,} ({_percent(p.products_covered, total)}), "
        f"under an exclusive node {p.products_on_exclusive:,} ({_percent(p.products_on_exclusive, total)}), "
        f"left on inner nodes {p.products_on_inner_nodes:,}",
        f"  not covered: {p.products_without_path:,} without a path, {p.products_dropped:,} under "
        f"{p.change_counts().get('dropped', 0):,} dropped top-level names",
        f"  paths cut to depth: {p.products_cut_to_depth:,} products; at a too-long name: "
        f"{p.products_cut_at_long_name:,}; names with a delimiter rewritten: {p.names_rewritten:,}",
        "  changes: " + (", ".join(f"{count:,} {kind}" for kind, count in p.change_counts().items()) or "none"),
    ]
    for change in p.changes[:changes_limit]:
        target = f" -> {change.into}" if change.into else ""
        lines.append(f"    {change.kind:<7} {change.products:>7,}  {change.path}{target}  ({change.reason})")
    if len(p.changes) > changes_limit:
        lines.append(f"    … and {len(p.changes) - changes_limit:,} more")
    return lines
