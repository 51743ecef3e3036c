"""``pivotune translate``: argparse registration and handler (registered from pivotune.cli)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from ..errors import PivotuneError
from ..languages import CLI_HATCH, add_extra_languages_option, check_code, declared

EPILOG = """examples:
  pivotune translate alpaca_data.json --to th sw --model facebook/nllb-200-distilled-600M --out-dir data/mt
  pivotune translate alpaca_data.json --to th --model Helsinki-NLP/opus-mt-en-mul --engine ctranslate2 --out-dir data/mt
  pivotune translate alpaca.jsonl --to th --engine pretranslated --pretranslated th=alpaca_th_api.jsonl --out-dir data/mt
  pivotune translate toy/instructions.jsonl --to el --engine toy --out-dir data/toy

A killed run resumes from its cache (OUT_DIR/.translate-cache.sqlite by default); a rerun translates nothing again.
"""


def add_parser(sub) -> None:
    t = sub.add_parser("translate", help="machine-translate instruction data into target languages (resumable)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Translate an Alpaca or chat instruction file (.json/.jsonl) from English into "
                                   "each target language with a local seq2seq MT model (NLLB-200, M2M-100, "
                                   "mBART-50, Marian/OPUS-MT), sentence by sentence, batched by length, with code, "
                                   "URLs and numbers kept verbatim. Writes OUT_DIR/<name>.<lang>.jsonl with the "
                                   "same ids and fields.")
    t.add_argument("input", help="instruction file (.json array or JSON Lines, .jsonl)")
    t.add_argument("--to", nargs="+", required=True, metavar="LANG",
                   help="target language codes (ISO 639-1 such as th sw, a FLORES-200 code such as tha_Thai)")
    t.add_argument("--from", dest="src", default="en", metavar="LANG", help="source language (default en)")
    t.add_argument("--out-dir", required=True, help="output directory: new, empty or an earlier translation's")
    t.add_argument("--force", action="store_true",
                   help="write into --out-dir (and convert into --ct2-dir) even if it holds other files")
    t.add_argument("--engine", choices=["hf", "ctranslate2", "pretranslated", "toy"], default="hf",
                   help="hf: transformers generate (default); ctranslate2: the same model via CTranslate2; "
                        "pretranslated: join translations made elsewhere by id; toy: the toy world's lexicon")
    t.add_argument("--model", help="MT model directory or hub name (engines hf and ctranslate2)")
    t.add_argument("--pretranslated", nargs="+", metavar="LANG=FILE", help="translated file per language")
    t.add_argument("--toy-seed", type=int, default=0, help="toy world seed (engine toy; default 0)")
    t.add_argument("--id-field", default="id", help="record id field (default id)")
    t.add_argument("--cache", help="SQLite translation cache (default OUT_DIR/.translate-cache.sqlite)")
    t.add_argument("--batch-size", type=int, default=16, help="sentences per model call (default 16)")
    t.add_argument("--num-beams", type=int, default=1, help="beam size (default 1, greedy)")
    t.add_argument("--max-new-tokens", type=int, default=256, help="longest translation in tokens (default 256)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    t.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights dtype for engine hf (default float32)")
    t.add_argument("--ct2-dir", help="where the CTranslate2 conversion is kept (default ~/.cache/pivotune/ct2/…)")
    t.add_argument("--skip-invalid", action="store_true", help="drop invalid rows and report them")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_extra_languages_option(t)
    t.set_defaults(func=run)


def _pairs(items: list[str], extra: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not path:
            raise PivotuneError(f"--pretranslated expects LANG=FILE items, got '{item}'.")
        out[check_code(lang, f"--pretranslated {item!r}", extra=extra, hatch=CLI_HATCH)] = path
    return out


def _languages(args) -> tuple[str, list[str], list[str]]:
    """(source, targets, declared codes), each checked as a language code before anything is read."""
    extra = declared(args.extra_languages, "--extra-languages")
    src = check_code(args.src, "--from", extra=extra, hatch=CLI_HATCH)
    return src, [check_code(lang, "--to", extra=extra, hatch=CLI_HATCH) for lang in args.to], extra


def build_translator(args, extra: Iterable[str] = ()):
    if args.batch_size < 1 or args.num_beams < 1 or args.max_new_tokens < 1:
        raise PivotuneError("--batch-size, --num-beams and --max-new-tokens must be at least 1.")
    if args.engine == "toy":
        from .backends import ToyLexiconTranslator

        return ToyLexiconTranslator(args.toy_seed)
    if args.engine == "pretranslated":
        from .backends import PretranslatedTranslator

        if not args.pretranslated:
            raise PivotuneError("--engine pretranslated needs --pretranslated LANG=FILE (one per target language).")
        return PretranslatedTranslator(_pairs(args.pretranslated, list(extra)), id_field=args.id_field)
    if not args.model:
        raise PivotuneError(f"--engine {args.engine} needs --model (an MT model directory or hub name).")
    if args.engine == "ctranslate2":
        from .seq2seq import CTranslate2Translator

        return CTranslate2Translator(args.model, ct2_dir=args.ct2_dir, device=args.device, batch_size=args.batch_size,
                                     num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                                     force=args.force)
    from .seq2seq import HFSeq2SeqTranslator

    return HFSeq2SeqTranslator(args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                               num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)


def run(args) -> int:
    from .pipeline import read_records, translate_file

    src, targets, extra = _languages(args)
    if args.engine in ("hf", "ctranslate2"):          # bad rows fail before a model loads
        read_records(args.input, id_field=args.id_field, skip_invalid=args.skip_invalid)
    translator = build_translator(args, extra)
    result = translate_file(args.input, Path(args.out_dir), targets, translator, src=src,
                            cache_path=args.cache, id_field=args.id_field, skip_invalid=args.skip_invalid,
                            progress=not args.no_progress, force=args.force)
    skipped = f", {len(result.skipped)} invalid rows skipped" if result.skipped else ""
    print(f"translated {result.records} records{skipped}: {result.translated} texts translated, "
          f"{result.from_cache} from the cache")
    for lang, path in result.outputs.items():
        print(f"  {lang}: {path}")
    return 0
