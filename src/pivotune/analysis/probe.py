"""The `pivotune probe` command: lens curves, regulation decisions and pivot suggestions per language."""

from __future__ import annotations

from pathlib import Path

from ..errors import PivotuneError
from ..io import parse_json
from ..models.arch import arch_info
from ..models.pivot_head import resolve_pivot_layer
from .logit_lens import (
    LensResult,
    probe_items,
    regulation_decision,
    suggest_pivot_layer,
)
from .plots import plot_language_probabilities
from .probe_items import answer_label, build_items, language_display_name, read_cloze_file, read_word_pairs

TASKS = ("translation", "repetition", "cloze")

# ----------------------------------------------------------------------------------------------------
# The `pivotune probe` command
# ----------------------------------------------------------------------------------------------------

def _summary(res: LensResult) -> dict:
    return {"n_items": res.n_items,
            "p_en": {"mean": res.mean_en().tolist(), "sd": res.sd_en().tolist()},
            "p_tgt": {"mean": res.mean_tgt().tolist(), "sd": res.sd_tgt().tolist()}}


def run_probe(model_name: str, pairs_files: dict[str, str], out_dir: str | Path, *, pivot_layer: int | None = None,
              task: str = "translation", batch_size: int = 8, names: dict[str, str] | None = None,
              source_lang: str = "en", seed: int = 0, dtype: str = "float32", model=None, tokenizer=None,
              template: str | None = None, labels: dict[str, str] | None = None, force: bool = False) -> dict:
    """Probe every language in ``pairs_files`` (lang -> word-pair file; cloze files for ``task="cloze"``)
    and write ``out_dir/probe.json`` and ``out_dir/lens_{lang}.png``. Returns the JSON object.
    ``model``/``tokenizer``: already loaded ones (``model_name`` is then only recorded). ``template``
    replaces the task's prompt line; ``labels``: "Answer" per language for cloze prompts. ``out_dir`` must be new,
    empty or an earlier probe's, unless ``force`` (:func:`pivotune.outputs.claim_output_dir`)."""
    from ..io import child_path, write_json_atomic
    from ..models.loading import load_model, load_tokenizer
    from ..outputs import claim_output_dir, mark_output

    claim_output_dir(out_dir, "probe", force=force)

    if task not in TASKS:
        raise PivotuneError(f"Unknown probe task '{task}'; choose {', '.join(TASKS)}.")
    if not pairs_files:
        raise PivotuneError("No languages to probe: pass --pairs LANG=FILE.")
    # every output path is checked before anything is read or loaded: a name never leaves out_dir
    report_path = child_path(out_dir, "probe.json")
    figures = {lang: child_path(out_dir, f"lens_{lang}.png") for lang in pairs_files}
    if task == "cloze":
        cloze_rows = {lang: read_cloze_file(f) for lang, f in pairs_files.items()}
        all_pairs = {lang: [(e, t) for e, t, _ in rows] for lang, rows in cloze_rows.items()}
        shown_labels = {lang: answer_label(lang, labels) for lang in all_pairs}
    else:
        all_pairs = {lang: read_word_pairs(f) for lang, f in pairs_files.items()}
    names = dict(names or {})
    source_words = None
    if task == "translation" and source_lang != "en":
        if source_lang not in all_pairs:
            raise PivotuneError(f"--source-lang {source_lang}: needs that language's word pairs among --pairs "
                                f"(have {', '.join(all_pairs)}).")
        source_words = dict(all_pairs[source_lang])
    # every display name is resolved before the model loads, so a missing one fails fast
    needs_names = task != "cloze"   # cloze prompts name no language
    shown = {lang: language_display_name(lang, names) if needs_names else lang for lang in all_pairs}
    src_name = language_display_name(source_lang, names) if task == "translation" else ""

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_name)
    model = model if model is not None else load_model(model_name, dtype=dtype)
    info = arch_info(model)
    n = info.num_layers
    chosen = resolve_pivot_layer(pivot_layer, n, "--pivot-layer")
    report = {"model": str(model_name), "model_type": info.model_type, "num_layers": n, "task": task,
              "source_lang": source_lang if task == "translation" else None, "seed": seed,
              "template": template,
              "pivot_layer": chosen, "pivot_layer_is_default": pivot_layer is None,
              "layers": list(range(n + 1)),
              "layer_convention": "index k = output of decoder block k (HF hidden_states[k]); 0 = embeddings",
              "rule": "lambda_t = 0 when mean P(en) < mean P(target) at the pivot layer, else lambda",
              "sd": "population standard deviation over items", "languages": {}}
    mark_output(out_dir, "probe")
    for lang, pairs in all_pairs.items():
        if task == "translation" and lang == source_lang:
            continue
        src_map = source_words
        sentences = [row[2] for row in cloze_rows[lang]] if task == "cloze" else None
        items, rep = build_items(pairs, tokenizer, source_words=src_map, sentences=sentences)
        if not items:
            raise PivotuneError(f"{lang} ({pairs_files[lang]}): no probe item survives the filters "
                                f"({rep.as_dict()}); the tokenizer's vocabulary may not cover these words.")
        if task == "translation":
            pool = [((src_map[e] if src_map else e), t) for e, t in pairs if not src_map or e in src_map]
        elif task == "cloze":
            pool = [(sentence, t) for _, t, sentence in cloze_rows[lang]]
        else:
            pool = list(pairs)
        res = probe_items(model, tokenizer, items, pool, task=task, source_name=src_name,
                          target_name=shown[lang], batch_size=batch_size, seed=seed, template=template,
                          label=shown_labels[lang] if task == "cloze" else "")
        decision = regulation_decision(res, chosen)
        suggestion = suggest_pivot_layer(res)
        plot_language_probabilities(res, figures[lang], lang=lang, pivot_layer=chosen, decision=decision)
        entry = {"pairs_file": str(pairs_files[lang]), "target_name": shown[lang], "items": rep.as_dict(),
                 **_summary(res), "decision": decision.as_dict(), "suggestion": suggestion.as_dict(),
                 "figure": figures[lang].name}
        for key, mask in (("single_token_items", res.single_token), ("multi_token_items", ~res.single_token)):
            entry[key] = _summary(res.subset(mask)) if mask.any() else None
        report["languages"][lang] = entry
    write_json_atomic(report_path, report)
    return report


