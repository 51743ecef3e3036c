"""toy-FLORES: held-out toy sentences in every language of the world, in the FLORES-200 layout.

Each item names a pair of people the grammar reserves for evaluation (:meth:`Grammar.pair_reserved`:
``{name} and {other} meet in {place} . {name} has a {color} {thing} .``), so no pretraining document,
instruction or parallel pair contains it; its
translations are the world's exact translations (:func:`pivotune.toy.language.translate`). Short
sentences keep prompt and translation inside the toy model's context. Files:
``ROOT/devtest/eng_Latn.devtest``, ``ell_Grek.devtest``, ... (line N of each translates line N of
English), read by :mod:`pivotune.eval.flores` as ``pivotune_toy_flores_SRC-TGT`` tasks from
:func:`toy_flores_root`: ``WORLD/flores`` where the world holds it, else written afresh from the world's
config (``world.json``, which determines every sentence) into the evaluation's scratch directory, so a world
is never changed after it is built and a cached one needs no rebuild (writing it takes milliseconds).
"""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import PivotuneError
from ..io import read_json_object, write_text_atomic
from . import grammar
from .grammar import Grammar
from .language import ENGLISH, translate
from .world import WorldConfig

SPLIT = "devtest"
MAX_DRAWS = 100          # draws per sentence before giving up (distinct reserved combinations are many)
# chrF++/BLEU are corpus scores: 100 sentences per direction decide them, and generating more would be a
# large share of the demo's time (every method translates each sentence both ways for every target language)
MAX_SENTENCES = 100
HELD_OUT = "{name} and {other} meet in {place} . {name} has a {color} {thing} ."


def toy_instruction(src: str, tgt: str) -> str:
    """The toy world's translation instruction (its English→target form is the one the world trains with)."""
    return f"translate the sentence from {grammar.LANG_WORDS[src]} to {grammar.LANG_WORDS[tgt]} ."


def held_out_sentence(g: Grammar, rng: random.Random) -> str:
    """Two sentences about a reserved pair of people (never named together in any training text)."""
    while True:
        name, other = rng.sample(grammar.NAMES, 2)
        if g.pair_reserved(name, other):
            break
    return HELD_OUT.format(name=name, other=other, place=rng.choice(grammar.PLACES),
                           color=rng.choice(grammar.COLORS), thing=rng.choice(grammar.THINGS))


def toy_flores_sentences(cfg) -> list[str]:
    """``min(cfg.n_eval, MAX_SENTENCES)`` distinct English held-out sentences of the world ``cfg``."""
    g = Grammar(cfg.seed, cfg.reserve_every)
    rng = random.Random(f"pivotune-flores:{cfg.seed}")
    want = min(cfg.n_eval, MAX_SENTENCES)
    out, seen = [], set()
    for _ in range(want * MAX_DRAWS):
        if len(out) == want:
            break
        sentence = held_out_sentence(g, rng)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def write_toy_flores(cfg, root: str | Path) -> dict[str, int]:
    """Write toy-FLORES of ``cfg`` under ``root``; returns ``{path relative to root: sentences}``."""
    from ..eval.flores import corpus_code

    sentences = toy_flores_sentences(cfg)
    written = {}
    for lang in [ENGLISH, *cfg.languages]:
        rel = f"{SPLIT}/{corpus_code(lang)}.{SPLIT}"
        lines = sentences if lang == ENGLISH else [translate(s, ENGLISH, lang, cfg.seed) for s in sentences]
        write_text_atomic(Path(root) / rel, "".join(line + "\n" for line in lines))
        written[rel] = len(lines)
    return written


def toy_flores_root(world_dir: str | Path, scratch: str | Path) -> Path:
    """The toy-FLORES root of the world at ``world_dir``: ``WORLD/flores`` where it holds one, else the files
    written from its ``world.json`` config under ``scratch/toy-flores`` (a clear error where neither exists)."""
    world_dir = Path(world_dir)
    root, meta = world_dir / "flores", world_dir / "world.json"
    if root.is_dir():
        return root
    if not meta.is_file():
        raise PivotuneError(f"the toy world at {world_dir} has no toy-FLORES ({root} is missing) and no "
                            f"world.json to write it from; point --toy-world at a toy world (a `pivotune demo` "
                            "cache entry's world/).")
    try:
        cfg = WorldConfig.from_dict(read_json_object(meta)["config"])
    except (PivotuneError, KeyError, TypeError, ValueError) as e:   # a config of another pivotune, or none
        raise PivotuneError(f"the toy world at {world_dir} has no toy-FLORES ({root} is missing) and its "
                            f"world.json holds no config this pivotune can write it from ({type(e).__name__}: "
                            f"{e}); rebuild the world (`pivotune demo --rebuild`).") from None
    out = Path(scratch) / "toy-flores"
    write_toy_flores(cfg, out)
    return out
