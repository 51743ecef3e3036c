"""``pivotune vocab extend``: argparse registration and handler (registered from pivotune.cli)."""

from __future__ import annotations

import argparse

from ..errors import PivotuneError
from ..languages import CLI_HATCH, add_extra_languages_option, check_code, declared

EPILOG = """examples:
  pivotune vocab extend meta-llama/Llama-2-7b-hf --corpus data/alpaca.th.jsonl --parallel data/en-th.tsv \\
      --lang th --n-new 8000 --out models/llama2-7b-th-vocab
  pivotune vocab extend models/llama3-8b --corpus th_wiki.txt --script Thai --n-new 16000 --out models/llama3-th

Text outside the target script tokenizes exactly as before (checked on a built-in multilingual sample and
the --check files); a corpus too small for --n-new, a tokenizer that cannot be extended safely, or a failed
check stops with a message and writes nothing.
"""


def add_parser(sub) -> None:
    v = sub.add_parser("vocab", help="extend a base model's vocabulary for a target script",
                       description="Vocabulary tools. 'extend' learns target-script tokens from a corpus, adds "
                                   "them to the base tokenizer as new BPE merges, and writes the model with "
                                   "resized embeddings (new rows: the mean of their old pieces' rows).")
    vsub = v.add_subparsers(dest="vocab_command", required=True, metavar="SUBCOMMAND")
    e = vsub.add_parser("extend", help="add target-script tokens to a base model's tokenizer and embeddings",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Learn N target-script tokens from the corpus by continuing the base "
                                    "tokenizer's BPE training on its target-script words (SentencePiece-style "
                                    "and byte-level BPE), append them after every old token and merge, resize "
                                    "the model's input and output embeddings and initialise each new row as the "
                                    "mean of the rows of the old tokens it replaces. Writes OUT as a plain "
                                    "Hugging Face directory (model, tokenizer, vocab_extension.json).")
    e.add_argument("base", help="base model directory or hub name (its tokenizer must be a fast BPE tokenizer)")
    e.add_argument("--corpus", nargs="+", default=[], metavar="FILE",
                   help="target-language text: .txt (one text a line) or instruction files (Alpaca or chat "
                        ".json/.jsonl/.parquet/.csv)")
    e.add_argument("--parallel", nargs="+", default=[], metavar="FILE",
                   help="parallel corpora whose target side is used (.tsv, or .jsonl/.json/.parquet/.csv with "
                        "source/target)")
    e.add_argument("--n-new", type=int, required=True, metavar="N", help="number of tokens to add")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--lang", help="target language code (gives the script: th -> Thai, hi -> Devanagari)")
    e.add_argument("--script", nargs="+", metavar="CODE",
                   help="target Unicode scripts as ISO 15924 codes (Thai, Grek, Arab, Deva, ...); default: from "
                        "--lang, else the corpus's most frequent script")
    e.add_argument("--check", nargs="+", default=[], metavar="FILE",
                   help="more text that must tokenize as before where it has no target-script character "
                        "(same formats as --corpus)")
    e.add_argument("--min-frequency", type=int, default=2,
                   help="fewest occurrences of a pair (or character) to become a token (default 2)")
    e.add_argument("--tokenizer-only", action="store_true", help="write the extended tokenizer only, no model")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="load and write the model in this dtype (default: as saved)")
    e.add_argument("--skip-invalid", action="store_true", help="drop invalid data rows and report them")
    e.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_extra_languages_option(e)
    e.set_defaults(func=run_extend)


def run_extend(args) -> int:
    from .corpus import read_parallel_targets, read_texts
    from .save import write_extended
    from .scripts import language_scripts

    if not args.corpus and not args.parallel:
        raise PivotuneError("Give the target-language text to learn from: --corpus FILE (plain text or "
                            "instructions) and/or --parallel FILE (target side).")
    if args.min_frequency < 1:
        raise PivotuneError(f"--min-frequency must be at least 1, got {args.min_frequency}.")
    lang = ""
    if args.lang:
        lang = check_code(args.lang, "--lang", extra=declared(args.extra_languages, "--extra-languages"),
                          hatch=CLI_HATCH)
    scripts = args.script or (language_scripts(lang) if lang else None)
    texts = [t for f in args.corpus for t in read_texts(f, lang=lang, skip_invalid=args.skip_invalid)]
    texts += [t for f in args.parallel for t in read_parallel_targets(f, lang=lang, skip_invalid=args.skip_invalid)]
    checks = [t for f in args.check for t in read_texts(f, skip_invalid=args.skip_invalid)]
    done = write_extended(args.base, texts, args.n_new, args.out, scripts=scripts, check_texts=checks,
                          min_frequency=args.min_frequency, tokenizer_only=args.tokenizer_only, force=args.force,
                          dtype=args.dtype)
    ext, (before, after) = done.extension, done.tokens_per_word
    chars = f" ({ext.characters} of them single characters)" if ext.characters else ""
    whole = "; its split pattern now keeps the script's combining marks inside words" if ext.words_kept_whole else ""
    print(f"added {len(ext.new_tokens)} {'+'.join(ext.scripts)}-script tokens{chars} to the tokenizer "
          f"({ext.kind}), ids {ext.new_ids[0]}-{ext.new_ids[-1]}{whole}")
    print(f"tokens per word on the corpus: {before:.2f} -> {after:.2f} ({1 - after / before:.0%} fewer); "
          f"{ext.checked} check texts outside the target script tokenize as before")
    what = "tokenizer" if done.num_rows is None else f"model ({done.num_rows} embedding rows) and tokenizer"
    print(f"wrote the {what} to {done.out_dir}")
    return 0
