"""The one parser of comma-separated options."""

import pytest

from cli.options import parse_floats, parse_list, parse_positive_ints


def test_lists():
    assert parse_list(" image, text ,", "--modalities") == ("image", "text")
    assert parse_list(None, "--modalities") == () and parse_list("", "--x") == ()
    with pytest.raises(ValueError, match="--labels: expected a comma-separated list"):
        parse_list(" , ", "--labels", required=True)
    with pytest.raises(ValueError, match="--modalities: 'image,image' repeats an item"):
        parse_list("image,image", "--modalities")


def test_positive_ints():
    assert parse_positive_ints("1, 8", "--batch") == (1, 8) and parse_positive_ints(None, "--batch") == ()
    for bad in ("0", "1,x", "-2", "1.5", ""):
        with pytest.raises(ValueError, match="--batch"):
            parse_positive_ints(bad, "--batch")


def test_floats():
    assert parse_floats("0.01,1", "--fractions") == (0.01, 1.0)
    with pytest.raises(ValueError, match="--fractions: 'x' is not a number"):
        parse_floats("0.1,x", "--fractions")
