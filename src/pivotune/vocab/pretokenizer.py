r"""Keep target-script words whole before BPE: a byte-level split pattern's letters, widened by the target's marks.

Byte-level tokenizers cut text into words with a regular expression before BPE: GPT-2's built-in
``' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|…'``, Llama-3's and Qwen's ``[^\r\n\p{L}\p{N}]?\p{L}+|…``. A vowel
sign or virama (Unicode category M: Thai ``ิ``, Devanagari ``ि``) is no letter there, so a Thai or Hindi
word falls into several pieces, and no merge can cross a piece boundary: the extension could never
give such a word fewer tokens than it has pieces. :func:`keep_words_whole` adds the target script's
combining marks to every ``\p{L}`` of the pattern (and drops them from the negated classes that
contain ``\p{L}``). A character's class membership changes only for those marks, so text without
them is split exactly as before: English and every other script keep their pieces, hence their tokens.
"""

from __future__ import annotations

import copy

#: The pattern tokenizers' ByteLevel pre-tokenizer applies with ``use_regex=True`` (GPT-2's).
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LETTER = r"\p{L}"


def widen_letters(pattern: str, extra: str) -> str:
    r"""``pattern`` with the character-class text ``extra`` added to every ``\p{L}`` (inside a bracket
    class, or made one)."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        if pattern.startswith(_LETTER, i):
            out.append(_LETTER + extra if depth else f"[{_LETTER}{extra}]")
            i += len(_LETTER)
            continue
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
        out.append(ch)
        i += 1
    return "".join(out)


def keep_words_whole(data: dict, marks: str) -> dict | None:
    r"""``data`` (a tokenizer.json) whose split pattern counts ``marks`` (character-class text such as
    ``\x{0E34}\x{0E35}``) as letters; None when there is nothing to widen (no marks, or no pattern with
    ``\p{L}``: SentencePiece-style tokenizers split at spaces only).

    A ByteLevel pre-tokenizer with its built-in pattern becomes the same pattern as a Split followed by
    ByteLevel without one; its ``add_prefix_space`` moves into the normalizer (a space before the text
    unless it starts with one: ByteLevel adds it once per stretch of text between added tokens, and the
    normalizer runs once per such stretch).
    """
    if not marks:
        return None
    data = copy.deepcopy(data)
    pre = data.get("pre_tokenizer")
    if pre is None:
        return None
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        split = {"type": "Split", "pattern": {"Regex": widen_letters(GPT2_SPLIT, marks)}, "behavior": "Isolated",
                 "invert": False}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            split, {**pre, "add_prefix_space": False, "use_regex": False}]}
        if pre.get("add_prefix_space"):
            # a space before the text, then two leading spaces made one: a space unless the text had one
            space = [{"type": "Prepend", "prepend": " "},
                     {"type": "Replace", "pattern": {"Regex": r"\A  "}, "content": " "}]
            old = data.get("normalizer")
            data["normalizer"] = {"type": "Sequence", "normalizers": ([] if old is None else [old]) + space}
        return data
    splits = [pre] if pre.get("type") == "Split" else [
        p for p in pre.get("pretokenizers") or () if p.get("type") == "Split"] if pre.get("type") == "Sequence" else []
    widened = False
    for split in splits:
        pattern = split.get("pattern", {}).get("Regex")
        if pattern and _LETTER in pattern:
            split["pattern"] = {"Regex": widen_letters(pattern, marks)}
            widened = True
    return data if widened else None