# ----------------------------------------------------------------------------------------------------
# A run's evidence: the base model's lens, read before training (PROM's regulation, lens-local's split)
# ----------------------------------------------------------------------------------------------------

def read_probe_report(path: str, languages: list[str]) -> dict:
    """The probe report ``prom.probe`` names, checked to hold per-layer means for every language."""
    try:
        report = parse_json(Path(path).read_text(encoding="utf-8"))
        per_lang = report["languages"]
        if not all(isinstance(v[side]["mean"], list) for v in per_lang.values() for side in ("p_en", "p_tgt")):
            raise ValueError("its p_en/p_tgt means are not lists")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PivotuneError(f"prom.probe: cannot read a probe report from {path} ({type(e).__name__}: {e}); write "
                            "one with `pivotune probe MODEL --pairs LANG=FILE --out DIR` and point to "
                            "DIR/probe.json.") from None
    missing = [lang for lang in languages if lang not in per_lang]
    if missing:
        raise PivotuneError(f"prom.probe: {path} has no probe for {missing} (it has {sorted(per_lang)}).")
    return report


def probe_inputs(settings) -> list[str]:
    """The files a run's lens evidence reads (``settings``: the run config's ``prom`` section)."""
    return [p for p in (settings.probe, *(settings.probe_pairs or {}).values()) if p]


def base_model_lens(settings, languages: list[str], *, model_name: str, model, tokenizer, run_dir: Path,
                    pivot_layer: int, seed: int) -> tuple[dict[str, dict], str]:
    """Each language's logit lens on the base model, read before training: from ``settings.probe`` (a probe.json,
    checked against the model's depth) or by probing ``settings.probe_pairs`` now (RUN/probe/, with decisions at
    ``pivot_layer``). ``settings``: the run config's ``prom`` section. Returns ({language: its probe.json entry,
    per-layer means ``p_en`` / ``p_tgt`` included}, the path of the evidence)."""
    from ..io import child_path

    num_layers = arch_info(model).num_layers
    if settings.probe:
        report = read_probe_report(settings.probe, languages)
        per_lang = report["languages"]
        if report.get("num_layers") != num_layers or len(per_lang[languages[0]]["p_en"]["mean"]) != num_layers + 1:
            raise PivotuneError(f"prom.probe: {settings.probe} was made on a model with {report.get('num_layers')} "
                                f"blocks; this run's model has {num_layers}. Probe the base model of this run.")
        return {lang: per_lang[lang] for lang in languages}, settings.probe
    probe_dir = child_path(run_dir, "probe")
    report = run_probe(model_name, {lang: settings.probe_pairs[lang] for lang in languages}, probe_dir,
                       pivot_layer=pivot_layer, names=settings.probe_names, seed=seed, model=model, tokenizer=tokenizer,
                       template=settings.probe_template, task=settings.probe_task, labels=settings.probe_labels,
                       force=True)   # RUN/probe: the run owns its directory
    return {lang: report["languages"][lang] for lang in languages}, str(probe_dir / "probe.json")


