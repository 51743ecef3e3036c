"""Readers for the parallel sets the PROM paper's translation task uses, and their ``mt`` samples.

- FLORES-200: one file per language and split, ``ROOT/dev/tha_Thai.dev`` and
  ``ROOT/devtest/tha_Thai.devtest``, line N of each translating line N of English.
- NTREX-128: ``ROOT/newstest2019-src.eng.txt`` and one ``newstest2019-ref.<code>.txt``
  per language (``tha``, ``arb``, ``zho-CN``).
- WMT: a plain line-aligned pair, a pair of SGML files (``<seg id="1">``), or the
  single XML file of WMT22+ (source and reference segments in one document).
- Anything else: TSV / JSONL / two plain files via :func:`pivotune.data.load.load_parallel`.

Every reader returns a :class:`~pivotune.data.load.LoadResult` of
:class:`~pivotune.data.records.ParallelPair`; mismatched line or segment counts
and empty sentences are errors naming the file and line (or document and segment).
:func:`mt_samples` turns pairs into the x-LLaMA-style translation-task samples.
"""

from __future__ import annotations

import difflib
import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DataError
from .load import LoadResult, load_parallel
from .mixture import translation_samples
from .readers import read_bytes
from .records import ParallelPair, Sample

FLORES_SPLITS = ("dev", "devtest")


def _flores_code(lang: str) -> str:
    """The corpus file code of ``lang`` (``tha_Thai`` for ``th``; a code the table lacks as given)."""
    from ..languages import FLORES_CODES, check_syntax

    return FLORES_CODES.get(lang, check_syntax(lang, "language"))


def _missing(path: Path, what: str, pattern: str) -> DataError:
    near = sorted(p.name for p in path.parent.glob(pattern)) if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, near, n=5, cutoff=0.5) or near[:5]
    hint = f" Files there that look close: {', '.join(close)}." if close else ""
    return DataError(f"{what}: {path} does not exist.{hint} Check the corpus root and the language code "
                     "(an ISO 639-1 code such as 'th' or the corpus's own code).", path=str(path))


def read_flores(root: str | Path, lang: str, *, split: str = "dev", src_lang: str = "en",
                skip_invalid: bool = False) -> LoadResult:
    """FLORES-200 sentences of ``split`` as (``src_lang``, ``lang``) pairs."""
    if split not in FLORES_SPLITS:
        raise DataError(f"FLORES-200 split must be one of {', '.join(FLORES_SPLITS)}, got '{split}'.")
    root = Path(root)
    files = [root / split / f"{_flores_code(code)}.{split}" for code in (src_lang, lang)]
    for f in files:
        if not f.is_file():
            raise _missing(f, "FLORES-200", f"*.{split}")
    return load_parallel(files[0], files[1], src_lang=src_lang, tgt_lang=lang, skip_invalid=skip_invalid)


def _ntrex_file(root: Path, lang: str, kind: str) -> Path:
    stem = f"newstest2019-{kind}"
    code = _flores_code(lang)
    for c in dict.fromkeys((lang, code.split("_")[0], code.replace("_", "-"))):
        if (root / f"{stem}.{c}.txt").is_file():
            return root / f"{stem}.{c}.txt"
    variants = sorted(root.glob(f"{stem}.{code.split('_')[0]}-*.txt"))
    if len(variants) == 1:
        return variants[0]
    if variants:
        names = ", ".join(v.name.split(".")[1] for v in variants)
        raise DataError(f"NTREX-128 has several variants of '{lang}' in {root}: {names}; pass the one you want "
                        "as the language code exactly.", path=str(root))
    raise _missing(root / f"{stem}.{code.split('_')[0]}.txt", "NTREX-128", "newstest2019-*.txt")


def read_ntrex(root: str | Path, lang: str, *, src_lang: str = "en", skip_invalid: bool = False) -> LoadResult:
    """NTREX-128 (English news source, one reference file per language) as (``src_lang``, ``lang``) pairs."""
    root = Path(root)
    src = root / "newstest2019-src.eng.txt"
    if src_lang != "en" or not src.is_file():
        src = _ntrex_file(root, src_lang, "ref" if src_lang != "en" else "src")
    return load_parallel(src, _ntrex_file(root, lang, "ref"), src_lang=src_lang, tgt_lang=lang,
                         skip_invalid=skip_invalid)


_SGML_DOC = re.compile(r"<doc\b[^>]*?docid=\"?([^\">\s]+)\"?[^>]*>(.*?)</doc>", re.S | re.I)
_SGML_SEG = re.compile(r"<seg\b[^>]*?id=\"?([^\">\s]+)\"?[^>]*>(.*?)</seg>", re.S | re.I)


