"""Sentence splitting and protected spans: pieces always rejoin to the exact field."""

from __future__ import annotations

from pivotune.translate.protect import plan, plan_around_spans, rejoin, sentences, spans_kept, to_translate

FIELD = ("Write a function.\n\n```python\nprint(1)\n```\nSee https://x.org/a.b for it. Dr. Smith paid $3.50 "
         "for 2 apples. Then he left!\n1. First item here.\n- second `code` item\n42")


def test_plan_rejoins_exactly_and_keeps_code_markers_and_letterless_text():
    pieces = plan(FIELD)
    assert "".join(t for t, _ in pieces) == FIELD
    assert to_translate(pieces) == ["Write a function.", "See https://x.org/a.b for it.",
                                    "Dr. Smith paid $3.50 for 2 apples.", "Then he left!", "First item here.",
                                    "second `code` item"]
    kept = "".join(t for t, tr in pieces if not tr)
    assert "```python\nprint(1)\n```" in kept and "\n1. " in kept and "\n- " in kept and kept.endswith("\n42")


def test_rejoin_with_identity_and_uppercase_translations():
    pieces = plan(FIELD)
    assert rejoin(pieces, {t: t for t in to_translate(pieces)}) == FIELD
    upper = rejoin(pieces, {t: t.upper() for t in to_translate(pieces)})
    assert "```python\nprint(1)\n```" in upper and "THEN HE LEFT!" in upper


def test_sentences_do_not_break_at_urls_or_decimals():
    line = "Pay 3.50 at www.shop.example.com/a.b today. Then go."
    assert sentences(line) == ["Pay 3.50 at www.shop.example.com/a.b today. ", "Then go."]
    assert "".join(sentences("  odd  ")) == "  odd  "


def test_spans_kept_and_cutting_around_them():
    src = "He has 3 cats at https://a.org/x and `ls -l`."
    assert spans_kept(src, "Er hat 3 Katzen bei https://a.org/x und `ls -l`.")
    assert not spans_kept(src, "Er hat drei Katzen bei https://a.org/x und `ls -l`.")
    pieces = plan_around_spans(src)
    assert "".join(t for t, _ in pieces) == src
    assert to_translate(pieces) == ["He has", "cats at", "and"]
    out = rejoin(pieces, {t: "X" for t in to_translate(pieces)})
    assert spans_kept(src, out)
