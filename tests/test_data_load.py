"""Data loading: every format reads, every bad input gives a clear, located error."""

from __future__ import annotations

import json

import pytest

from pivotune.data.load import LoadResult, load_instructions, load_parallel
from pivotune.data.records import ParallelPair, Sample
from pivotune.errors import DataError

ALPACA = [
    {"instruction": "Say hi", "input": "", "output": "Hi!"},
    {"instruction": "Add", "input": "2 + 2", "output": "4"},
]
CHAT = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Hi."}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def load(path, **kw):
    kw.setdefault("role", "tgt")
    kw.setdefault("lang", "th")
    return load_instructions(path, **kw)


def error(fn, *args, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    return info.value


# ------------------------------------------------------------------ good instruction data

def test_alpaca_jsonl(tmp_path):
    p = jsonl(tmp_path / "alpaca_th.jsonl", ALPACA)
    res = load(p, weight=0.5)
    assert isinstance(res, LoadResult) and len(res) == 2 and res.skipped == []
    s = res.records[1]
    assert isinstance(s, Sample)
    assert (s.instruction, s.input, s.output) == ("Add", "2 + 2", "4")
    assert (s.role, s.lang, s.source, s.weight) == ("tgt", "th", "alpaca_th", 0.5)
    assert s.messages is None
    assert s.origin == f"{p}, line 2"
    assert "loaded 2 of 2 rows" in res.summary()


def test_alpaca_json_array_with_line_origins(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    res = load(p, source="alpaca")
    assert [s.output for s in res] == ["Hi!", "4"]
    assert res.records[0].source == "alpaca"
    assert res.records[0].origin == f"{p}, line 2 (array index 0)"
    assert res.records[1].origin == f"{p}, line 7 (array index 1)"


def test_json_extension_holding_jsonl_and_input_optional_and_bom(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"instruction": "a", "output": "b"}\n\n'
                  b'{"instruction": "c", "input": null, "output": "d"}\r\n')
    res = load(p)
    assert [(s.instruction, s.input, s.output) for s in res] == [("a", "", "b"), ("c", "", "d")]
    assert res.records[1].origin.endswith("line 3")     # blank line skipped, still counted


def test_chat_jsonl(tmp_path):
    res = load(jsonl(tmp_path / "chat.jsonl", CHAT))
    s = res.records[0]
    assert s.messages == ({"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hello"},
                          {"role": "assistant", "content": "Hi."})
    assert s.instruction == s.output == ""
    assert len(res) == 2


def test_field_renaming(tmp_path):
    rows = [{"prompt": "p1", "completion": "c1", "id": 1}, {"prompt": "p2", "completion": "c2"}]
    res = load(jsonl(tmp_path / "r.jsonl", rows),
               fields={"instruction": "prompt", "output": "completion"})
    assert [(s.instruction, s.output) for s in res] == [("p1", "c1"), ("p2", "c2")]


def test_field_renaming_error_names_the_users_column(tmp_path):
    p = jsonl(tmp_path / "r.jsonl", [{"prompt": "p1", "completion": ""}])
    err = error(load, p, fields={"instruction": "prompt", "output": "completion"})
    assert "line 1, field 'completion' (used as 'output')" in str(err)


def test_unknown_field_mapping(tmp_path):
    p = jsonl(tmp_path / "r.jsonl", ALPACA)
    assert "unknown field 'answer'" in str(error(load, p, fields={"answer": "x"}))


def test_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    p = tmp_path / "a.parquet"
    datasets.Dataset.from_list(ALPACA).to_parquet(str(p))
    res = load(p)
    assert [s.output for s in res] == ["Hi!", "4"]
    assert res.records[0].origin == f"{p}, row 1"
    assert list(tmp_path.iterdir()) == [p]              # loading wrote nothing


def test_parquet_chat_and_bad_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    p = tmp_path / "c.parquet"
    bad = {"messages": [{"role": "user", "content": "q"}]}
    datasets.Dataset.from_list(CHAT + [bad]).to_parquet(str(p))
    err = error(load, p)
    assert f"{p}, row 3, field 'messages'" in str(err) and "no assistant turn" in str(err)
    assert len(load(p, skip_invalid=True)) == 2


def test_csv_keeps_cells_as_strings(tmp_path):
    pytest.importorskip("datasets")
    p = tmp_path / "a.csv"
    p.write_text("instruction,input,output\nCount,,42\nSay,x,NA\n", encoding="utf-8")
    res = load(p)
    assert [(s.input, s.output) for s in res] == [("", "42"), ("x", "NA")]


# ------------------------------------------------------------------ bad instruction data

@pytest.mark.parametrize("row, field, words", [
    ({"input": "x", "output": "y"}, "instruction", "missing"),
    ({"instruction": "x"}, "output", "missing"),
    ({"instruction": "x", "output": ""}, "output", "empty"),
    ({"instruction": "  ", "output": "y"}, "instruction", "empty"),
    ({"instruction": "x", "output": 42}, "output", "got a number (42)"),
    ({"instruction": "x", "output": ["a", "b"]}, "output", "got a list"),
    ({"instruction": "x", "input": 3, "output": "y"}, "input", "got a number"),
    ({"instruction": "x", "output": None}, "output", "null"),
])
def test_bad_alpaca_row(tmp_path, row, field, words):
    p = jsonl(tmp_path / "bad.jsonl", [ALPACA[0], ALPACA[1], row])
    err = error(load, p)
    msg = str(err)
    assert f"{p}, line 3, field '{field}'" in msg
    assert words in msg and "--skip-invalid" in msg and "\n" not in msg
    assert (err.path, err.row, err.field) == (str(p), 3, field)


def test_bad_element_in_json_array_names_index_and_line(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(ALPACA + [{"instruction": "x", "output": 7}], indent=2))
    msg = str(error(load, p))
    assert f"{p}, line 12 (array index 2), field 'output'" in msg and "number" in msg


def test_malformed_json_line(tmp_path):
    p = jsonl(tmp_path / "m.jsonl", [ALPACA[0], '{"instruction": "x", "output": '])
    err = error(load, p)
    assert f"{p}, line 2:" in str(err) and "malformed JSON" in str(err)
    assert err.row == 2 and "--skip-invalid" in str(err)


def test_malformed_json_array(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "c" "output": 1}\n]')
    msg = str(error(load, p))
    assert f"{p}, line 3" in msg and "malformed JSON array" in msg and "--skip-invalid" in msg


