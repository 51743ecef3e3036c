"""IndicQA (ai4bharat) as harness tasks, read from local files.

The dataset is distributed with a loading script, which the ``datasets`` library no longer runs,
so pivotune reads the files themselves. To obtain them (once, on a machine with hub access)::

    huggingface-cli download ai4bharat/IndicQA --repo-type dataset --local-dir indicqa

then pass ``--indicqa-dir indicqa`` to ``pivotune eval``. For each language the first file found
under that directory (searched recursively) named ``indicqa.LANG.json`` (the dataset's own files),
``LANG.json``, ``LANG.jsonl`` or ``LANG.parquet`` is read. Accepted layouts: SQuAD's nested JSON
(``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
"answer_start"}]}]}]}]}``), or flat rows with ``context``, ``question`` and ``answers`` (either
``{"text": [...], "answer_start": [...]}`` or a list of ``{"text", "answer_start"}``). Items with
no non-empty answer are unanswerable; they stay in and score as described in ``task_utils``.

Prompt labels are written in each language (the PROM paper prompts in the target language); they
are pivotune's own translations of "Context", "Question" and "Answer".
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import DataError, PivotuneError, located
from ..io import child_path, parse_json, write_jsonl_atomic, write_text_atomic
from .registry import INDICQA_LANGS, TASKS_DIR

LABELS: dict[str, tuple[str, str, str]] = {    # context, question, answer
    "as": ("প্ৰসংগ", "প্ৰশ্ন", "উত্তৰ"),
    "bn": ("প্রসঙ্গ", "প্রশ্ন", "উত্তর"),
    "gu": ("સંદર્ભ", "પ્રશ્ન", "જવાબ"),
    "hi": ("संदर्भ", "प्रश्न", "उत्तर"),
    "kn": ("ಸಂದರ್ಭ", "ಪ್ರಶ್ನೆ", "ಉತ್ತರ"),
    "ml": ("സന്ദർഭം", "ചോദ്യം", "ഉത്തരം"),
    "mr": ("संदर्भ", "प्रश्न", "उत्तर"),
    "or": ("ପ୍ରସଙ୍ଗ", "ପ୍ରଶ୍ନ", "ଉତ୍ତର"),
    "pa": ("ਪ੍ਰਸੰਗ", "ਸਵਾਲ", "ਜਵਾਬ"),
    "ta": ("சூழல்", "கேள்வி", "பதில்"),
    "te": ("సందర్భం", "ప్రశ్న", "సమాధానం"),
}
assert set(LABELS) == set(INDICQA_LANGS)

HOW_TO_GET = ("Obtain the data with `huggingface-cli download ai4bharat/IndicQA --repo-type dataset "
              "--local-dir indicqa` and pass --indicqa-dir indicqa.")


def find_file(data_dir: str | Path, lang: str) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise PivotuneError(f"IndicQA data directory {data_dir} does not exist. {HOW_TO_GET}")
    if data_dir.is_file():
        return data_dir
    names = (f"indicqa.{lang}.json", f"{lang}.json", f"{lang}.jsonl", f"{lang}.parquet")
    for name in names:
        hits = sorted(data_dir.rglob(name))
        if hits:
            return hits[0]
    raise PivotuneError(f"no IndicQA file for language {lang!r} under {data_dir} (looked for "
                        f"{', '.join(names)}, in any subdirectory). {HOW_TO_GET}")


def _raw_rows(path: Path) -> list[dict]:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = []
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(parse_json(line))
                    except ValueError as e:
                        raise DataError(f"{located(str(path), i)}: not valid JSON ({e}).") from None
            return rows
        data = parse_json(text)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e}).") from None
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}).") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows or SQuAD's {{\"data\": [...]}}, got "
                        f"{type(data).__name__}.")
    if data and isinstance(data[0], dict) and "paragraphs" in data[0]:   # SQuAD nesting
        flat = []
        for article in data:
            for para in article.get("paragraphs", []):
                for qa in para.get("qas", []):
                    flat.append({"id": qa.get("id"), "context": para.get("context"),
                                 "question": qa.get("question"), "answers": qa.get("answers")})
        return flat
    return data


def _answers(value, where: str) -> dict:
    if value is None:
        return {"text": [], "answer_start": []}
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        starts = value.get("answer_start") or [-1] * len(value["text"])
        return {"text": [str(t) for t in value["text"]], "answer_start": [int(s) for s in starts]}
    if isinstance(value, list) and all(isinstance(a, dict) and "text" in a for a in value):
        return {"text": [str(a["text"]) for a in value],
                "answer_start": [int(a.get("answer_start", -1)) for a in value]}
    raise DataError(f"{where}: 'answers' must be {{\"text\": [...], \"answer_start\": [...]}} or a list of "
                    f"{{\"text\", \"answer_start\"}}, got {json.dumps(value, ensure_ascii=False)[:80]}.")


def read_indicqa(path: str | Path) -> list[dict]:
    """Flat, validated rows ``{id, context, question, answers: {text, answer_start}}``."""
    path = Path(path)
    rows = []
    for i, raw in enumerate(_raw_rows(path), 1):
        where = located(str(path), i)
        if not isinstance(raw, dict):
            raise DataError(f"{where}: expected an object, got {type(raw).__name__}.")
        for field in ("context", "question"):
            if not isinstance(raw.get(field), str) or not raw[field].strip():
                raise DataError(f"{located(str(path), i, field)}: missing or empty (IndicQA rows need "
                                "context, question and answers).", path=str(path), row=i, field=field)
        rows.append({"id": str(raw.get("id", i)), "context": raw["context"], "question": raw["question"],
                     "answers": _answers(raw.get("answers"), located(str(path), i, "answers"))})
    if not rows:
        raise DataError(f"{path}: no IndicQA items.")
    return rows


def write_tasks(data_dir: str | Path, langs: list[str], out_dir: str | Path,
                limit: int | None = None) -> list[str]:
    """Write ``pivotune_indicqa_LANG`` task files and their JSON-lines data under ``out_dir``."""
    unknown = [l for l in langs if l not in LABELS]
    if unknown:
        raise PivotuneError(f"IndicQA has no language {unknown}; it has {', '.join(INDICQA_LANGS)}.")
    out_dir = Path(out_dir)
    names = []
    for lang in langs:
        rows = read_indicqa(find_file(data_dir, lang))
        data = child_path(out_dir, f"indicqa_{lang}.jsonl")
        write_jsonl_atomic(data, rows[:limit] if limit else rows)
        ctx, q, a = LABELS[lang]
        name = f"pivotune_indicqa_{lang}"
        cfg = {"include": str(TASKS_DIR / "indicqa" / "pivotune_indicqa_common_yaml"), "task": name,
               "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
               "doc_to_text": f"{ctx}: {{{{context}}}}\n\n{q}: {{{{question}}}}\n\n{a}:"}
        write_text_atomic(child_path(out_dir, f"{name}.yaml"), yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
        names.append(name)
    return names
