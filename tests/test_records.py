"""The record contract (xlt/records.py): task shapes, text fields, languages, views."""

from __future__ import annotations

import pytest

from xlt.errors import RecordError, UsageError
from xlt.records import (SHAPES, check_id, check_lang, check_text, field_langs, infer_fields, parse_fields,
                         record_lang, src_view, texts, view)

NLI = {"id": "s-000", "lang": "fr", "premise": "Il pleut.", "hypothesis": "Le sol est mouillé.", "label": "entailment"}
PAWS = {"id": "p-000", "lang": "de", "sentence1": "Er kam.", "sentence2": "Er ist gekommen.", "label": 1}
SINGLE = {"id": "t-1", "lang": "en", "text": "great film"}


def test_shapes():
    assert SHAPES == {"nli": ("premise", "hypothesis"), "paraphrase": ("sentence1", "sentence2"), "tagging": ("tokens",),
                      "single": ("text",)}
    assert list(SHAPES) == ["nli", "paraphrase", "tagging", "single"]  # tagging before single: UD records keep `text`


@pytest.mark.parametrize("spec, fields", [
    (None, None),
    ("", None),
    ("  ", None),
    ("nli", ("premise", "hypothesis")),
    (" nli ", ("premise", "hypothesis")),
    ("paraphrase", ("sentence1", "sentence2")),
    ("single", ("text",)),
    ("tagging", ("tokens",)),
    ("premise,hypothesis", ("premise", "hypothesis")),
    (" question , answer ", ("question", "answer")),
    ("review", ("review",)),
    ("a,", ("a",)),
])
def test_parse_fields(spec, fields):
    assert parse_fields(spec) == fields


@pytest.mark.parametrize("spec, message", [
    ("a,b,c", "one or two"),
    ("a,a", "twice"),
    (",", "one or two"),
])
def test_parse_fields_rejects(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_fields(spec)


def test_infer_fields():
    assert infer_fields(NLI) == ("premise", "hypothesis")
    assert infer_fields(PAWS) == ("sentence1", "sentence2")
    assert infer_fields(SINGLE) == ("text",)
    # Pair shapes win over `text` when both are there (a pair record may carry a `text` key).
    assert infer_fields({**NLI, "text": "extra"}) == ("premise", "hypothesis")
    # Half a pair is not a pair.
    assert infer_fields({"premise": "x", "text": "y"}) == ("text",)


def test_infer_fields_fails_with_a_remedy():
    with pytest.raises(RecordError, match="--fields"):
        infer_fields({"id": "1", "premise": "only half"})


def test_check_text_accepts_a_good_record():
    check_text(NLI, ("premise", "hypothesis"))
    check_text(SINGLE, ("text",))


@pytest.mark.parametrize("record, message", [
    ({"premise": "x"}, 'missing field "hypothesis"'),
    ({"premise": "x", "hypothesis": ""}, 'field "hypothesis" is empty'),
    ({"premise": " \t\n", "hypothesis": "y"}, 'field "premise" is empty'),
    ({"premise": 3, "hypothesis": "y"}, 'field "premise" must be a string, got int'),
    ({"premise": None, "hypothesis": "y"}, 'field "premise" must be a string, got NoneType'),
    ({"premise": ["x"], "hypothesis": "y"}, 'field "premise" must be a string, got list'),
])
def test_check_text_rejects(record, message):
    with pytest.raises(RecordError) as err:
        check_text(record, ("premise", "hypothesis"))
    assert str(err.value) == message


def test_check_text_names_the_nested_field():
    with pytest.raises(RecordError, match='missing field "src.hypothesis"'):
        check_text({"premise": "x"}, ("premise", "hypothesis"), where="src.")


def test_check_id():
    assert check_id(NLI) == "s-000"
    assert check_id({"id": 7}) == "7"
    for bad, message in [({}, 'missing field "id"'), ({"id": None}, "must be a string"),
                         ({"id": True}, "must be a string"), ({"id": 1.5}, "must be a string"),
                         ({"id": ["a"]}, "must be a string")]:
        with pytest.raises(RecordError, match=message):
            check_id(bad)


def test_check_lang():
    assert check_lang(NLI) == "fr"
    for bad in [{}, {"lang": ""}, {"lang": "  "}, {"lang": None}, {"lang": 3}]:
        with pytest.raises(RecordError, match="lang"):
            check_lang(bad)


def test_record_lang():
    assert record_lang(NLI) == "fr"
    assert record_lang({"lang": "en-hi", "langs": {"premise": "en", "hypothesis": "hi"}}) == "en-hi"
    assert record_lang({"lang": "en", "langs": {"premise": "en", "hypothesis": "en"}}) == "en"
    assert record_lang({"langs": {}, "lang": "de"}) == "de"
    assert record_lang({"id": "x"}) == "?"


def test_field_langs():
    fields = ("premise", "hypothesis")
    assert field_langs(NLI, fields) == ("fr", "fr")
    cross = {"lang": "en-hi", "langs": {"premise": "en", "hypothesis": "hi"}}
    assert field_langs(cross, fields) == ("en", "hi")
    # A field missing from `langs` falls back to `lang`; a malformed `langs` is ignored.
    assert field_langs({"lang": "de", "langs": {"premise": "en"}}, fields) == ("en", "de")
    assert field_langs({"lang": "de", "langs": "en"}, fields) == ("de", "de")


def test_texts():
    assert texts(NLI, ("premise", "hypothesis")) == ("Il pleut.", "Le sol est mouillé.")
    assert texts(NLI, ("hypothesis",)) == ("Le sol est mouillé.",)


def test_src_view():
    fields = ("premise", "hypothesis")
    src = {"lang": "en", "premise": "It is raining.", "hypothesis": "The ground is wet."}
    record = {**NLI, "src": src}
    assert src_view(record, fields) is src
    with pytest.raises(RecordError, match='missing field "src"'):
        src_view(NLI, fields)
    with pytest.raises(RecordError, match='missing field "src"'):
        src_view({**NLI, "src": "It is raining."}, fields)
    with pytest.raises(RecordError, match='field "src.hypothesis" is empty'):
        src_view({**NLI, "src": {"lang": "en", "premise": "x", "hypothesis": ""}}, fields)


def test_view():
    fields = ("premise", "hypothesis")
    src = {"lang": "en", "premise": "It is raining.", "hypothesis": "The ground is wet."}
    record = {**NLI, "src": src}
    assert view(record, fields, "self") is record
    assert view(record, fields, "src") is src
    assert view(record, fields, "auto") is src
    assert view(NLI, fields, "auto") is NLI
    with pytest.raises(RecordError, match='missing field "src"'):
        view(NLI, fields, "src")
    with pytest.raises(RecordError, match='field "premise" is empty'):
        view({**NLI, "premise": ""}, fields, "self")
