"""Feature functions label hand-written snippets the way a reader knows them after each character."""
import numpy as np
import pytest

from unrolled.understand import features as F


def marks(mask) -> str:
    return "".join("x" if m else "." for m in mask)


@pytest.mark.parametrize("text, comment, string", [
    # a comment: the first '/' may still be a division; the closing '/' is outside again
    ('a /* b */ c', '...xxxxx...', '...........'),
    ('x // y\nz', '...xxx..', '........'),
    # a string: the opening quote is inside, the closing one outside
    ('s = "ab";', '.........', '....xxx..'),
    # escaped quotes and backslashes stay inside
    (r's = "a\"b\\";', '.............', '....xxxxxxx..'),
    # a comment inside a string is string; a string inside a comment is comment
    ('t = "/* no */";', '...............', '....xxxxxxxxx..'),
    ('/* say "hi" */ x', '.xxxxxxxxxxxx...', '................'),
    ('// "q\n"s"', '.xxxx....', '......xx.'),
    # a character literal holding a quote starts no string
    ("c = '\"'; d = \"e\";", '.................', '.............xx..'),
    # an unterminated string ends at its line
    ('a = "open\nb', '...........', '....xxxxx..'),
])
def test_c_comments_and_strings(text, comment, string):
    lexed = F.lex(text, "c")
    assert marks(lexed.comment) == comment
    assert marks(lexed.string) == string


def test_python_comments_and_strings():
    text = "x = '#no'  # it's \"c\"\ny = \"\"\"a\n'b'\"\"\" + r'\\\\' # z\n"
    lexed = F.lex(text, "python")
    # every character of each region, in order, and nothing else
    assert "".join(ch for ch, m in zip(text, lexed.comment) if m) == "# it's \"c\"# z"
    assert "".join(ch for ch, m in zip(text, lexed.string) if m) == "'#no\"\"\"a\n'b'\"\"'\\\\"


def test_prose_quotes_nested_curly_and_paragraphs():
    text = 'He said "no" and \u201cyes\u201d.\n\n"Open para\n\nnew "x'
    inside = "".join(ch for ch, m in zip(text, F.in_quotes(text)) if m)
    # closing quotes are outside; a blank line closes a quote left open; the last one opens
    assert inside == '"no\u201cyes"Open para"x'


def test_lines_positions_and_indentation():
    text = "ab\n\tc\n\n  de"
    np.testing.assert_array_equal(F.position_in_line(text), [1, 2, 0, 1, 2, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(F.line_length(text), [2, 2, 2, 2, 2, 0, 4, 4, 4, 4, 4])
    np.testing.assert_array_equal(F.indent_depth(text), [0, 0, 8, 8, 8, 0, 2, 2, 2, 2, 2])


def test_bracket_depth_ignores_comments_strings_and_preprocessor():
    text = 'f(a[1], "(", \'{\') { /* ( */ }\n#define X {\n}'
    depth = F.bracket_depth(text).astype(int)
    # read the exact values at the interesting places
    assert depth[text.index("(")] == 1 and depth[text.index("[")] == 2 and depth[text.index("]")] == 1
    assert depth[text.index('"(')] == 1 and depth[text.index("'{'") + 1] == 1
    assert depth[text.index(") {")] == 0 and depth[text.index("{ /*")] == 1
    assert depth[text.index("( */")] == 1 and depth[text.index("}\n")] == 0
    assert depth[text.index("X {") + 2] == 0  # a macro's brace is not a block
    assert depth[-1] == 0  # a stray closing brace never goes below zero
    assert F.brace_depth("{(})").tolist() == [1, 1, 0, 0]


def test_if_conditions_c_and_python():
    text = "if (a && (b)) x(); /* if (no) */ else if(c) {}"
    got = marks(F.in_if_condition(text, "c"))
    assert "".join(ch for ch, m in zip(text, F.in_if_condition(text, "c")) if m) == "(a && (b)(c"
    assert got[3] == "x" and got[12] == "."
    py = "if x[0] == ':':\n    y = 1 if z else 2\nelif (a or\n      b):\n    pass\n"
    inside = "".join(ch for ch, m in zip(py, F.in_if_condition(py, "python")) if m)
    assert inside == " x[0] == ':' (a or\n      b)"


def test_custom_features_regex_and_function():
    feats = F.compute("int x; int y;", ["kw=int", "in_comment", "tests.test_understand_features:vowels"],
                      language="c")
    assert marks(feats["kw"]) == "xxx....xxx..."
    assert feats["vowels"].dtype == bool and feats["vowels"].sum() == 2
    assert F.kinds(feats) == {"kw": "binary", "in_comment": "binary", "vowels": "binary"}
    F.register("x_count", lambda t: np.cumsum([c == "x" for c in t]))
    try:
        assert F.compute("axbx", ["x_count"])["x_count"].tolist() == [0, 1, 1, 2]
    finally:
        del F.FEATURES["x_count"]  # the registry is global: leave it as other tests expect it
    with pytest.raises(F.UserError, match="unknown feature"):
        F.resolve("nope")
    with pytest.raises(F.UserError, match="not a regular expression"):
        F.resolve("bad=(")


def vowels(text):
    """Vowels."""
    return np.array([c in "aeiou" for c in text])


def test_language_guess():
    assert F.guess_language("#include <x.h>\nint f(void) {\n\treturn 0;\n}\n" * 3) == "c"
    assert F.guess_language("import os\n\ndef f(self):\n    self.x = 1\n" * 3) == "python"
    assert F.guess_language("It was a dark and stormy night.") == "prose"
