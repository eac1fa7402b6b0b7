"""labelapp.catalogue.normalise: pure functions, no database."""

from decimal import Decimal

import pytest

from labelapp.catalogue.normalise import (
    Price,
    bool_parse,
    category_path_normalise,
    category_path_split,
    csv_delimiter_sniff,
    currency_code,
    external_id_clean,
    google_taxonomy_line_parse,
    price_parse,
    text_clean,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Navy   Blue\tShirt \n", "Navy Blue Shirt"),
        ("<p>Soft <b>cotton</b></p><br>shirt", "Soft cotton shirt"),
        ("Tom &amp; Jerry&nbsp;Tee", "Tom & Jerry Tee"),
        ("&lt;p&gt;Soft &amp;amp; warm&lt;/p&gt;", "Soft & warm"),  # escaped HTML, double-escaped entity
        ("<ul><li>one</li><li>two</li></ul>", "one two"),
        ("size < 10 and > 5", "size < 10 and > 5"),  # not tags
        ("zero\u200bwidth\x07bell", "zerowidthbell"),
        ("Cafe\u0301", "Café"),  # NFC
        (None, ""),
        (2011, "2011"),
        (12.0, "12"),
    ],
)
def test_text_clean(value, expected):
    assert text_clean(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Apparel > Tops > T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel>Tops>T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel >> Tops >> T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel / Tops / T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel // Tops // T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel|Tops|T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel › Tops › T-shirts", "Apparel > Tops > T-shirts"),
        ("Apparel » Tops", "Apparel > Tops"),
        ('["Apparel", "Tops", "T-shirts"]', "Apparel > Tops > T-shirts"),
        (["Apparel ", " Tops", ""], "Apparel > Tops"),
        # '>' outranks '/': a name may contain a slash.
        ("Apparel > Tops/T-shirts", "Apparel > Tops/T-shirts"),
        ("Apparel // Tops/T-shirts", "Apparel > Tops/T-shirts"),
        ("  Apparel >  > Tops > ", "Apparel > Tops"),
        ("Home &amp; Garden &gt; Kitchen", "Home & Garden > Kitchen"),
        ("<b>Shoes</b> > Boots", "Shoes > Boots"),
        ("Shoes", "Shoes"),
        ("", ""),
        (None, ""),
        ("[not json", "not json"),  # a stray bracket is no part of a name
    ],
)
def test_category_path_normalise(value, expected):
    assert category_path_normalise(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A JSON list holding one delimited string (issue #12: it used to become a one-level path).
        ('["Home Furnishing >> Curtains & Accessories >> Curtains"]',
         "Home Furnishing > Curtains & Accessories > Curtains"),
        (["Home Furnishing >> Curtains"], "Home Furnishing > Curtains"),
        # Several paths: the first non-empty one, or a later one extending it (deeper in the same branch).
        ('["", "A >> B", "X >> Y >> Z"]', "A > B"),
        ('["A >> B", "a >> b >> C", "A >> B >> C >> D"]', "A > B > C > D"),
        (["A/B", "A/B/C"], "A > B > C"),
        # Nested lists.
        ([["A", "B"], ["A", "B", "C"]], "A > B > C"),
        ([[["Shoes > Boots"]]], "Shoes > Boots"),
        ('[["A > B"], "A > B > C"]', "A > B > C"),
        ("[[]]", ""),
        # A list of plain names is one level per item; a slash inside one is part of its name.
        (["Apparel", "Tops/T-shirts"], "Apparel > Tops/T-shirts"),
        # Mixed delimiters in one path: every delimiter of the strongest tier present splits.
        ("A > B » C → D", "A > B > C > D"),
        ("A >> B > C", "A > B > C"),
        ("A|B¦C", "A > B > C"),
        ("A\\B\\C", "A > B > C"),
        ("A \\\\ B", "A > B"),
        ("A | B/C", "A > B/C"),
        ("  A  >>   B  ", "A > B"),
        # Stray quotes and brackets: broken JSON, Python reprs, a quoted string.
        ('["Home Furnishing >> Curtains', "Home Furnishing > Curtains"),
        ("['Apparel', 'Tops', \"Men's\"]", "Apparel > Tops > Men's"),
        ('"Shoes > Boots"', "Shoes > Boots"),
        ("Kids' > Shoes", "Kids' > Shoes"),
        ("“Shoes” > Boots", "Shoes > Boots"),
        # Absurd nesting is no path, and never an error.
        ("[" * 5000, ""),
        ('["' + "[" * 3000 + '"]', ""),
        (1604, "1604"),
    ],
)
def test_category_path_shapes(value, expected):
    assert category_path_normalise(value) == expected


