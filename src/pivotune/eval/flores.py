"""FLORES-200 / FLORES+ translation as harness tasks of our own, read from local files, scored with
chrF++ and BLEU through sacrebleu.

Task names: ``pivotune_flores_SRC-TGT`` (``pivotune_flores_en-th``, ``pivotune_flores_th-en``; codes as
elsewhere, or the corpus's own ``tha_Thai``), and ``pivotune_toy_flores_SRC-TGT`` for the toy world's
toy-FLORES (:func:`pivotune.toy.flores.toy_flores_root`). ``pivotune eval --flores-dir DIR``
reads, for each language, the first of these that exists (one layout for both sides)::

    DIR/SPLIT/tha_Thai.SPLIT     FLORES-200 (one sentence per line)
    DIR/SPLIT/tha_Thai           FLORES+ text release (one sentence per line)
    DIR/SPLIT/tha_Thai.parquet   FLORES+ on the hub (column ``text``, rows aligned by ``id``)

with SPLIT ``devtest`` by default (``--flores-split dev``). Line N of one language translates line N
of the other. The prompt is pivotune's training format for the translation task: the Alpaca prompt
with the first instruction of the translation pool (the toy world's own instruction for toy-FLORES)
and the source sentence as input; greedy generation until a newline.

Scores (sacrebleu, corpus level, 0-100): chrF++ (``CHRF(word_order=2)``, tokenisation-free, the
headline for every language) and BLEU with sacrebleu's ``13a`` tokeniser, except for targets written
without spaces between words, which get ``zh`` (Chinese) or ``char`` (Japanese, Thai, Lao, Khmer,
Burmese); toy languages always use ``13a`` (their words are spaced). The tokeniser is named in each
row (``bleu_tokenize``). spBLEU (``-tok flores200``) needs a SentencePiece model from the network, so
it is not computed. COMET: see :func:`comet_files`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..data.parallel import FLORES_SPLITS, _missing
from ..errors import DataError, PivotuneError, located
from ..io import child_path, write_jsonl_atomic, write_text_atomic
from ..languages import CLI_HATCH, FLORES_CODES, check_code, english_name, iso639_1
from .registry import TASKS_DIR

DEFAULT_SPLIT = "devtest"
TOY_MAX_GEN_TOKS = 32      # a toy fact's translation, inside the small toy model's 128 positions
_CODE = r"[A-Za-z_]+"   # any code-like text: a bad code then gets its own clear error
_NAME = re.compile(rf"pivotune_(toy_)?flores_({_CODE})-({_CODE})")
_NO_SPACES = {"ja": "char", "th": "char", "lo": "char", "km": "char", "my": "char", "zh": "zh"}
HOW_TO_GET = ("FLORES+ is on the Hugging Face hub (`huggingface-cli download openlanguagedata/flores_plus "
              "--repo-type dataset --local-dir flores_plus`, after accepting its terms); FLORES-200's "
              "flores200_dataset.tar.gz unpacks to the same layout. Pass the directory with --flores-dir.")


@dataclass(frozen=True)
class Direction:
    src: str
    tgt: str
    toy: bool = False


def task_name(src: str, tgt: str, toy: bool = False) -> str:
    return f"pivotune_{'toy_' if toy else ''}flores_{src}-{tgt}"


def direction(task: str) -> Direction | None:
    """``Direction(src, tgt, toy)`` of a FLORES task name; None for any other name."""
    m = _NAME.fullmatch(task)
    return Direction(m.group(2), m.group(3), m.group(1) is not None) if m else None


def corpus_code(lang: str, where: str = "") -> str:
    """The FLORES-200 file code of ``lang`` (``tha_Thai`` for ``th``; a ``xxx_Xxxx`` code as given)."""
    if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", lang):
        return lang
    check_code(lang, where, hatch=CLI_HATCH)
    code = FLORES_CODES.get(iso639_1(lang))
    if code is None:
        raise PivotuneError(f"{where + ': ' if where else ''}pivotune's table has no FLORES-200 code for "
                            f"'{lang}'; name the corpus's code in the task instead (pivotune_flores_en-xxx_Latn).")
    return code


def find_file(root: str | Path, split: str, lang: str) -> Path:
    """The file holding ``lang``'s sentences of ``split`` under a FLORES root (see the module docstring)."""
    if split not in FLORES_SPLITS:
        raise PivotuneError(f"FLORES split must be one of {', '.join(FLORES_SPLITS)}, got '{split}'.")
    root = Path(root)
    if not root.is_dir():
        raise PivotuneError(f"FLORES directory {root} does not exist. {HOW_TO_GET}")
    code = corpus_code(lang, "FLORES")
    candidates = [root / split / f"{code}.{split}", root / split / code, root / split / f"{code}.parquet"]
    for path in candidates:
        if path.is_file():
            return path
    err = _missing(candidates[0], "FLORES", "*")
    raise DataError(f"{err} Also looked for {candidates[1]} and {candidates[2]} (FLORES+). {HOW_TO_GET}",
                    path=str(candidates[0]))


