"""toy-FLORES: held-out sentences translated exactly, in the FLORES layout, evaluated through the harness
with chrF++/BLEU and script-based language confusion."""

from __future__ import annotations

import json

import pytest

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.eval import flores
from pivotune.toy import grammar
from pivotune.toy.flores import MAX_SENTENCES, toy_flores_root, toy_flores_sentences, toy_instruction, write_toy_flores
from pivotune.toy.language import translate
from pivotune.toy.world import WorldConfig, build_world, read_pretrain_docs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig.quick()
    root = build_world(cfg, tmp_path_factory.mktemp("toy") / "world")
    write_toy_flores(cfg, root / "flores")
    return cfg, root


def test_toy_flores_is_held_out_and_exact(world):
    """Every language file has min(n_eval, MAX_SENTENCES) lines, each the exact translation of the English line,
    and no English item's first sentence (a reserved pair meeting) occurs in any training text."""
    cfg, root = world
    english = toy_flores_sentences(cfg)
    assert len(english) == len(set(english)) == min(cfg.n_eval, MAX_SENTENCES)
    for lang in cfg.languages:
        assert flores.read_pairs(root / "flores", "en", lang) == [(s, translate(s, "en", lang, cfg.seed))
                                                                  for s in english]
    training = "\n".join(read_pretrain_docs(root)) + (root / "instructions" / "en.jsonl").read_text()
    training += "".join(p.read_text(encoding="utf-8") for p in (root / "parallel").iterdir())
    leaked = [s for s in english if s.split(" . ")[0] in training]
    assert not leaked
    assert toy_instruction("en", "el") == grammar.TRANSLATE_INSTRUCTIONS[0].format(lang="greek")
    assert translate(toy_instruction("el", "en"), "en", "th", cfg.seed)   # every word is in the toy lexicon


def test_toy_flores_through_the_harness(world, tmp_path, tiny_model_dir, one_thread, capsys):
    """`pivotune eval --toy-world` scores toy-FLORES and measures confusion by script; a world without
    toy-FLORES is a clear error."""
    cfg, root = world
    out = tmp_path / "eval"
    tasks = ["pivotune_toy_flores_en-el", "pivotune_toy_flores_th-en"]
    assert main(["eval", str(tiny_model_dir), "--tasks", *tasks, "--toy-world", str(root), "--out", str(out),
                 "--limit", "3", "--batch-size", "3", "--log-samples"]) == 0
    res = json.loads((out / "results.json").read_text())
    for task in tasks:
        metrics = res["results"][task]
        assert {"chrf++,none", "bleu,none", "confusion_judged,none"} <= set(metrics)
        rows = [json.loads(l) for l in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]
        assert rows[0]["doc"]["bleu_tokenize"] == "13a"
        assert rows[0]["arguments"][0][1]["max_gen_toks"] == flores.TOY_MAX_GEN_TOKS
    bare = tmp_path / "bare"
    bare.mkdir()
    capsys.readouterr()
    assert main(["eval", str(tiny_model_dir), "--tasks", tasks[0], "--toy-world", str(bare),
                 "--out", str(tmp_path / "o")]) == 2
    assert "has no toy-FLORES" in capsys.readouterr().err


def test_a_world_without_toy_flores_gets_it_from_its_config(quick_paths, tmp_path):
    """A world that holds no toy-FLORES (built before it existed) gets the files its config determines, written
    in the scratch directory, never into the world; a world.json without a config is a clear error."""
    assert not (quick_paths.world / "flores").exists()
    root = toy_flores_root(quick_paths.world, tmp_path / "scratch")
    write_toy_flores(quick_paths.config, tmp_path / "direct")
    for f in sorted((tmp_path / "direct" / "devtest").iterdir()):
        assert (root / "devtest" / f.name).read_text(encoding="utf-8") == f.read_text(encoding="utf-8")
    assert not (quick_paths.world / "flores").exists()
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "world.json").write_text(json.dumps({"languages": ["en", "el"]}))
    with pytest.raises(PivotuneError, match="has no toy-FLORES .* holds no config"):
        toy_flores_root(odd, tmp_path / "s2")


def test_toy_evaluation_adds_toy_flores_both_ways(quick_paths, tmp_path, one_thread):
    """The demo's evaluation scores toy-FLORES English→L and L→English for each language, on the first `limit`
    held-out sentences (the world's exact translations as references), without touching the world."""
    from pivotune.eval.toy_tasks import evaluate_toy_with_harness

    limit = 3
    res = evaluate_toy_with_harness(str(quick_paths.base), quick_paths.world, ["en", "th"], tasks=("mgsm",),
                                    limit=limit, out_dir=tmp_path, batch_size=8)
    assert set(res["results"]) == {"pivotune_toy_mgsm_en", "pivotune_toy_mgsm_th", "pivotune_toy_flores_en-th",
                                   "pivotune_toy_flores_th-en"}
    english = toy_flores_sentences(quick_paths.config)[:limit]
    thai = [translate(s, "en", "th", quick_paths.config.seed) for s in english]
    for task, sources, references in (("pivotune_toy_flores_en-th", english, thai),
                                      ("pivotune_toy_flores_th-en", thai, english)):
        assert {"chrf++,none", "bleu,none", "line_pass_rate,none"} <= set(res["results"][task])
        rows = [json.loads(line) for line in (tmp_path / "samples" / f"{task}.jsonl").read_text().splitlines()]
        assert [(r["doc"]["source"], r["doc"]["target"]) for r in rows] == list(zip(sources, references))
    assert not (quick_paths.world / "flores").exists()