def test_category_path_split_returns_names():
    assert category_path_split("A | B | C") == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("value", "amount", "currency"),
    [
        ("1.299,00 EUR", "1299.00", "EUR"),
        ("$12.99", "12.99", "USD"),
        ("12,99 €", "12.99", "EUR"),
        ("1299", "1299.00", ""),
        ("1,299.50 USD", "1299.50", "USD"),
        ("US$ 1,299.50", "1299.50", "USD"),
        ("EUR 12.5", "12.50", "EUR"),
        ("gbp12", "12.00", "GBP"),
        ("£ 1 299,00", "1299.00", "GBP"),
        ("Rs. 1,299", "1299.00", "INR"),
        ("₹ 1,29,999", None, None),  # Indian grouping is not three-digit grouping: refused, not guessed
        ("CHF 1'299.90", "1299.90", "CHF"),
        ("1.299", "1299.00", ""),  # one mark before three digits: thousands
        ("0.299", "0.30", ""),
        ("12,5", "12.50", ""),
        (".99", "0.99", ""),
        ("1.234.567,89", "1234567.89", ""),
        (12.5, "12.50", ""),
        (1299, "1299.00", ""),
        ("", None, ""),
        (None, None, ""),
    ],
)
def test_price_parse(value, amount, currency):
    if currency is None:
        with pytest.raises(ValueError):
            price_parse(value)
        return
    assert price_parse(value) == Price(Decimal(amount) if amount else None, currency)


@pytest.mark.parametrize(
    "value", ["free", "12.99-15.99", "12.99 Dollars", "-3", "1e30", "99999999999", float("nan"), "1.2.3,4,5", True]
)
def test_price_parse_refuses_what_is_not_one_price(value):
    with pytest.raises(ValueError):
        price_parse(value)


@pytest.mark.parametrize(("value", "code"), [("€", "EUR"), ("eur", "EUR"), ("Rs.", "INR"), ("usd", "USD"), ("", "")])
def test_currency_code(value, code):
    assert currency_code(value) == code


def test_currency_code_refuses_words():
    with pytest.raises(ValueError):
        currency_code("Dollars")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("Yes", True), ("1", True), ("FALSE", False), ("no", False), ("0", False), ("", None),
     (None, None)],
)
def test_bool_parse(value, expected):
    assert bool_parse(value) is expected


def test_bool_parse_refuses_other_words():
    with pytest.raises(ValueError):
        bool_parse("maybe")


def test_google_taxonomy_line_parse():
    assert google_taxonomy_line_parse("3237 - Animals & Pet Supplies > Live Animals") == (
        "3237", ["Animals & Pet Supplies", "Live Animals"])
    for bad in ("Animals > Pets", "12 - ", "12 - A >  > B", "x12 - A"):
        with pytest.raises(ValueError):
            google_taxonomy_line_parse(bad)


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("id,title,price\n1,Shirt,12\n2,Jeans,30\n", ","),
        ("id;title;price\n1;Shirt, blue;12,5\n2;Jeans;30\n", ";"),
        ("id\ttitle\tprice\n1\tShirt, blue\t12\n", "\t"),
        ("id|title|price\n1|Shirt|12\n", "|"),
        ("id,title\n1,A\n2,B\n3,C partial line without newl", ","),
        ("title\nShirt\n", ","),
    ],
)
def test_csv_delimiter_sniff(sample, delimiter):
    assert csv_delimiter_sniff(sample) == delimiter


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" A-1 ", "A-1"), (15970, "15970"), (15970.0, "15970"), ("id\x07", "id"), ({"a": 1}, ""), ([1], ""),
     (True, ""), (None, "")],
)
def test_external_id_clean(value, expected):
    assert external_id_clean(value) == expected
