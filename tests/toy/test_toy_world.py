"""The toy world's data products: determinism, exact translations, eval/train disjointness."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from pivotune.analysis.probe_items import read_cloze_file
from pivotune.toy import grammar
from pivotune.toy.grammar import Grammar
from pivotune.toy.language import LANGUAGES, lexicon, translate
from pivotune.toy.probe import cloze_rows
from pivotune.toy.world import WorldConfig, build_world, load_world_meta, read_pretrain_docs

SMALL = dict(n_pretrain_docs=600, n_instructions=120, n_parallel=60, n_eval=20)


def _rows(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[WorldConfig, Path]:
    cfg = WorldConfig.quick(**SMALL)
    return cfg, build_world(cfg, tmp_path_factory.mktemp("w") / "world")


def test_same_seed_same_bytes_other_seed_other_bytes(world, tmp_path):
    cfg, d = world
    again = _tree(build_world(WorldConfig.quick(**SMALL), tmp_path / "again"))
    assert again == _tree(d)
    other = _tree(build_world(WorldConfig.quick(**SMALL, seed=1), tmp_path / "other"))
    assert set(other) == set(again)
    assert all(other[k] != again[k] for k in again if k != "world.json")


def test_config_hash_is_stable_and_sensitive():
    a, b = WorldConfig.quick(), WorldConfig.quick()
    assert a.config_hash() == b.config_hash()
    assert WorldConfig.quick(seed=1).config_hash() != a.config_hash()
    assert WorldConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    with pytest.raises(ValueError, match="sum to 1"):
        WorldConfig(pretrain_shares={"en": 0.5, "el": 0.1})


def test_layout_and_meta(world):
    cfg, d = world
    meta = load_world_meta(d)
    assert meta["config_hash"] == cfg.config_hash() and meta["languages"] == ["en", "el", "th", "ar"]
    for rel in meta["files"]:
        assert (d / rel).is_file(), rel
    for lang in meta["languages"]:
        assert meta["counts"][f"instructions/{lang}.jsonl"] == cfg.n_instructions
        assert meta["counts"][f"eval/xquad_{lang}.jsonl"] == cfg.n_eval
    assert not list(d.parent.glob(".world.*"))  # atomic_path left no temporary behind


def _script(text: str) -> set[str]:
    return ({"el"} if re.search("[\u0370-\u03ff]", text) else set()) | \
        ({"th"} if re.search("[\u0e00-\u0e7f]", text) else set()) | \
        ({"ar"} if re.search("[\u0600-\u06ff]", text) else set())


def test_pretraining_mix_follows_the_shares(tmp_path):
    """Documents per language follow pretrain_shares; the bridged language (el) comes with English beside it,
    the others only in their own monolingual documents."""
    cfg = WorldConfig.quick(n_pretrain_docs=3000, n_instructions=10, n_parallel=10, n_eval=5)
    d = build_world(cfg, tmp_path / "w")
    english = set(grammar.vocabulary())
    docs = read_pretrain_docs(d)
    assert len(docs) == cfg.n_pretrain_docs and any("\n" in doc for doc in docs)
    only_english = [doc for doc in docs if all(w in english or not w.isalpha() for w in doc.split())]
    assert abs(len(only_english) / len(docs) - cfg.pretrain_shares["en"]) < 0.03
    by_script = {lang: [doc for doc in docs if lang in _script(doc)] for lang in cfg.languages}
    assert len(by_script["el"]) > 2 * len(by_script["th"]) > 0 and by_script["ar"]
    mixed = [doc for doc in by_script["el"] if english & set(doc.split())]
    assert 0.4 < len(mixed) / len(by_script["el"]) < 0.8   # bilingual lines, dictionary, code-switched
    for lang in ("th", "ar"):   # never beside English or another script
        assert all(_script(doc) == {lang} and not english & set(doc.split()) for doc in by_script[lang])
    # el's own documents never state the known facts: it meets them through English
    own_el = [doc for doc in by_script["el"] if doc not in mixed]
    born = {lang: translate(grammar.FACT_TEMPLATES["place"].split(" ")[2], "en", lang, cfg.seed)
            for lang in cfg.languages}   # "born", said of a person's known birthplace only
    assert own_el and not any(born["el"] in doc.split() for doc in own_el)
    assert any(born["th"] in doc.split() for doc in by_script["th"])


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_product_is_an_exact_translation(world, lang):
    cfg, d = world
    back = lambda s: translate(s, lang, "en", cfg.seed)  # noqa: E731
    en, tgt = _rows(d / "instructions/en.jsonl"), _rows(d / f"instructions/{lang}.jsonl")
    assert [r["id"] for r in en] == [r["id"] for r in tgt]
    for e, t in zip(en, tgt):
        assert {k: back(t[k]) for k in ("instruction", "input", "output")} == \
               {k: e[k] for k in ("instruction", "input", "output")}
    for r in _rows(d / f"parallel/en-{lang}.jsonl"):
        assert back(r["target"]) == r["source"] and r["target"] != r["source"]
    for e, t in zip(_rows(d / "eval/mgsm_en.jsonl"), _rows(d / f"eval/mgsm_{lang}.jsonl")):
        assert back(t["question"]) == e["question"] and back(t["answer"]) == e["answer"]
        assert t["answer_number"] == e["answer_number"] and str(e["answer_number"]) in t["answer"]
    for e, t in zip(_rows(d / "eval/xquad_en.jsonl"), _rows(d / f"eval/xquad_{lang}.jsonl")):
        assert back(t["context"]) == e["context"] and back(t["question"]) == e["question"]
        ans, start = t["answers"]["text"][0], t["answers"]["answer_start"][0]
        assert t["context"][start:start + len(ans)] == ans and back(ans) == e["answers"]["text"][0]
        assert t["input"].startswith(t["context"]) and t["question"] in t["input"]
    for line in (d / f"probe/{lang}.tsv").read_text(encoding="utf-8").splitlines():
        e, t = line.split("\t")
        assert translate(e, "en", lang, cfg.seed) == t
    # the regulation's cloze: the world's known facts, gapped in the target language
    assert read_cloze_file(d / f"probe/{lang}.cloze.tsv") == cloze_rows(Grammar(cfg.seed, cfg.reserve_every), lang,
                                                                        cfg.seed)


def test_english_xquad_answers_are_spans(world):
    _, d = world
    for r in _rows(d / "eval/xquad_en.jsonl"):
        ans, start = r["answers"]["text"][0], r["answers"]["answer_start"][0]
        assert r["context"][start:start + len(ans)] == ans


def _english_lines(doc: str, seed: int) -> list[str]:
    """English text of a pretraining document, whatever language(s) it is in."""
    out = []
    for line in doc.split("\n"):
        for lang in ("en", *LANGUAGES):
            try:
                out.append(translate(line, lang, "en", seed))
                break
            except ValueError:
                continue
        else:   # bilingual, dictionary and code-switched lines: word by word
            out.append(" ".join(next((translate(w, lang, "en", seed) for lang in LANGUAGES
                                      if w in toy_lexicons(seed)[lang]), w) for w in line.split(" ")))
    return out


def toy_lexicons(seed: int) -> dict[str, set[str]]:
    return {lang: set(lexicon(lang, seed).values()) for lang in LANGUAGES}


def _people(text: str) -> set[str]:
    return set(text.split()) & set(grammar.NAMES)


def _problems(text: str) -> set[tuple[str, frozenset]]:
    out = set()
    for m in re.finditer(r"(\w+) has (\d+) (?:\w+ )*?(?:buys|gives away|with) (\d+)", text):
        out.add((m.group(1), frozenset((int(m.group(2)), int(m.group(3))))))
    return out


def test_eval_items_share_no_pair_of_people_with_training(world):
    """Text-level check, independent of the reservation rule that guarantees it: no two people of an eval
    passage appear together in any training text, and no eval word problem is a training one."""
    cfg, d = world
    train_text = []
    for doc in read_pretrain_docs(d):
        train_text += _english_lines(doc, cfg.seed)
    for r in _rows(d / "instructions/en.jsonl"):
        train_text += [r["instruction"], r["input"], r["output"]]
    train_text += [r["source"] for r in _rows(d / "parallel/en-el.jsonl")]
    train_pairs, train_problems = set(), set()
    for t in train_text:
        # people together: in a passage (the text of a reading line or a QA input), or in one sentence
        together = [t] if " lives in " in t else t.split(" . ")
        for people in map(_people, together):
            train_pairs |= {frozenset((a, b)) for a in people for b in people if a != b}
        train_problems |= _problems(t)
    assert len(train_pairs) > 50 and len(train_problems) > 20  # the parsers do find things

    eval_rows = _rows(d / "eval/xquad_en.jsonl")
    eval_pairs = {frozenset(_people(r["context"])) for r in eval_rows}
    assert all(len(p) == 2 for p in eval_pairs)
    assert not eval_pairs & train_pairs
    eval_problems = set().union(*(_problems(r["question"]) for r in _rows(d / "eval/mgsm_en.jsonl")))
    assert len(eval_problems) > cfg.n_eval // 2 and not eval_problems & train_problems


def test_reservation_rule_partitions_combinations():
    """Pairs of people and word problems split into train and eval by a symmetric seeded rule."""
    g = Grammar(0)
    for name in grammar.NAMES:
        reserved = [o for o in grammar.NAMES if o != name and g.pair_reserved(name, o)]
        assert 0 < len(reserved) < len(grammar.NAMES) // 2
        assert all(g.pair_reserved(o, name) for o in reserved)
        assert g.problem_reserved(name, "plus", 3, 4) == g.problem_reserved(name, "times", 4, 3)
    with pytest.raises(ValueError, match="reserved pair"):
        g.qa_item(random.Random(0), eval_split=True, n_people=1)