def test_undecodable_bytes_name_the_line(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    err = error(load, p)
    assert f"{p}, line 2:" in str(err) and "UTF-8" in str(err) and "0xe9" in str(err)
    res = load(p, skip_invalid=True)
    assert len(res) == 1 and res.skipped[0].startswith(f"{p}, line 2: ")


def test_undecodable_bytes_in_json_array(tmp_path):
    p = tmp_path / "u.json"
    p.write_bytes(b'[\n{"instruction": "a", "output": "b"},\n{"instruction": "\xff", "output": "c"}]')
    msg = str(error(load, p))
    assert f"{p}, line 3" in msg and "UTF-8" in msg


def test_not_an_object_and_no_known_fields(tmp_path):
    p = jsonl(tmp_path / "n.jsonl", [[1, 2]])
    assert f"{p}, line 1: expected an object" in str(error(load, p))
    p = jsonl(tmp_path / "k.jsonl", [{"question": "a", "answer": "b"}])
    msg = str(error(load, p))
    assert f"{p}, line 1" in msg and "neither" in msg and "fields=" in msg


@pytest.mark.parametrize("messages, field, words", [
    ([{"role": "user", "content": "q"}], "messages", "no assistant turn"),
    ([{"role": "assistant", "content": "a"}], "messages", "no user turn"),
    ([{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}], "messages[1].role",
     "bad role 'bot'"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}],
     "messages[1].content", "got a number"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}],
     "messages[1].content", "empty"),
    ("hello", "messages", "expected a list of turns"),
    ([{"role": "user", "content": "q"}, "a"], "messages[1]", "expected a turn object"),
])
def test_bad_chat_row(tmp_path, messages, field, words):
    p = jsonl(tmp_path / "c.jsonl", [CHAT[0], {"messages": messages}])
    msg = str(error(load, p))
    assert f"{p}, line 2, field '{field}'" in msg and words in msg and "--skip-invalid" in msg


def test_mixed_forms_is_an_error(tmp_path):
    p = jsonl(tmp_path / "mix.jsonl", [ALPACA[0], CHAT[0]])
    msg = str(error(load, p))
    assert f"{p}, line 2" in msg and "chat form" in msg and "Alpaca form (from line 1)" in msg
    res = load(p, skip_invalid=True)
    assert len(res) == 1 and res.records[0].output == "Hi!"


def test_form_comes_from_first_valid_row(tmp_path):
    p = jsonl(tmp_path / "f.jsonl", [{"messages": "bad"}, ALPACA[0], ALPACA[1]])
    res = load(p, skip_invalid=True)
    assert len(res) == 2 and len(res.skipped) == 1


def test_file_not_found(tmp_path):
    p = tmp_path / "nope" / "data.jsonl"
    msg = str(error(load, str(p)))
    assert "file not found" in msg and str(p) in msg


def test_missing_file_under_existing_folder_is_not_taken_for_a_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    msg = str(error(load, "data/alpaca"))
    assert "file not found: data/alpaca" in msg


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_text("x")
    msg = str(error(load, p))
    assert "unknown data format" in msg and "'.xlsx'" in msg and str(p) in msg


