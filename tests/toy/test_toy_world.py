"""The toy world's data products: determinism, exact translations, eval/train disjointness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pivotune.analysis.probe_items import read_cloze_file
from pivotune.toy import grammar
from pivotune.toy.grammar import Grammar
from pivotune.toy.language import LANGUAGES, translate
from pivotune.toy.probe import cloze_rows
from pivotune.toy.world import WorldConfig, build_world, load_world_meta

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


def test_pretraining_mix_follows_the_shares(tmp_path):
    cfg = WorldConfig.quick(n_pretrain_docs=3000, n_instructions=10, n_parallel=10, n_eval=5)
    d = build_world(cfg, tmp_path / "w")
    english = set(grammar.vocabulary())
    lines = (d / "pretrain.txt").read_text(encoding="utf-8").splitlines()
    share = sum(all(w in english or not w.isalpha() for w in l.split()) for l in lines) / len(lines)
    assert abs(share - cfg.pretrain_shares["en"]) < 0.03
    thai = sum(bool(re.search("[\u0e00-\u0e7f]", l)) for l in lines) / len(lines)
    greek = sum(bool(re.search("[\u0370-\u03ff]", l)) for l in lines) / len(lines)
    assert greek > 2 * thai > 0


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


def _english_chunks(line: str, seed: int) -> list[str]:
    """English text of a pretraining line, whatever language(s) it is in."""
    out = []
    for chunk in re.split(r" [.?] ?", line):
        chunk = re.sub(r"^\S+ : ", "", chunk.strip())   # bilingual label ("english : ...")
        for lang in ("en", *LANGUAGES):
            try:
                text = translate(chunk, lang, "en", seed)
            except ValueError:
                continue
            out.append(text)
            break
    return out


def _pairs(sentence: str) -> set[tuple[str, str]]:
    words = set(sentence.split())
    values = set(grammar.PLACES + grammar.JOBS + grammar.COLORS + grammar.THINGS)
    return {(n, v) for n in words & set(grammar.NAMES) for v in words & values}


def _problems(text: str) -> set[tuple[str, frozenset]]:
    out = set()
    for m in re.finditer(r"(\w+) has (\d+) (?:\w+ )*?(?:buys|gives away|with) (\d+)", text):
        out.add((m.group(1), frozenset((int(m.group(2)), int(m.group(3))))))
    return out


def test_eval_items_share_no_entity_combination_with_training(world):
    """Text-level check, independent of the reservation rule that guarantees it."""
    cfg, d = world
    train_text = []
    for line in (d / "pretrain.txt").read_text(encoding="utf-8").splitlines():
        train_text += _english_chunks(line, cfg.seed)
    for r in _rows(d / "instructions/en.jsonl"):
        train_text += [r["instruction"], r["input"], r["output"]]
    train_text += [r["source"] for r in _rows(d / "parallel/en-el.jsonl")]
    train_pairs, train_problems = set(), set()
    for t in train_text:
        for sentence in re.split(r" [.?]", t):
            for clause in sentence.split(" , "):
                train_pairs |= _pairs(clause)
        train_problems |= _problems(t)
    assert len(train_pairs) > 100 and len(train_problems) > 20  # the parsers do find things

    eval_pairs = set()
    for r in _rows(d / "eval/xquad_en.jsonl"):
        for sentence in r["context"].split(" . "):
            eval_pairs |= _pairs(sentence.replace(" , ", " "))
    eval_problems = set().union(*(_problems(r["question"]) for r in _rows(d / "eval/mgsm_en.jsonl")))
    assert eval_pairs and len(eval_problems) == cfg.n_eval
    assert not eval_pairs & train_pairs
    assert not eval_problems & train_problems


def test_reservation_rule_partitions_combinations():
    g = Grammar(0)
    for name in grammar.NAMES:
        for pool in (grammar.PLACES, grammar.JOBS, grammar.COLORS, grammar.THINGS):
            reserved = g.values(name, pool, True)
            assert reserved and set(reserved).isdisjoint(g.values(name, pool, False))
        assert all(not g.fact_reserved(name, v) for v in g.kb[name].values())
        assert g.problem_reserved(name, "plus", 3, 4) == g.problem_reserved(name, "times", 4, 3)