def _parquet_sentences(path: Path) -> dict[str, str]:
    """``{id: text}`` of a FLORES+ parquet file, in file order."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:   # pyarrow's errors are of several types
        raise DataError(f"{path}: cannot read as parquet ({type(e).__name__}: {e}).", path=str(path)) from None
    if "text" not in table.column_names:
        raise DataError(f"{path}: no 'text' column (FLORES+ parquet files have id, text, ...; this one has "
                        f"{', '.join(table.column_names)}).", path=str(path))
    texts = table.column("text").to_pylist()
    ids = table.column("id").to_pylist() if "id" in table.column_names else range(len(texts))
    out = {}
    for row, (i, text) in enumerate(zip(ids, texts), 1):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{located(str(path), row, 'text')}: empty sentence.", path=str(path), row=row,
                            field="text")
        out[str(i)] = text.strip()
    return out


def read_pairs(root: str | Path, src: str, tgt: str, split: str = DEFAULT_SPLIT,
               limit: int | None = None) -> list[tuple[str, str]]:
    """``(source, reference)`` sentence pairs of ``split``, line-aligned (clear errors naming the files)."""
    from ..data.load import load_parallel

    f_src, f_tgt = find_file(root, split, src), find_file(root, split, tgt)
    if (f_src.suffix == ".parquet") != (f_tgt.suffix == ".parquet"):
        raise DataError(f"FLORES files of two layouts: {f_src} and {f_tgt}; use one release for both "
                        "languages.", path=str(f_tgt))
    if f_src.suffix == ".parquet":
        left, right = _parquet_sentences(f_src), _parquet_sentences(f_tgt)
        if left.keys() != right.keys():
            raise DataError(f"FLORES files are not aligned: {f_src} has {len(left)} rows but {f_tgt} has "
                            f"{len(right)}, or their 'id's differ; both must hold the same sentences.",
                            path=str(f_tgt))
        pairs = [(left[i], right[i]) for i in left]
    else:
        pairs = [(p.source, p.target) for p in load_parallel(f_src, f_tgt, src_lang=src, tgt_lang=tgt)]
    return pairs[:limit] if limit else pairs


def bleu_tokenize(lang: str, toy: bool = False) -> str:
    return "13a" if toy else _NO_SPACES.get(iso639_1(lang), "13a")


def instruction(d: Direction) -> str:
    if d.toy:
        from ..toy.flores import toy_instruction

        return toy_instruction(d.src, d.tgt)
    from ..data.mixture import MT_INSTRUCTIONS

    return MT_INSTRUCTIONS[0].replace("{src}", english_name(d.src)).replace("{tgt}", english_name(d.tgt))


def write_tasks(names: list[str], out_dir: str | Path, *, flores_dir: str | Path | None = None,
                toy_world: str | Path | None = None, split: str = DEFAULT_SPLIT,
                limit: int | None = None) -> list[str]:
    """Write the task file and data of every FLORES task among ``names`` under ``out_dir``."""
    written, toy_root = [], None
    for name in names:
        d = direction(name)
        if d is None:
            continue
        if d.src == d.tgt:
            raise PivotuneError(f"{name}: source and target are the same language.")
        if d.toy:
            if toy_world is None:
                raise PivotuneError(f"{name} needs --toy-world DIR (a toy world's directory).")
            from ..toy.flores import toy_flores_root

            root = toy_root = toy_root or toy_flores_root(toy_world, out_dir)
        elif flores_dir is None:
            raise PivotuneError(f"{name} reads local FLORES files: pass --flores-dir DIR. {HOW_TO_GET}")
        else:
            root = Path(flores_dir)
        prompt, tok = instruction(d), bleu_tokenize(d.tgt, d.toy)
        rows = [{"id": str(i), "instruction": prompt, "source": s, "target": t, "src_lang": d.src,
                 "tgt_lang": d.tgt, "bleu_tokenize": tok}
                for i, (s, t) in enumerate(read_pairs(root, d.src, d.tgt, split, limit))]
        data = child_path(out_dir, f"{name}.jsonl")
        write_jsonl_atomic(data, rows)
        cfg = {"include": str(TASKS_DIR / "flores" / "pivotune_flores_common_yaml"), "task": name,
               "dataset_kwargs": {"data_files": {"test": str(data.resolve())}}}
        if d.toy:
            cfg["generation_kwargs"] = {"until": ["\n"], "do_sample": False, "max_gen_toks": TOY_MAX_GEN_TOKS}
        write_text_atomic(child_path(out_dir, f"{name}.yaml"), yaml.safe_dump(cfg, sort_keys=False))
        written.append(name)
    return written


# -- the functions the task file calls ---------------------------------------------------------------

def doc_to_text(doc: dict) -> str:
    from ..data.templates import alpaca_prompt

    return alpaca_prompt(doc["instruction"], doc["source"])


def process_results(doc: dict, results: list[str]) -> dict[str, tuple]:
    """Per sentence: (reference, hypothesis[, BLEU tokeniser]) for the corpus-level aggregations; the
    hypothesis is one line, whitespace runs made one space (as a line of a sacrebleu file)."""
    hyp = " ".join(results[0].split())
    return {"chrf++": (doc["target"], hyp), "bleu": (doc["target"], hyp, doc["bleu_tokenize"])}


def chrf_pp(items: list[tuple]) -> float:
    """Corpus chrF++ (sacrebleu ``CHRF(word_order=2)``) of ``(reference, hypothesis)`` items."""
    from sacrebleu.metrics import CHRF

    refs, hyps = [i[0] for i in items], [i[1] for i in items]
    return CHRF(word_order=2).corpus_score(hyps, [refs]).score


def bleu(items: list[tuple]) -> float:
    """Corpus BLEU (sacrebleu defaults, the items' tokeniser) of ``(reference, hypothesis, tokenize)`` items."""
    from sacrebleu.metrics import BLEU

    refs, hyps = [i[0] for i in items], [i[1] for i in items]
    return BLEU(tokenize=items[0][2] if items else "13a").corpus_score(hyps, [refs]).score


# -- COMET and tables ---------------------------------------------------------------------------------

def comet_files(samples_jsonl: str | Path, out_dir: str | Path) -> list[Path]:
    """``src.txt``, ``mt.txt`` and ``ref.txt`` from a FLORES task's logged samples (``pivotune eval`` writes
    them to ``OUT/samples/TASK.jsonl``), for COMET, which pivotune does not run itself::

        pip install unbabel-comet
        huggingface-cli download Unbabel/wmt22-comet-da --local-dir wmt22-comet-da
        comet-score -s src.txt -t mt.txt -r ref.txt --model wmt22-comet-da/checkpoints/model.ckpt
    """
    rows, seen = [], set()
    path = Path(samples_jsonl)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key, doc, hyp = row["doc_id"], row["doc"], row["resps"][0][0]
            src, ref = doc["source"], doc["target"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise DataError(f"{located(str(path), i)}: not a logged sample of a FLORES task ({e}).",
                            path=str(path), row=i) from None
        if key not in seen:
            seen.add(key)
            rows.append((src, " ".join(str(hyp).split()), ref))
    out = [Path(out_dir) / n for n in ("src.txt", "mt.txt", "ref.txt")]
    for p, k in zip(out, range(3)):
        write_text_atomic(p, "".join(r[k] + "\n" for r in rows))
    return out


def translation_table(runs: dict[str, dict]):
    """``compare.Table`` of chrF++ and BLEU per FLORES direction, one row per run (None: no FLORES task)."""
    from .compare import Table

    tasks = sorted({t for res in runs.values() for t in res["results"] if direction(t)},
                   key=lambda t: (direction(t).toy, direction(t).src != "en", t))
    if not tasks:
        return None
    label = {t: f"{'toy-' if direction(t).toy else ''}{direction(t).src}→{direction(t).tgt}" for t in tasks}
    header = ["run"] + [f"{label[t]} {m}" for t in tasks for m in ("chrF++", "BLEU")]
    rows = [[name, *[res["results"].get(t, {}).get(k) for t in tasks for k in ("chrf++,none", "bleu,none")]]
            for name, res in runs.items()]
    return Table("Table 5: translation, chrF++ / BLEU (FLORES)", header, rows)