def test_empty_file(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n\n")
    assert "no rows in" in str(error(load, p))


# ------------------------------------------------------------------ skip_invalid

def test_skip_invalid_counts_and_locations(tmp_path):
    p = jsonl(tmp_path / "s.jsonl", [ALPACA[0], {"instruction": "x", "output": ""}, "{oops",
                                     ALPACA[1], {"instruction": "y", "output": 1}])
    res = load(p, skip_invalid=True)
    assert [s.output for s in res] == ["Hi!", "4"]
    assert res.total == 5 and len(res.skipped) == 3
    assert res.skipped[0] == f"{p}, line 2, field 'output': field is empty; expected a non-empty string"
    assert res.skipped[1].startswith(f"{p}, line 3: malformed JSON")
    assert res.skipped[2].startswith(f"{p}, line 5, field 'output': expected a string")
    assert "loaded 2 of 5 rows, skipped 3 invalid" in res.summary()


def test_all_invalid_is_an_error(tmp_path):
    p = jsonl(tmp_path / "all.jsonl", [{"instruction": "x"}, {"output": "y", "instruction": ""}])
    msg = str(error(load, p, skip_invalid=True))
    assert f"no valid rows in {p}: 2 rows, all invalid; first problem: {p}, line 1, field 'output'" in msg


# ------------------------------------------------------------------ hub names

def test_hub_name_offline_gives_clear_error(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The env vars are read when the libraries are imported; patch the live flags too.
    import datasets.config
    import huggingface_hub.constants
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    err = error(load, "nonexistent-org/nonexistent-dataset")
    msg = str(err)
    assert "could not load dataset 'nonexistent-org/nonexistent-dataset'" in msg
    assert "local path" in msg and "Traceback" not in msg
    assert err.__cause__ is not None
    err = error(load_parallel, "nonexistent-org/nonexistent-dataset", tgt_lang="th")
    assert "could not load dataset" in str(err)


# ------------------------------------------------------------------ parallel

def test_parallel_two_text_files(tmp_path):
    src, tgt = tmp_path / "eng_Latn.dev", tmp_path / "tha_Thai.dev"
    src.write_text("Hello.\nGood night. \n", encoding="utf-8")
    tgt.write_bytes("\ufeffสวัสดี\r\nราตรีสวัสดิ์\r\n".encode("utf-8"))
    res = load_parallel(src, tgt, tgt_lang="th")
    assert res.records == [
        ParallelPair("Hello.", "สวัสดี", "en", "th", f"{src}, line 1"),
        ParallelPair("Good night.", "ราตรีสวัสดิ์", "en", "th", f"{src}, line 2"),
    ]


def test_parallel_line_count_mismatch(tmp_path):
    src, tgt = tmp_path / "a.en", tmp_path / "a.th"
    src.write_text("a\nb\nc\n")
    tgt.write_text("x\ny\n")
    msg = str(error(load_parallel, src, tgt, tgt_lang="th"))
    assert str(src) in msg and str(tgt) in msg and "3 lines" in msg and "has 2" in msg


def test_parallel_empty_side_and_bad_bytes(tmp_path):
    src, tgt = tmp_path / "a.en", tmp_path / "a.th"
    src.write_text("a\n\nc\nd\n")
    tgt.write_bytes(b"x\ny\nz\n\xff\n")
    msg = str(error(load_parallel, src, tgt, tgt_lang="th"))
    assert f"{src}, line 2: empty line" in msg
    res = load_parallel(src, tgt, tgt_lang="th", skip_invalid=True)
    assert [(p.source, p.target) for p in res] == [("a", "x"), ("c", "z")]
    assert res.skipped[1].startswith(f"{tgt}, line 4: bytes are not valid UTF-8")   # the file that holds them


def test_parallel_tsv(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_text("source\ttarget\nHello.\tสวัสดี\nOne\ttwo\tthree\n", encoding="utf-8")
    msg = str(error(load_parallel, p, tgt_lang="th"))
    assert f"{p}, line 3: expected 2 tab-separated columns" in msg and "found 3" in msg
    res = load_parallel(p, tgt_lang="th", skip_invalid=True)
    assert [(x.source, x.target) for x in res] == [("Hello.", "สวัสดี")]
    assert res.records[0].origin == f"{p}, line 2" and res.total == 2


def test_parallel_jsonl_with_field_names(tmp_path):
    p = jsonl(tmp_path / "p.jsonl", [{"en": "Hi", "th": "สวัสดี"}, {"en": "Bye", "th": "ลาก่อน"}])
    res = load_parallel(p, tgt_lang="th", source_field="en", target_field="th")
    assert [(x.source, x.target, x.tgt_lang) for x in res] == [
        ("Hi", "สวัสดี", "th"), ("Bye", "ลาก่อน", "th")]
    msg = str(error(load_parallel, p, tgt_lang="th"))
    assert f"{p}, line 1, field 'source'" in msg and "missing" in msg and "source_field" in msg


def test_parallel_jsonl_wrong_type(tmp_path):
    p = jsonl(tmp_path / "p.jsonl", [{"source": "Hi", "target": 3}])
    msg = str(error(load_parallel, p, tgt_lang="th"))
    assert f"{p}, line 1, field 'target'" in msg and "got a number" in msg


def test_parallel_plain_text_needs_target(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("a\n")
    assert "target_spec" in str(error(load_parallel, p, tgt_lang="th"))


def test_loading_writes_nothing(tmp_path):
    p = jsonl(tmp_path / "a.jsonl", ALPACA)
    load(p)
    assert list(tmp_path.iterdir()) == [p]


def test_json_file_with_one_wrapping_object(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"data": ALPACA}, indent=2))
    msg = str(error(load, p))
    assert str(p) in msg and "not an array of records" in msg and "'data'" in msg