def evidence_problems(settings, languages: list[str], *, method: str, reads: str, languages_for: str, hint: str,
                      tail: str = "") -> list[str]:
    """What stops a method that reads the base model's logit lens (``reads``: what it decides from it) before
    any model loads: no target languages, no evidence (``settings``: the run config's ``prom`` section, whose
    ``probe`` or ``probe_pairs`` name it), a probe report or word-pair file that is missing or does not parse, a
    language without a word-pair file or a name for the probe prompts. ``hint``: the setting that replaces the
    evidence; ``tail``: a last sentence for the no-evidence message."""
    s = settings
    if not languages:
        return [f"method '{method}' needs `languages` ({languages_for})."]
    problems = []
    if s.probe:
        try:
            read_probe_report(s.probe, languages)
        except PivotuneError as e:
            problems.append(str(e))
    elif s.probe_pairs:
        missing = [lang for lang in languages if lang not in s.probe_pairs]
        if missing:
            problems.append(f"prom.probe_pairs has no word-pair file for {missing}; every language in "
                            f"`languages` needs one (or set {hint} for it).")
        cloze = s.probe_task == "cloze"   # cloze prompts name no language; they need the word for 'Answer'
        for lang in [*([] if cloze else ["en"]), *(x for x in languages if x in s.probe_pairs)]:
            try:
                if lang == "en":
                    language_display_name(lang, s.probe_names)
                elif cloze:
                    read_cloze_file(s.probe_pairs[lang])
                    answer_label(lang, s.probe_labels)
                else:
                    read_word_pairs(s.probe_pairs[lang])
                    language_display_name(lang, s.probe_names)
            except PivotuneError as e:
                problems.append(f"prom.probe_pairs.{lang}: {e}" if lang != "en" else str(e))
    else:
        problems.append(
            f"method '{method}' {reads} from the logit lens, and this config gives it no evidence: set "
            "prom.probe_pairs (a word-pair file per target language), or prom.probe (a probe.json from "
            f"`pivotune probe`), or {hint} yourself.{tail}")
    return problems


def _key_values(items, option: str, extra: list[str]) -> dict[str, str]:
    """``LANG=VALUE`` items as a dict, each LANG checked as a language code (``extra``: declared codes)."""
    from ..languages import CLI_HATCH, check_code

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise PivotuneError(f"{option} expects LANG=VALUE, got '{item}'.")
        check_code(key, f"{option} {item!r}", extra=extra, hatch=CLI_HATCH)
        if key in out:
            raise PivotuneError(f"{option}: language '{key}' given twice.")
        out[key] = value
    return out


def cli_probe(args) -> int:
    """``pivotune probe`` (the parser lives in :mod:`pivotune.cli`)."""
    from ..languages import CLI_HATCH, check_code, declared

    extra = declared(args.extra_languages, "--extra-languages")
    source_lang = check_code(args.source_lang, "--source-lang", extra=extra, hatch=CLI_HATCH)
    report = run_probe(args.model, _key_values(args.pairs, "--pairs", extra), args.out, pivot_layer=args.pivot_layer,
                       task=args.task, batch_size=args.batch_size, names=_key_values(args.names, "--names", extra),
                       source_lang=source_lang, seed=args.seed, dtype=args.dtype, template=args.template,
                       labels=_key_values(args.labels, "--labels", extra), force=args.force)
    for lang, entry in report["languages"].items():
        items = entry["items"]
        print(f"{lang}: {items['kept']} items ({items['single_token']} single-token, {items['multi_token']} "
              f"multi-token); {entry['decision']['text']}; suggested pivot layer {entry['suggestion']['layer']}")
    print(f"wrote {Path(args.out) / 'probe.json'} and lens_*.png")
    return 0

