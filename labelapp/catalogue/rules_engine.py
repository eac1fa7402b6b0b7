"""The legacy rule engine: compile rule definitions once, then match them against product field dicts.

Pure Python on purpose (no Django): the engine is tested and benchmarked without a database, and
`labelapp.catalogue.services.rules` feeds it plain dicts from `.values()`.

Semantics of one condition `{"field": f, "op": op, "value": v}` on a product dict `p`:

* Literal ops compare *folded* text: `text_fold(s)` lowercases and collapses every run of whitespace to one
  space (leading/trailing whitespace dropped). A missing or None field is the empty string.
  - `contains`:      folded v is a substring of folded p[f]                 ("pant" fires on "Sweatpants").
  - `contains_word`: folded v occurs in folded p[f] with no word character (`\\w`: letters, digits, "_")
                     right before or right after it            ("pant" does not fire on "pants"; "t-shirt" fires
                     on "Blue T-Shirt," but not on "tshirt"). Multi-word values are fine ("track pants").
  - `equals`:        folded p[f] == folded v.
* `regex`: `re.search(v, p[f])` on the raw field value, not folded: case-sensitive unless the pattern says so
  with an inline flag — `(?i)` at the very start for the whole pattern, or `(?i:...)` for a part of it. Other
  inline flags (`(?s)`, `(?m)`, `(?x)`, `(?a)`) work the same way. Python `re` syntax; unanchored.

A rule fires when all its conditions hold (combinator "and") or any holds ("or"). The result of matching one
product is the set of `(rule_id, category_id)` of the rules that fired: independent, positive-only labels.

Speed: `rules_compile` builds the prefilter once, so matching a product costs a few dictionary look-ups per
word, not one test per rule:

* `equals` values sit in a per-field dict keyed by folded value.
* `contains_word` values sit in a per-field word index: the value's words (`\\w+`) form a phrase keyed by its
  first word; a product's field is tokenised once and each token is looked up. A single clean word
  ("trousers") hit is already the answer; a phrase hit ("t-shirt", "track pants") is a candidate, checked with
  the exact word-boundary regex (the index matches "t shirt" too).
* `contains` values sit in one trie-shaped regex per field, wrapped in a look-ahead so that it reports, at
  each position of the text, the longest literal starting there; every literal that is a prefix of that one
  also occurs there, so a precomputed prefix closure turns each hit into the complete set of literals found.
  (The trie keeps the regex from trying 1,000 alternatives at every position; measured in bench/bench_rules.py.)
* An "or" rule is indexed under every condition; an "and" rule under its most selective literal condition
  (the one matching fewest products of a sample given to `rules_compile`; without a sample, the longest
  value) and checked in full when that fires.
* Rules that cannot be indexed (every "and" condition is a regex, or an "or" rule with a regex condition) are
  evaluated on every product; keep them few.

`rules_match_naive` is the reference: every condition of every rule on every product, written independently of
the index so the randomized test can hold the two to identical results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field

OPS = ("contains", "contains_word", "equals", "regex")
COMBINATORS = ("and", "or")
LITERAL_OPS = ("contains", "contains_word", "equals")

_WORD_RE = re.compile(r"\w+")

Product = Mapping[str, "str | None"]
RuleHit = tuple[int, int]


def text_fold(text: str | None) -> str:
    """Return text lowercased with runs of whitespace collapsed to one space: how literal ops compare."""
    if not text:
        return ""
    return " ".join(text.lower().split())


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    """A rule as the engine sees it: ids plus conditions; validated by `rules_compile`."""

    rule_id: int
    category_id: int
    conditions: tuple[Condition, ...]
    combinator: str = "and"

    @classmethod
    def from_dicts(cls, *, rule_id: int, category_id: int, conditions: Iterable[Mapping[str, str]],
                   combinator: str = "and") -> RuleDefinition:
        """Build a definition from the JSON shape stored on LegacyRule.conditions."""
        return cls(rule_id=rule_id, category_id=category_id, combinator=combinator,
                   conditions=tuple(Condition(field=c["field"], op=c["op"], value=c["value"]) for c in conditions))


def rule_definition_errors(*, conditions: Sequence[Mapping], combinator: str) -> list[str]:
    """Return what the engine cannot compile in a rule (field names are the caller's business)."""
    errors = []
    if combinator not in COMBINATORS:
        errors.append(f"unknown combinator {combinator!r} (one of {', '.join(COMBINATORS)})")
    if not conditions:
        errors.append("a rule needs at least one condition")
    for index, condition in enumerate(conditions, start=1):
        op, value = condition.get("op"), condition.get("value")
        if op not in OPS:
            errors.append(f"condition {index}: unknown op {op!r} (one of {', '.join(OPS)})")
        elif not isinstance(value, str) or not value:
            errors.append(f"condition {index}: value must be a non-empty string")
        elif op == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(f"condition {index}: invalid regex {value!r}: {exc}")
        elif not text_fold(value):
            errors.append(f"condition {index}: value {value!r} is only whitespace")
    return errors


# --- the compiled matcher ---------------------------------------------------------------------------------------


def _word_pattern(folded_value: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(folded_value) + r"(?!\w)")


def _condition_test(condition: Condition):
    """Return a predicate (folded fields, raw product) -> bool for one condition."""
    name = condition.field
    if condition.op == "regex":
        search = re.compile(condition.value).search
        return lambda folded, raw: search(raw.get(name) or "") is not None
    value = text_fold(condition.value)
    if condition.op == "contains":
        return lambda folded, raw: value in folded[name]
    if condition.op == "equals":
        return lambda folded, raw: folded[name] == value
    search = _word_pattern(value).search
    return lambda folded, raw: search(folded[name]) is not None


@dataclass(slots=True)
class _Hits:
    """What one index key proves: rules that fire outright, and rules that become candidates to check."""

    fire: set[int] = dataclass_field(default_factory=set)
    check: set[int] = dataclass_field(default_factory=set)

    def add(self, rule_index: int, *, exact: bool) -> None:
        (self.fire if exact else self.check).add(rule_index)


@dataclass(slots=True)
class _FieldIndex:
    equals: dict[str, _Hits] = dataclass_field(default_factory=dict)
    words: dict[str, _Hits] = dataclass_field(default_factory=dict)
    # first word -> [(following words, hits)]
    phrases: dict[str, list[tuple[tuple[str, ...], _Hits]]] = dataclass_field(default_factory=dict)
    substrings: dict[str, _Hits] = dataclass_field(default_factory=dict)
    substring_re: re.Pattern | None = None
    substring_closure: dict[str, tuple[_Hits, ...]] = dataclass_field(default_factory=dict)


def _trie_regex(literals: Iterable[str]) -> str:
    """Return a regex matching any of the literals, shaped like their trie, preferring the longest."""
    trie: dict = {}
    for literal in literals:
        node = trie
        for char in literal:
            node = node.setdefault(char, {})
        node[""] = True

    def render(node: dict) -> str:
        branches = []
        for char in sorted(key for key in node if key):
            run, child = [char], node[char]
            # Collapse a chain of single-child, non-terminal nodes into one literal run (keeps nesting shallow).
            while len(child) == 1 and "" not in child:
                (next_char, grandchild), = child.items()
                run.append(next_char)
                child = grandchild
            branches.append(re.escape("".join(run)) + render(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Greedy optional: the longest literal wins, the terminal here is the fall-back.
        return f"(?:{body})?" if "" in node else body

    return render(trie)


def _anchor_rank(condition: Condition) -> tuple:
    """Higher is more selective, as far as the condition alone tells: the longer value, then the stricter op."""
    value = text_fold(condition.value)
    words = _WORD_RE.findall(value)
    if condition.op == "equals":
        kind = 3
    elif condition.op == "contains_word" and len(words) > 1:
        kind = 2
    elif condition.op == "contains_word" and words:
        kind = 1
    else:
        kind = 0
    return (len(value), kind)


def _condition_hit_counts(conditions: Iterable[Condition], sample: Iterable[Product]) -> dict[Condition, int]:
    """Count, on a sample of products, how many each literal condition matches (one probe rule each)."""
    conditions = list(dict.fromkeys(conditions))
    probe = RuleMatcher(RuleDefinition(rule_id=position, category_id=0, conditions=(condition,))
                        for position, condition in enumerate(conditions))
    counts = dict.fromkeys(conditions, 0)
    for product in sample:
        for position, _ in probe.match(product):
            counts[conditions[position]] += 1
    return counts


class RuleMatcher:
    """Compiled rules: `match(product)` returns the (rule_id, category_id) of every rule that fires."""

    def __init__(self, rules: Iterable[RuleDefinition], *, sample: Iterable[Product] = ()):
        self.rules: tuple[RuleDefinition, ...] = tuple(rules)
        problems = []
        for rule in self.rules:
            errors = rule_definition_errors(
                conditions=[{"op": c.op, "value": c.value} for c in rule.conditions], combinator=rule.combinator)
            if errors:
                problems.append(f"rule {rule.rule_id}: {'; '.join(errors)}")
        if problems:
            raise ValueError("cannot compile rules: " + " | ".join(problems))

        self._results: tuple[RuleHit, ...] = tuple((rule.rule_id, rule.category_id) for rule in self.rules)
        # Built on first use: most rules fire straight from the index and never need their regexes compiled.
        self._tests: list[tuple | None] = [None] * len(self.rules)
        self._is_and = tuple(rule.combinator == "and" and len(rule.conditions) > 1 for rule in self.rules)
        self.fields: frozenset[str] = frozenset(c.field for rule in self.rules for c in rule.conditions)
        self._literal_fields: tuple[str, ...] = tuple(sorted(
            {c.field for rule in self.rules for c in rule.conditions if c.op in LITERAL_OPS}))
        self._indexes: dict[str, _FieldIndex] = {}
        unindexed: list[int] = []
        anchors = [c for rule in self.rules if rule.combinator == "and" and len(rule.conditions) > 1
                   for c in rule.conditions if c.op in LITERAL_OPS]
        sample = list(sample)
        hit_counts = _condition_hit_counts(anchors, sample) if anchors and sample else {}

        for rule_index, rule in enumerate(self.rules):
            if rule.combinator == "or" or len(rule.conditions) == 1:
                if any(c.op == "regex" for c in rule.conditions):
                    unindexed.append(rule_index)
                    continue
                for condition in rule.conditions:
                    self._index_condition(condition, rule_index, sole=True)
            else:
                literals = [c for c in rule.conditions if c.op in LITERAL_OPS]
                if not literals:
                    unindexed.append(rule_index)
                    continue
                anchor = min(literals, key=lambda c: (hit_counts.get(c, 0), tuple(-x for x in _anchor_rank(c))))
                self._index_condition(anchor, rule_index, sole=False)
        self._unindexed: tuple[int, ...] = tuple(unindexed)

        for index in self._indexes.values():
            if index.substrings:
                index.substring_re = re.compile("(?=(" + _trie_regex(index.substrings) + "))")
                substrings = index.substrings
                index.substring_closure = {
                    literal: tuple(substrings[literal[:end]] for end in range(1, len(literal) + 1)
                                   if literal[:end] in substrings)
                    for literal in substrings
                }

    def _index_condition(self, condition: Condition, rule_index: int, *, sole: bool) -> None:
        """File one literal condition; `sole` says a hit on it alone makes the rule fire."""
        index = self._indexes.setdefault(condition.field, _FieldIndex())
        value = text_fold(condition.value)
        if condition.op == "equals":
            index.equals.setdefault(value, _Hits()).add(rule_index, exact=sole)
        elif condition.op == "contains":
            index.substrings.setdefault(value, _Hits()).add(rule_index, exact=sole)
        else:
            words = _WORD_RE.findall(value)
            if not words:
                # No word characters at all ("&"): the substring index finds candidates, the regex decides.
                index.substrings.setdefault(value, _Hits()).add(rule_index, exact=False)
            elif len(words) == 1:
                # A token of `\w+` is always bounded by non-word characters, so a clean word hit is exact.
                index.words.setdefault(words[0], _Hits()).add(rule_index, exact=sole and words[0] == value)
            else:
                first, rest = words[0], tuple(words[1:])
                entries = index.phrases.setdefault(first, [])
                for existing_rest, hits in entries:
                    if existing_rest == rest:
                        break
                else:
                    hits = _Hits()
                    entries.append((rest, hits))
                hits.add(rule_index, exact=False)

    def match(self, product: Product) -> set[RuleHit]:
        """Return the (rule_id, category_id) of every rule that fires on a product's field dict."""
        folded = {name: text_fold(product.get(name)) for name in self._literal_fields}
        fired: set[int] = set()
        candidates: set[int] = set()
        for name, index in self._indexes.items():
            text = folded[name]
            if not text:
                continue
            if index.equals:
                hits = index.equals.get(text)
                if hits is not None:
                    fired |= hits.fire
                    candidates |= hits.check
            if index.words or index.phrases:
                tokens = _WORD_RE.findall(text)
                for token in index.words.keys() & tokens:
                    hits = index.words[token]
                    fired |= hits.fire
                    candidates |= hits.check
                for token in index.phrases.keys() & tokens:
                    for position, current in enumerate(tokens):
                        if current != token:
                            continue
                        for rest, hits in index.phrases[token]:
                            if tuple(tokens[position + 1:position + 1 + len(rest)]) == rest:
                                fired |= hits.fire
                                candidates |= hits.check
            if index.substring_re is not None:
                for literal in set(index.substring_re.findall(text)):
                    for hits in index.substring_closure[literal]:
                        fired |= hits.fire
                        candidates |= hits.check
        candidates.difference_update(fired)
        candidates.update(self._unindexed)
        all_tests, is_and = self._tests, self._is_and
        for rule_index in candidates:
            tests = all_tests[rule_index]
            if tests is None:
                tests = all_tests[rule_index] = tuple(_condition_test(c) for c in self.rules[rule_index].conditions)
            if is_and[rule_index]:
                if all(test(folded, product) for test in tests):
                    fired.add(rule_index)
            elif any(test(folded, product) for test in tests):
                fired.add(rule_index)
        results = self._results
        return {results[rule_index] for rule_index in fired}

    def match_many(self, products: Iterable[Product]) -> list[set[RuleHit]]:
        """Return `match` for each product, in order."""
        match = self.match
        return [match(product) for product in products]


def rules_compile(rules: Iterable[RuleDefinition], *, sample: Iterable[Product] = ()) -> RuleMatcher:
    """Compile rule definitions into a matcher; raises ValueError naming every rule it cannot compile.

    `sample`: a few hundred to a few thousand products like the ones to match. With it, an "and" rule is
    indexed under the literal condition that matched fewest sample products ("gender equals men" is a poor
    anchor next to "title contains_word kurta"); without it, under the longest value, then the strictest op.
    Only speed depends on the sample, never the results.
    """
    return RuleMatcher(rules, sample=sample)


# --- the reference evaluator ------------------------------------------------------------------------------------


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def condition_matches_naive(condition: Condition, product: Product) -> bool:
    """Evaluate one condition directly, with no index and no regex for the literal ops."""
    raw = product.get(condition.field) or ""
    if condition.op == "regex":
        return re.search(condition.value, raw) is not None
    text, value = text_fold(raw), text_fold(condition.value)
    if condition.op == "equals":
        return text == value
    if condition.op == "contains":
        return value in text
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        if (start == 0 or not _is_word_char(text[start - 1])) and (end == len(text) or not _is_word_char(text[end])):
            return True
        start = text.find(value, start + 1)
    return False


def rules_match_naive(rules: Iterable[RuleDefinition], product: Product) -> set[RuleHit]:
    """Return the (rule_id, category_id) of every rule that fires, testing every condition of every rule."""
    fired = set()
    for rule in rules:
        outcomes = (condition_matches_naive(condition, product) for condition in rule.conditions)
        if all(outcomes) if rule.combinator == "and" else any(outcomes):
            fired.add((rule.rule_id, rule.category_id))
    return fired


# --- keywords from category names (the bootstrap heuristic) ----------------------------------------------------

# Plural-only nouns whose singular is a different, common word ("shorts" → "short sleeve"): no singular form.
_NO_SINGULAR = frozenset({
    "jeans", "shorts", "briefs", "tights", "trunks", "glasses", "sunglasses", "eyeglasses", "clothes", "news",
    "series", "species", "scissors", "pliers", "tongs", "binoculars", "pajamas", "pyjamas", "electronics",
    "athletics", "gymnastics", "lens", "canvas", "gas", "plus", "atlas", "chess", "means", "goods", "arms",
    "thanks", "overalls", "sweatpants", "leggings", "dungarees",
})
_IRREGULAR = {
    "man": "men", "woman": "women", "child": "children", "foot": "feet", "tooth": "teeth", "mouse": "mice",
    "person": "people", "knife": "knives", "scarf": "scarves", "shelf": "shelves", "leaf": "leaves",
    "wolf": "wolves", "half": "halves", "loaf": "loaves", "life": "lives", "wife": "wives", "goose": "geese",
}
_IRREGULAR_SINGULAR = {plural: singular for singular, plural in _IRREGULAR.items()}
# A part of a name that is only one of these is too generic to be a keyword on its own ("Parts & Accessories").
GENERIC_WORDS = frozenset({
    "accessories", "accessory", "parts", "part", "supplies", "supply", "equipment", "products", "product",
    "other", "others", "miscellaneous", "misc", "general", "items", "item", "sets", "set", "kits", "kit",
    "more", "various", "components", "component",
})
_NAME_SPLIT_RE = re.compile(r"\s*(,|&|/|\band\b)\s*", re.IGNORECASE)


def word_forms(word: str) -> list[str]:
    """Return a lowercased word with its plural or singular form ("trousers" → trousers, trouser)."""
    word = word.lower()
    forms = [word]
    if not word[-1:].isalpha():
        return forms
    if word in _IRREGULAR:
        forms.append(_IRREGULAR[word])
    elif word in _IRREGULAR_SINGULAR:
        forms.append(_IRREGULAR_SINGULAR[word])
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        if word not in _NO_SINGULAR and len(word) > 3:
            if word.endswith("ies") and len(word) > 4:
                forms.append(word[:-3] + "y")
            elif word.endswith(("sses", "shes", "ches", "xes", "zzes")):
                forms.append(word[:-2])
            else:
                forms.append(word[:-1])
    elif word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        forms.append(word[:-1] + "ies")
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        forms.append(word + "es")
    else:
        forms.append(word + "s")
    return forms


def _phrase_variants(phrase: str) -> list[str]:
    """Inflect the last word of a phrase, and spell hyphenated words three ways (t-shirt, t shirt, tshirt)."""
    *head, last = phrase.split(" ")
    variants = []
    for form in word_forms(last):
        inflected = " ".join([*head, form])
        variants.append(inflected)
        if "-" in inflected:
            variants.append(inflected.replace("-", " "))
            variants.append(inflected.replace("-", ""))
    return variants


def category_name_keywords(name: str) -> list[str]:
    """Return the `contains_word` values a bootstrap rule uses for a category name, lowercased and sorted.

    * The name is split into parts on ",", "&", "/" and the word "and": "Shirts & Tops" → shirts, tops.
    * Shared words are distributed, as the taxonomy writes them:
      - a later one-word part borrows the first part's leading words when the first part has several
        ("Pet Bells & Charms" → pet bells, pet charms);
      - an earlier one-word part that does not end in "s" (a modifier, not a plural noun) borrows the last
        part's final word ("Baby & Toddler Food" → baby food, toddler food; but "Printers, Copiers & Fax
        Machines" keeps printers, copiers). Ambiguous names can miss ("Arm Chairs, Recliners" → arm recliners).
      - a name that uses the word "and" shares nothing: Myntra-style names list whole items
        ("Perfume and Body Mist" → perfume, body mist), Google-style names use "&" for shared words.
    * The last word of each part gets its singular or plural form (`word_forms`): trousers/trouser,
      dress/dresses, accessories/accessory; plural-only words such as jeans and shorts keep one form.
    * Hyphenated words also appear spaced and joined: t-shirts, t shirts, tshirts (+ singulars).
    * A part that is a single generic word ("Accessories", "Parts") is dropped; a name made only of those
      yields no keywords, and the bootstrap makes no rule for it.
    """
    pieces = _NAME_SPLIT_RE.split(name)
    parts = [" ".join(piece.lower().split()) for piece in pieces[::2]]
    shares = all(separator.lower() != "and" for separator in pieces[1::2])
    parts = [part for part in parts if _WORD_RE.search(part)]
    if not parts:
        return []
    first_words, last_words = parts[0].split(" "), parts[-1].split(" ")
    phrases = []
    for position, part in enumerate(parts):
        words = part.split(" ")
        if shares and len(words) == 1 and position > 0 and len(first_words) > 1:
            part = " ".join([*first_words[:-1], part])
        elif (shares and len(words) == 1 and position < len(parts) - 1 and len(last_words) > 1
              and not part.endswith("s")):
            part = f"{part} {last_words[-1]}"
        if part.split(" ") == [part] and part in GENERIC_WORDS:
            continue
        phrases.append(part)
    return sorted({variant for phrase in phrases for variant in _phrase_variants(phrase)})
