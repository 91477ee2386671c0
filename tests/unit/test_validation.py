"""Tests of jobwatchd.validation: identifiers, labels, selectors, timeouts."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.validation import (
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_TIMEOUT_SECONDS,
    ValidationError,
    is_valid_id,
    parse_label_selector,
    validate_id,
    validate_labels,
    validate_timeout,
)

FAST = settings(max_examples=30, deadline=None)
LABELS = settings(max_examples=30, deadline=None)
ALLOWED = frozenset(string.ascii_letters + string.digits + "_-")
# Characters that would matter in a URL path, a log line or a shell.
HOSTILE = [
    "/",
    "\\",
    ".",
    "%",
    "?",
    "#",
    "&",
    "=",
    "+",
    ":",
    ";",
    "@",
    " ",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x7f",
    "\u00a0",
    "\u2028",
    "é",
    "ß",
    "İ",
    "\u212a",  # KELVIN SIGN: lower-cases to ASCII "k"
    "\uff41",  # FULLWIDTH LATIN SMALL LETTER A
    "\u0661",  # ARABIC-INDIC DIGIT ONE (a unicode \\d)
    "²",
    "\uff0d",  # FULLWIDTH HYPHEN-MINUS
    "\u2010",  # HYPHEN
    "\uff3f",  # FULLWIDTH LOW LINE
    "😀",
]


def is_safe_id(value: str) -> bool:
    """The reference definition: 1-64 characters of ``[A-Za-z0-9_-]``."""
    return 1 <= len(value) <= 64 and all(char in ALLOWED for char in value)


# --- identifiers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "Z",
        "0",
        "-",
        "_",
        "2c9eb2c5544cbf6101544f0602af2b4f",
        "ff8080828b0c8b7f018b1a2b3c4d5e6f",
        "job_ID-42",
        "--",
        "a" * 64,
        string.ascii_letters + string.digits + "_-",
    ],
)
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)
    assert validate_id(value, "job_id") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 65,
        "/",
        "a/b",
        "../etc",
        "..",
        ".",
        "a.b",
        "%2F",
        "a%2e%2e",
        "a b",
        " a",
        "a ",
        "a\n",
        "\na",
        "a\r\nb",
        "a\x00",
        "\x00",
        "a\tb",
        "job?x=1",
        "job#frag",
        "é",
        "\uff41\uff42\uff43",  # fullwidth "abc"
        "\u0661\u0662\u0663",  # Arabic-Indic "123"
        "job\u2028",
        "\u212a",
        "😀",
        "jobs/../../v2",
    ],
)
def test_invalid_id_strings(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(ValidationError) as info:
        validate_id(value, "project_id")
    assert info.value.field == "project_id"
    assert "1-64 characters" in info.value.message


@pytest.mark.parametrize("value", [None, 1, 1.5, True, b"abc", ["abc"], {"id": "abc"}])
def test_non_string_ids(value: object) -> None:
    assert not is_valid_id(value)
    with pytest.raises(ValidationError) as info:
        validate_id(value, "jobs[3].job_id")
    assert info.value.field == "jobs[3].job_id"
    assert info.value.message == "must be a string"


@pytest.mark.parametrize("hostile", HOSTILE, ids=ascii)
def test_one_hostile_character_anywhere_is_refused(hostile: str) -> None:
    for value in (hostile, hostile + "abc", "ab" + hostile + "c", "abc" + hostile):
        assert not is_valid_id(value), value


@FAST
@given(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(sorted(ALLOWED)), st.sampled_from(HOSTILE), st.characters()
        ),
        max_size=80,
    )
)
def test_id_acceptance_is_exactly_the_safe_set(value: str) -> None:
    assert is_valid_id(value) == is_safe_id(value)


@FAST
@given(st.text(max_size=100))
def test_arbitrary_text_passes_only_if_safe(value: str) -> None:
    if is_valid_id(value):
        assert is_safe_id(value)
        assert not {"/", ".", "%", "\x00", "\n"} & set(value)
        assert value.isascii()
        assert value == value.strip()


@FAST
@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_every_safe_id_passes(value: str) -> None:
    assert validate_id(value, "job_id") == value


@FAST
@given(st.text(alphabet=sorted(ALLOWED), min_size=65, max_size=200))
def test_too_long_ids_fail(value: str) -> None:
    assert not is_valid_id(value)


def test_validation_error_renders_field_and_message() -> None:
    error = ValidationError("labels.team", "must be a string")
    assert isinstance(error, Exception)
    assert str(error) == "labels.team: must be a string"
    assert (error.field, error.message) == ("labels.team", "must be a string")


# --- labels -------------------------------------------------------------------------------


def test_labels_none_is_empty() -> None:
    assert validate_labels(None) == {}


def test_labels_are_copied_into_a_dict() -> None:
    given_labels = {"team": "infra", "env": "", "k" * MAX_LABEL_LENGTH: "v" * MAX_LABEL_LENGTH}
    labels = validate_labels(given_labels)
    assert labels == given_labels
    assert labels is not given_labels
    assert type(labels) is dict


def test_labels_at_the_count_limit() -> None:
    labels = {f"k{i}": str(i) for i in range(MAX_LABELS)}
    assert validate_labels(labels) == labels
    too_many = {**labels, "one-more": "x"}
    with pytest.raises(ValidationError) as info:
        validate_labels(too_many)
    assert info.value.field == "labels"
    assert str(MAX_LABELS) in info.value.message


@pytest.mark.parametrize("value", [[], ["a=b"], "a=b", 3, True, (("a", "b"),)], ids=repr)
def test_labels_must_be_an_object(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_labels(value, "jobs[0].labels")
    assert info.value.field == "jobs[0].labels"


@pytest.mark.parametrize("key", ["", "k" * (MAX_LABEL_LENGTH + 1), 1, None, ("a",)], ids=repr)
def test_label_keys(key: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_labels({key: "v"})
    assert info.value.field == "labels"
    assert "keys" in info.value.message


@pytest.mark.parametrize(
    "item", ["v" * (MAX_LABEL_LENGTH + 1), 1, None, True, ["v"], {"v": 1}], ids=repr
)
def test_label_values_name_the_label(item: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_labels({"ok": "fine", "team": item})
    assert info.value.field == "labels.team"


NO_NUL = st.characters(exclude_characters="\x00")


@LABELS
@given(
    st.dictionaries(
        st.text(NO_NUL, min_size=1, max_size=MAX_LABEL_LENGTH),
        st.text(NO_NUL, max_size=MAX_LABEL_LENGTH),
        max_size=MAX_LABELS,
    )
)
def test_any_labels_within_limits_pass_unchanged(labels: dict[str, str]) -> None:
    assert validate_labels(labels) == labels


@LABELS
@given(
    st.dictionaries(
        st.text(max_size=MAX_LABEL_LENGTH + 10),
        st.one_of(st.text(max_size=MAX_LABEL_LENGTH + 10), st.none(), st.integers()),
        max_size=MAX_LABELS + 3,
    )
)
def test_labels_accepted_iff_within_limits(labels: dict[str, object]) -> None:
    ok = len(labels) <= MAX_LABELS and all(
        1 <= len(key) <= MAX_LABEL_LENGTH
        and isinstance(item, str)
        and len(item) <= MAX_LABEL_LENGTH
        and "\x00" not in key + item
        for key, item in labels.items()
    )
    if ok:
        assert validate_labels(labels) == labels
    else:
        with pytest.raises(ValidationError):
            validate_labels(labels)


# --- label selectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("team=infra", ("team", "infra")),
        ("team=", ("team", "")),
        ("a=b=c", ("a", "b=c")),
        ("k= v ", ("k", " v ")),
        ("k" * MAX_LABEL_LENGTH + "=" + "v" * MAX_LABEL_LENGTH, ("k" * 256, "v" * 256)),
    ],
)
def test_label_selector(selector: str, expected: tuple[str, str]) -> None:
    assert parse_label_selector(selector) == expected


@pytest.mark.parametrize(
    "selector",
    ["", "team", "=infra", "=", "k" * (MAX_LABEL_LENGTH + 1) + "=v", "k=" + "v" * 257],
)
def test_bad_label_selector(selector: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_label_selector(selector, "--label")
    assert info.value.field == "--label"


@FAST
@given(st.text(min_size=1, max_size=50).filter(lambda key: "=" not in key), st.text(max_size=50))
def test_label_selector_round_trip(key: str, item: str) -> None:
    assert parse_label_selector(f"{key}={item}") == (key, item)


# --- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1, 1.0),
        (0.5, 0.5),
        (3600, 3600.0),
        (MAX_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS),
    ],
)
def test_valid_timeouts(value: object, expected: float | None) -> None:
    result = validate_timeout(value)
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -1,
        -0.001,
        MAX_TIMEOUT_SECONDS + 1,
        math.inf,
        -math.inf,
        math.nan,
        True,
        False,
        "10",
        "10s",
        [10],
    ],
    ids=repr,
)
def test_invalid_timeouts(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_timeout(value, "jobs[1].timeout")
    assert info.value.field == "jobs[1].timeout"


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_timeout_accepts_exactly_the_positive_bounded_range(value: float) -> None:
    if 0 < value <= MAX_TIMEOUT_SECONDS:
        assert validate_timeout(value) == value
    else:
        with pytest.raises(ValidationError):
            validate_timeout(value)


@pytest.mark.parametrize("labels", [{"k\x00": "v"}, {"k": "v\x00w"}])
def test_labels_with_nul_are_refused(labels: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        validate_labels(labels)
