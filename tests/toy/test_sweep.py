"""`pivotune sweep`: the grid, its checks, the numbers in sweep.json / sweep.md / the report page recomputed
from the per-run harness results, and a tiny real sweep on the session's quick world."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest
import yaml

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.report.stats import paired_bootstrap
from pivotune.report.sweep import read_sweep, sweep_finding
from pivotune.toy import sweep as sweep_mod
from pivotune.toy.demo import DemoPlan
from pivotune.toy.model import ToyPaths
from pivotune.toy.sweep import GridPoint, default_pivot_layers, expand_grid, run_sweep
from pivotune.toy.world import WorldConfig

KEYS = ("mgsm", "xquad_em", "xquad_f1")


def test_grid_expands_pivot_layer_outermost_then_alpha_then_lambda():
    grid = expand_grid(4, [3, 2], [0.0, 0.1], [0.5, 1.0])
    assert grid == [GridPoint(n, a, lam) for n in (3, 2) for a in (0.0, 0.1) for lam in (0.5, 1.0)]
    assert [p.name for p in grid[:3]] == ["n3-a0-l0.5", "n3-a0-l1", "n3-a0.1-l0.5"]
    # defaults: middle block to one below the top (the default world has 8 blocks, the quick one 2)
    assert default_pivot_layers(WorldConfig().num_layers) == [4, 5, 6, 7]
    assert default_pivot_layers(WorldConfig.quick().num_layers) == [1]


@pytest.mark.parametrize("layers, alphas, lambdas, message", [
    ([4], [0.1], [0.5], "1 <= n <= 3"),
    ([0], [0.1], [0.5], "1 <= n <= 3"),
    ([2.5], [0.1], [0.5], "--pivot-layers=2.5 is out of range"),
    ([2], [1.0], [0.5], "outside [0, 1)"),
    ([2], [-0.1], [0.5], "outside [0, 1)"),
    ([2], [float("nan")], [0.5], "outside [0, 1)"),
    ([2], [0.1], [-1.0], "outside [0, 100]"),
    ([2], [0.1], [101.0], "outside [0, 100]"),
    ([2, 2], [0.1], [0.5], "--pivot-layers lists 2 more than once"),
    ([2], [], [0.5], "--alphas needs at least one value"),
])
def test_invalid_grid_values_are_named(layers, alphas, lambdas, message):
    with pytest.raises(PivotuneError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        expand_grid(4, layers, alphas, lambdas)


@pytest.mark.parametrize("argv, message", [
    (["--pivot-layers", "2"], "1 <= n <= 1"),          # the quick model has 2 blocks
    (["--alphas", "1"], "outside [0, 1)"),
    (["--lambdas", "-0.5"], "outside [0, 100]"),
    (["--seeds", "0"], "--seeds must be a whole number"),
    (["--languages", "xx"], "'xx' is not one of the toy world's languages"),
])
def test_cli_rejects_bad_values_before_building_anything(argv, message, tmp_path, capsys):
    assert main(["sweep", "--quick", *argv, "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- numbers, with training and evaluation faked


def _fake_road(monkeypatch, tmp_path):
    """Replace the world, training and the harness: each run gets its own seeded scores in a harness-format
    RUN/results.json, and PROM's regulation drops λ for th."""
    world = WorldConfig()
    monkeypatch.setattr(sweep_mod, "get_or_build", lambda cfg, cache_dir=None, progress=None: ToyPaths(
        tmp_path / "cache", tmp_path / "cache" / "world", tmp_path / "cache" / "base", world))
    configs = {}

    def fake_train(cfg, save_checkpoints=True, overwrite=False):
        assert overwrite   # the sweep replaces its own earlier runs
        run = Path(cfg.output_dir)
        run.mkdir(parents=True)
        configs[run.name] = cfg
        if cfg.method == "prom":
            lam = {lang: 0.0 if lang == "th" else cfg.prom.lambda_en for lang in cfg.languages}
            (run / "regulation.json").write_text(json.dumps({"lambda_per_language": lam}))

    def fake_eval(model_dir, world_dir, languages, limit=None, out_dir=None, **kw):
        rng = random.Random(Path(out_dir).name)
        res = {"results": {}}
        for lang in languages:
            res["results"][f"pivotune_toy_mgsm_{lang}"] = {"accuracy,none": rng.random()}
            res["results"][f"pivotune_toy_xquad_{lang}"] = {"exact_match,none": rng.random(), "f1,none": rng.random()}
        (Path(out_dir) / "results.json").write_text(json.dumps(res))
        return res

    monkeypatch.setattr("pivotune.train.run.train", fake_train)
    monkeypatch.setattr("pivotune.eval.toy_tasks.evaluate_toy_with_harness", fake_eval)
    return configs


