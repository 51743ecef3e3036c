"""The toy world's data products: pretraining text, instructions, parallel data, probes, eval sets.

``build_world(cfg, out_dir)`` is a pure function of ``cfg``: the same config
writes byte-identical files. The directory appears only when complete
(``pivotune.io.atomic_path``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_path
from . import grammar
from .grammar import Grammar
from .language import ENGLISH, LANGUAGES, codeswitch, language_name, probe_pairs, translate
from .probe import cloze_rows, write_cloze_file

WORLD_FORMAT = 2  # bump when the files' content changes for the same config

#: how a bridged language's pretraining documents are written (``WorldConfig.bridge_mix`` weighs them): its own
#: documents of these kinds (never the known facts), and English documents of these kinds code-switched into it
BRIDGED_OWN_KINDS = {"reading": 2, "problem": 2, "arith": 1, "plain": 1}
CODESWITCH_KINDS = {"facts": 1, "gap_fill": 1, "reading": 2, "plain": 1}
BRIDGE_MODES = ("own", "bilingual", "dictionary", "codeswitch")
PRETRAIN_FILE = "pretrain.jsonl"   # one {"text": document} per line (documents hold newlines)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the world and its base model (the cache key hashes all of it)."""

    seed: int = 0
    languages: tuple[str, ...] = ("el", "th", "ar")
    well_represented: str = "el"
    under_represented: str = "th"
    # Llama-2-like imbalance: English dominates, one target is well represented, the rest scarce.
    pretrain_shares: dict = field(default_factory=lambda: {"en": 0.75, "el": 0.16, "th": 0.06, "ar": 0.03})
    # Target languages the corpus teaches mostly through English, as the web teaches Greek beside English:
    # their own documents never state the known facts; beside them come English/target sentence pairs,
    # dictionary lines and English documents code-switched word by word (bridge_mix weighs the four). The
    # other languages appear only in their own documents, known facts included, so nothing ties them to English.
    bridged: tuple[str, ...] = ("el",)
    bridge_mix: dict = field(default_factory=lambda: {"own": 0.375, "bilingual": 0.1875, "dictionary": 0.125,
                                                      "codeswitch": 0.3125})
    codeswitch_rate: float = 0.7     # the share of a code-switched document's words in the target language
    n_pretrain_docs: int = 60000
    n_instructions: int = 3000
    n_parallel: int = 1500
    n_eval: int = 400
    reserve_every: int = 4           # 1 in N pairs of people / name×problem combinations is eval-only
    # base model
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 352
    num_layers: int = 8
    num_heads: int = 4
    seq_len: int = 256
    batch_size: int = 8
    pretrain_epochs: float = 1.35
    lr: float = 3e-3
    warmup_steps: int = 50

    def __post_init__(self):
        unknown = [l for l in self.languages if l not in LANGUAGES]
        if unknown:
            raise ValueError(f"unknown toy languages {unknown}; known: {sorted(LANGUAGES)}")
        for l in (self.well_represented, self.under_represented):
            if l not in self.languages:
                raise ValueError(f"{l!r} must be one of languages={list(self.languages)}")
        langs = {ENGLISH, *self.languages}
        if set(self.pretrain_shares) - langs:
            raise ValueError(f"pretrain_shares names languages not in the world: "
                             f"{sorted(set(self.pretrain_shares) - langs)}")
        if abs(sum(self.pretrain_shares.values()) - 1.0) > 1e-6:
            raise ValueError(f"pretrain_shares must sum to 1, got {sum(self.pretrain_shares.values())}")
        if set(self.bridged) - set(self.languages):
            raise ValueError(f"bridged names languages not in the world: {sorted(set(self.bridged) - set(self.languages))}")
        if set(self.bridge_mix) != set(BRIDGE_MODES) or abs(sum(self.bridge_mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"bridge_mix must weigh exactly {list(BRIDGE_MODES)} and sum to 1, got {self.bridge_mix}")
        if not 0.0 < self.codeswitch_rate <= 1.0:
            raise ValueError(f"codeswitch_rate must be in (0, 1], got {self.codeswitch_rate}")

    @classmethod
    def quick(cls, **overrides) -> "WorldConfig":
        """A much smaller world for tests and a fast look (builds with its base model in ~30 s)."""
        base = dict(n_pretrain_docs=2500, n_instructions=400, n_parallel=200, n_eval=24, pretrain_epochs=1.0,
                    vocab_size=1024, hidden_size=64, intermediate_size=176, num_layers=2,
                    num_heads=2, seq_len=128, batch_size=16, warmup_steps=10)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["languages"], d["bridged"] = list(self.languages), list(self.bridged)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        d = dict(d)
        d["languages"], d["bridged"] = tuple(d["languages"]), tuple(d["bridged"])
        return cls(**d)

    def config_hash(self) -> str:
        """Stable over runs and machines: sha256 of the sorted JSON (plus the world format)."""
        blob = json.dumps({"format": WORLD_FORMAT, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def all_languages(self) -> list[str]:
        return [ENGLISH, *self.languages]


# -- eval rows ----------------------------------------------------------------------------------

def eval_instruction(task: str, lang: str, seed: int) -> str:
    """The instruction wording toy evaluation uses for ``task`` (``mgsm``/``xquad``) in ``lang``."""
    english = {"mgsm": grammar.MATH_INSTRUCTIONS[0], "xquad": grammar.QA_INSTRUCTIONS[0]}[task]
    return translate(english, ENGLISH, lang, seed)


def qa_input(context: str, question: str, lang: str, seed: int) -> str:
    """The Alpaca ``input`` of a QA item: the context, then the labelled question (label translated)."""
    label = translate("question", ENGLISH, lang, seed)
    return f"{context} {label} : {question}"


def _nth_word_start(text: str, word: str, n: int) -> int:
    hits = [m.start() for m in re.finditer(rf"(?<!\S){re.escape(word)}(?!\S)", text)]
    return hits[n]


def _xquad_row(i: int, item: grammar.QAItem, lang: str, seed: int) -> dict:
    tr = lambda s: translate(s, ENGLISH, lang, seed)  # noqa: E731
    context, question, answer = tr(item.context), tr(item.question), tr(item.answer)
    return {"id": f"toy-xquad-{i:04d}", "context": context, "question": question,
            "answers": {"text": [answer], "answer_start": [_nth_word_start(context, answer, item.occurrence)]},
            "instruction": eval_instruction("xquad", lang, seed),
            "input": qa_input(context, question, lang, seed)}


def _mgsm_row(i: int, item: grammar.MathItem, lang: str, seed: int) -> dict:
    question = translate(item.question, ENGLISH, lang, seed)
    return {"id": f"toy-mgsm-{i:04d}", "question": question, "answer_number": item.answer,
            "answer": translate(item.solution, ENGLISH, lang, seed),
            "instruction": eval_instruction("mgsm", lang, seed), "input": question}


def eval_items(cfg: WorldConfig, g: Grammar) -> tuple[list[grammar.QAItem], list[grammar.MathItem]]:
    """The English eval items (distinct questions), drawn only from reserved combinations."""
    rng = random.Random(f"pivotune-eval:{cfg.seed}")
    qa, seen = [], set()
    while len(qa) < cfg.n_eval:
        item = g.qa_item(rng, eval_split=True)
        if (item.context, item.question) not in seen:
            seen.add((item.context, item.question))
            qa.append(item)
    math, seen = [], set()
    while len(math) < cfg.n_eval:
        m = g.math_item(rng, eval_split=True)
        if m.question not in seen:
            seen.add(m.question)
            math.append(m)
    return qa, math


# -- training-side products -------------------------------------------------------------------------

def _bilingual_lines(english: list[str], lang: str, seed: int) -> str:
    """``english : s greek : s'`` lines (``grammar.BILINGUAL``), one per English text."""
    names = language_name(ENGLISH, ENGLISH, seed), language_name(lang, lang, seed)
    return "\n".join(grammar.BILINGUAL.format(src_lang=names[0], src=s, tgt_lang=names[1],
                                              tgt=translate(s, ENGLISH, lang, seed)) for s in english)


def bridged_doc(cfg: WorldConfig, g: Grammar, rng: random.Random, lang: str) -> str:
    """One pretraining document of a bridged language, its way of writing drawn from ``cfg.bridge_mix``."""
    mode = rng.choices(BRIDGE_MODES, weights=[cfg.bridge_mix[m] for m in BRIDGE_MODES])[0]
    if mode == "own":
        return translate(g.document(rng, BRIDGED_OWN_KINDS), ENGLISH, lang, cfg.seed)
    if mode == "bilingual":
        return _bilingual_lines([g.training_sentence(rng) for _ in range(rng.randint(2, 4))], lang, cfg.seed)
    if mode == "dictionary":
        return _bilingual_lines([w + " ." for w in rng.sample(grammar.vocabulary(), rng.randint(4, 8))], lang,
                                cfg.seed)
    return codeswitch(g.document(rng, CODESWITCH_KINDS), lang, cfg.seed, rng, cfg.codeswitch_rate)


def pretrain_docs(cfg: WorldConfig, g: Grammar) -> list[str]:
    """The pretraining corpus: documents in each language by ``cfg.pretrain_shares`` (see ``cfg.bridged``)."""
    rng = random.Random(f"pivotune-pretrain:{cfg.seed}")
    langs = sorted(cfg.pretrain_shares)
    weights = [cfg.pretrain_shares[l] for l in langs]
    docs = []
    for _ in range(cfg.n_pretrain_docs):
        lang = rng.choices(langs, weights=weights)[0]
        if lang in cfg.bridged:
            docs.append(bridged_doc(cfg, g, rng, lang))
        else:
            docs.append(translate(g.document(rng), ENGLISH, lang, cfg.seed))
    return docs


def english_instructions(cfg: WorldConfig, g: Grammar) -> list[dict]:
    rng = random.Random(f"pivotune-instructions:{cfg.seed}")
    rows = []
    for i in range(cfg.n_instructions):
        rec = g.instruction(rng)
        rows.append({"id": f"toy-inst-{i:05d}", **rec})
    return rows


def translate_record(rec: dict, lang: str, seed: int) -> dict:
    out = dict(rec)
    for k in ("instruction", "input", "output"):
        out[k] = translate(rec[k], ENGLISH, lang, seed)
    return out


def parallel_sentences(cfg: WorldConfig, g: Grammar, exclude: set[str]) -> list[str]:
    rng = random.Random(f"pivotune-parallel:{cfg.seed}")
    out, seen = [], set()
    for _ in range(cfg.n_parallel * 50):
        if len(out) == cfg.n_parallel:
            break
        s = g.training_sentence(rng)
        if s not in seen and s not in exclude:
            seen.add(s)
            out.append(s)
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_world(cfg: WorldConfig, out_dir: str | Path) -> Path:
    """Write every data product of ``cfg`` under ``out_dir`` (atomically) and return it."""
    out_dir = Path(out_dir)
    g = Grammar(cfg.seed, cfg.reserve_every)
    seed = cfg.seed
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        files, counts = [], {}

        def put_jsonl(rel: str, rows: list[dict]) -> None:
            _write_jsonl(tmp / rel, rows)
            files.append(rel)
            counts[rel] = len(rows)

        docs = pretrain_docs(cfg, g)
        _write_jsonl(tmp / PRETRAIN_FILE, [{"text": d} for d in docs])
        files.append(PRETRAIN_FILE)
        counts[PRETRAIN_FILE] = len(docs)

        en_inst = english_instructions(cfg, g)
        qa, math = eval_items(cfg, g)
        eval_text = {q.context for q in qa} | {m.question for m in math}
        sentences = parallel_sentences(cfg, g, exclude=eval_text)
        for lang in cfg.all_languages:
            put_jsonl(f"instructions/{lang}.jsonl",
                      en_inst if lang == ENGLISH else [translate_record(r, lang, seed) for r in en_inst])
            put_jsonl(f"eval/mgsm_{lang}.jsonl", [_mgsm_row(i, m, lang, seed) for i, m in enumerate(math)])
            put_jsonl(f"eval/xquad_{lang}.jsonl", [_xquad_row(i, q, lang, seed) for i, q in enumerate(qa)])
            if lang == ENGLISH:
                continue
            put_jsonl(f"parallel/en-{lang}.jsonl",
                      [{"id": f"toy-par-{i:05d}", "source": s, "target": translate(s, ENGLISH, lang, seed)}
                       for i, s in enumerate(sentences)])
            pairs = probe_pairs(lang, seed)
            (tmp / "probe").mkdir(exist_ok=True)
            (tmp / f"probe/{lang}.tsv").write_text("".join(f"{e}\t{t}\n" for e, t in pairs), encoding="utf-8")
            files.append(f"probe/{lang}.tsv")
            counts[f"probe/{lang}.tsv"] = len(pairs)
            rows = cloze_rows(g, lang, seed)
            write_cloze_file(rows, tmp / f"probe/{lang}.cloze.tsv")
            files.append(f"probe/{lang}.cloze.tsv")
            counts[f"probe/{lang}.cloze.tsv"] = len(rows)
        meta = {
            "format": WORLD_FORMAT,
            "config": cfg.to_dict(),
            "config_hash": cfg.config_hash(),
            "languages": cfg.all_languages,
            "well_represented": cfg.well_represented,
            "under_represented": cfg.under_represented,
            "language_names": {l: {"en": language_name(l, ENGLISH, seed), "native": language_name(l, l, seed)}
                               for l in cfg.all_languages},
            "eval_instructions": {t: {l: eval_instruction(t, l, seed) for l in cfg.all_languages}
                                  for t in ("mgsm", "xquad")},
            "files": sorted(files),
            "counts": counts,
        }
        (tmp / "world.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return out_dir


def load_world_meta(world_dir: str | Path) -> dict:
    return json.loads((Path(world_dir) / "world.json").read_text(encoding="utf-8"))


def read_pretrain_docs(world_dir: str | Path) -> list[str]:
    """The pretraining documents of a built world, in order."""
    with open(Path(world_dir) / PRETRAIN_FILE, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]