def _sgml_segments(path: Path) -> dict[tuple[str, str], tuple[str, int | None]]:
    """(doc id, seg id) -> (text, line number) of an SGML file; segments outside a <doc> get doc id ''."""
    try:
        text = read_bytes(path, str(path)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: bytes are not valid UTF-8 (at byte {exc.start}); re-save the file as UTF-8.",
                        path=str(path)) from None
    segs: dict[tuple[str, str], tuple[str, int]] = {}
    docs = [(m.group(1), m.start(2), m.group(2)) for m in _SGML_DOC.finditer(text)] or [("", 0, text)]
    for doc, offset, body in docs:
        for m in _SGML_SEG.finditer(body):
            line = text.count("\n", 0, offset + m.start()) + 1
            segs[(doc, m.group(1))] = (html.unescape(m.group(2)).strip(), line)
    if not segs:
        raise DataError(f"{path}: no <seg id=...>...</seg> segments found; is this a WMT SGML file?", path=str(path))
    return segs


def _pairs_checked(left: dict, right: dict, shown: tuple[str, str], src_lang: str, tgt_lang: str,
                   skip_invalid: bool) -> LoadResult:
    """Pairs joined by (doc, seg) key; a key on one side only, or an empty side, is an error naming both."""
    only = [k for k in left if k not in right] + [k for k in right if k not in left]
    if only:
        doc, seg = only[0]
        side = shown[1] if only[0] in left else shown[0]
        raise DataError(f"{shown[0]} and {shown[1]} are not aligned: {len(left)} vs {len(right)} segments; document "
                        f"'{doc}' segment {seg} is missing from {side} ({len(only)} segments unmatched). Use the "
                        "source and reference files of the same test set.", path=shown[0])
    pairs, skipped = [], []
    for key, (src_text, line) in left.items():
        tgt_text, tline = right[key]
        for text, where, ln in ((src_text, shown[0], line), (tgt_text, shown[1], tline)):
            if not text:
                at = f", line {ln}" if ln is not None else ""
                msg = f"{where}{at} (document '{key[0]}', segment {key[1]}): empty segment"
                if not skip_invalid:
                    raise DataError(f"{msg}; every segment needs text (or pass --skip-invalid to drop such pairs).",
                                    path=where, row=ln)
                skipped.append(msg)
        if src_text and tgt_text:
            at = f"line {line}" if line is not None else f"document '{key[0]}', segment {key[1]}"
            pairs.append(ParallelPair(src_text, tgt_text, src_lang, tgt_lang, f"{shown[0]}, {at}"))
    return LoadResult(records=pairs, skipped=skipped, path=shown[0], total=len(left))


def _xml_segments(root: ET.Element, tag: str, lang: str | None) -> dict[tuple[str, str], tuple[str, None]]:
    segs = {}
    for doc in root.iter("doc"):
        sides = [s for s in doc.findall(tag) if lang is None or s.get("lang") in (None, lang)]
        for seg in (sides[0].iter("seg") if sides else ()):
            segs[(doc.get("id", ""), seg.get("id", ""))] = ((seg.text or "").strip(), None)
    return segs


def read_wmt(source: str | Path, reference: str | Path | None = None, *, src_lang: str = "en", tgt_lang: str,
             skip_invalid: bool = False) -> LoadResult:
    """A WMT test or dev set: plain or SGML source/reference pair, or one WMT22+ XML file (``reference`` None)."""
    source = Path(source)
    if reference is None:
        if source.suffix.lower() != ".xml":
            raise DataError(f"{source}: only a WMT22+ .xml file holds source and reference together; for plain or "
                            ".sgm files pass the reference file too.", path=str(source))
        try:
            root = ET.fromstring(read_bytes(source, str(source)))
        except ET.ParseError as exc:
            raise DataError(f"{source}: not well-formed XML ({exc}).", path=str(source)) from None
        src, ref = _xml_segments(root, "src", src_lang), _xml_segments(root, "ref", tgt_lang)
        if not ref:
            raise DataError(f"{source}: no <ref lang=\"{tgt_lang}\"> reference translations in this file.",
                            path=str(source))
        return _pairs_checked(src, ref, (f"{source} <src>", f"{source} <ref>"), src_lang, tgt_lang, skip_invalid)
    reference = Path(reference)
    if source.suffix.lower() in (".sgm", ".sgml"):
        return _pairs_checked(_sgml_segments(source), _sgml_segments(reference), (str(source), str(reference)),
                              src_lang, tgt_lang, skip_invalid)
    return load_parallel(source, reference, src_lang=src_lang, tgt_lang=tgt_lang, skip_invalid=skip_invalid)


def mt_samples(pairs: LoadResult | list[ParallelPair], tgt_lang: str, *, source: str = "parallel",
               weight: float = 1.0, instructions: list[str] | None = None) -> list[Sample]:
    """English→target translation-task samples (role ``mt``) with the instruction pool of METHODS.md."""
    return translation_samples(list(pairs), tgt_lang, source=source, weight=weight, instructions=instructions)