def _headline_from_harness(run: Path) -> dict:
    res = json.loads((run / "results.json").read_text())["results"]
    out = {}
    for name, m in res.items():
        lang = name.rsplit("_", 1)[1]
        if "_flores_" in name:   # toy-FLORES: chrF++/BLEU, no headline score
            continue
        if "_mgsm_" in name:
            out.setdefault(lang, {})["mgsm"] = 100 * m["accuracy,none"]
        else:
            out.setdefault(lang, {}).update(xquad_em=100 * m["exact_match,none"], xquad_f1=100 * m["f1,none"])
    return out


def _cell(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def test_sweep_numbers_are_recomputed_from_the_runs_harness_results(monkeypatch, tmp_path, capsys):
    configs = _fake_road(monkeypatch, tmp_path)
    out = tmp_path / "sweep"
    summary = run_sweep(pivot_layers=[2, 3], alphas=[0.1], lambdas=[0.5, 1.0], languages=["el", "th"], seeds=2,
                        steps=7, out_dir=out, references=["xllama"], jobs=1)   # in this process: fakes reach it
    assert [r["name"] for r in summary["rows"]] == ["prom-n2-a0.1-l0.5", "prom-n2-a0.1-l1", "prom-n3-a0.1-l0.5",
                                                    "prom-n3-a0.1-l1"]
    # each run got the grid point's settings on the demo's plan, without the demo's interference logging
    cfg = configs["prom-n3-a0.1-l0.5-seed1"]
    assert (cfg.prom.pivot_layer, cfg.prom.label_smoothing, cfg.prom.lambda_en, cfg.seed) == (3, 0.1, 0.5, 1)
    assert cfg.train.max_steps == 7 and cfg.train.per_device_batch_size == DemoPlan.for_world(False).batch_size
    assert cfg.interference.every == 0 and configs["xllama-seed0"].method == "xllama"

    saved = json.loads((out / "sweep.json").read_text())
    md = (out / "sweep.md").read_text()
    page = (out / "report" / "report.md").read_text()
    assert "## Hyper-parameter sweep (Table 4)" in page
    targets, sds, lines = {}, {}, {}
    for row in [*saved["rows"], *saved["references"]]:
        per_seed = [_headline_from_harness(out / f"{row['name']}-seed{s}") for s in range(2)]
        assert row["scores"] == per_seed
        for lang in ("en", "el", "th"):
            for k in KEYS:
                assert row["mean"][lang][k] == pytest.approx(statistics.fmean(s[lang][k] for s in per_seed))
                assert row["sd"][lang][k] == pytest.approx(statistics.stdev(s[lang][k] for s in per_seed))
        lang_cells = [_cell([statistics.fmean(s[lang][k] for k in KEYS) for s in per_seed])
                      for lang in ("en", "el", "th")]
        seed_targets = [statistics.fmean(s[lang][k] for lang in ("el", "th") for k in KEYS) for s in per_seed]
        assert row["targets_mean"] == pytest.approx(statistics.fmean(seed_targets))
        assert row["targets_sd"] == pytest.approx(statistics.stdev(seed_targets))
        targets[row["name"]], sds[row["name"]] = statistics.fmean(seed_targets), statistics.stdev(seed_targets)
        if row["method"] == "prom":
            assert row["lambda_per_language"] == [{"el": row["lambda_en"], "th": 0.0}] * 2
            cells = ["prom", str(row["pivot_layer"]), "0.1", f"{row['lambda_en']:g}"]
        else:
            cells = ["xllama (reference)", "–", "–", "–"]
        lines[row["name"]] = "| " + " | ".join([*cells, *lang_cells, _cell(seed_targets)]) + " | "
    grid = {k: v for k, v in targets.items() if k != "xllama"}
    best, worst = max(grid, key=grid.get), min(grid, key=grid.get)
    assert saved["best"] == best
    for name, line in lines.items():   # the same table in sweep.md and on the page, the best row marked
        line += "best |" if name == best else " |"
        assert line in md.splitlines() and line in page.splitlines()
    # the finding: best, margin over the worst with its interval (no items logged: over the two seeds)
    margin = grid[best] - grid[worst]
    finding = next(ln for ln in page.splitlines() if ln.startswith("- Sweep"))
    assert f"{margin:.1f} points above the worst" in finding and "2 seed(s)" in finding
    rows = {r["name"]: r for r in [*saved["rows"], *saved["references"]]}

    def interval(a, b):
        target = [(lang, k) for lang in ("el", "th") for k in KEYS]
        return paired_bootstrap([[[s[lang][k]] for s in rows[a]["scores"]] for lang, k in target],
                                [[[s[lang][k]] for s in rows[b]["scores"]] for lang, k in target])

    assert f"best minus worst {interval(best, worst).fmt()}: its 95 % interval" in finding
    assert (f"reference scores {targets['xllama']:.1f}; best setting minus reference "
            f"{interval(best, 'xllama').fmt()}: ") in finding
    assert "targets mean" in capsys.readouterr().out   # the table, printed


def _row(name: str, n: int, targets_per_seed: list[float]) -> dict:
    return {"name": name, "method": "prom", "pivot_layer": n, "label_smoothing": 0.1, "lambda_en": 0.5,
            "scores": [{lang: dict.fromkeys(KEYS, v) for lang in ("en", "el")} for v in targets_per_seed]}


def test_finding_puts_an_interval_on_the_margin():
    """The best-minus-worst margin carries its 95 % interval over the seeds: decided only when it excludes
    zero (the seeds' resampled means reach 40..42 against 20..22, but 30..40 against 28..36 overlap)."""
    clear = {"languages": ["el"], "rows": [_row("a", 2, [40.0, 42.0]), _row("b", 3, [20.0, 22.0])]}
    assert "best n=2, α=0.1, λ=0.5 with targets mean 41.0 ± 1.4, 20.0 points above the worst" in sweep_finding(clear)
    assert "best minus worst +20.0 [+18.0, +22.0]: its 95 % interval excludes zero" in sweep_finding(clear)
    noisy = {"languages": ["el"], "rows": [_row("a", 2, [30.0, 40.0]), _row("b", 3, [28.0, 36.0])]}
    assert "3.0 points above the worst" in sweep_finding(noisy)
    assert "best minus worst +3.0 [-6.0, +12.0]: its 95 % interval contains zero: not decided" in sweep_finding(noisy)
    one_seed = {"languages": ["el"], "rows": [_row("a", 2, [30.0]), _row("b", 3, [28.0])]}
    assert "no interval: one seed and no per-item scores (run --seeds 2 or more)" in sweep_finding(one_seed)


def test_reference_must_be_a_method_beside_the_grid(tmp_path):
    """--baseline names methods other than PROM's own (the grid), each checked before anything runs."""
    with pytest.raises(PivotuneError, match="'prom' is not a method to train beside the grid; choose from"):
        run_sweep(quick=True, references=["prom"], out_dir=tmp_path / "s")
    with pytest.raises(PivotuneError, match="'xlama' is not a method"):
        run_sweep(quick=True, references=["xlama"], out_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_read_sweep_names_the_bad_field(tmp_path):
    bad = {"languages": ["el", "th"], "rows": [_row("a", 2, [30.0])]}   # no th scores
    (tmp_path / "sweep.json").write_text(json.dumps(bad))
    with pytest.raises(PivotuneError, match=r"rows\[0\]\.scores\[0\]\.th must map"):
        read_sweep(tmp_path / "sweep.json")


# ---------------------------------------------------------------- a tiny real sweep


def test_tiny_sweep_end_to_end(quick_paths, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIVOTUNE_CACHE", str(quick_paths.root.parent.parent))
    monkeypatch.setattr(DemoPlan, "for_world", classmethod(lambda cls, quick: cls(steps=60, eval_limit=2)))
    out = tmp_path / "sweep"
    assert main(["sweep", "--quick", "--alphas", "0", "0.1", "--lambdas", "1", "--languages", "el",
                 "--steps", "2", "--baseline", "lens-local", "--jobs", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["prom-n1-a0-l1", "prom-n1-a0.1-l1"]
    # lens-local joins the sweep as a reference row, on the same plan
    (ref,) = saved["references"]
    assert ref["method"] == "lens-local" and ref["scores"] == [_headline_from_harness(out / "lens-local-seed0")]
    assert "| lens-local (reference) | – | – | – |" in (out / "sweep.md").read_text()
    page = (out / "report" / "report.md").read_text()
    for row in saved["rows"]:
        run = out / f"{row['name']}-seed0"
        prom = yaml.safe_load((run / "config.yaml").read_text())["prom"]
        assert (prom["pivot_layer"], prom["label_smoothing"], prom["lambda_en"]) == (1, row["label_smoothing"], 1.0)
        regulation = json.loads((run / "regulation.json").read_text())
        assert regulation["pivot_layer"] == 1 and row["lambda_per_language"] == [regulation["lambda_per_language"]]
        (scores,) = row["scores"]
        assert scores == _headline_from_harness(run)
        lang_means = [statistics.fmean(scores[lang][k] for k in KEYS) for lang in ("en", "el")]
        line = f"| prom | 1 | {row['label_smoothing']:g} | 1 | {lang_means[0]:.1f} | {lang_means[1]:.1f} | " \
               f"{lang_means[1]:.1f} |"
        assert line in page
    assert "Hyper-parameter sweep (Table 4)" in page and (out / "report" / "report.html").exists()
    out_text, err = capsys.readouterr()
    assert "sweep:" in out_text and "train      prom-n1-a0.1-l1 seed 0 · 2 steps · run 2/3" in out_text
    assert "'loss'" not in out_text + err and "'loss'" in (out / "sweep.log").read_text(encoding="utf-8")
