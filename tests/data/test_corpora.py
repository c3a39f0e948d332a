import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlakit.data.corpora import (
    CorpusOptions,
    doc_id_prefix,
    iter_corpus,
    regenerate_assistant_turns,
)
from nlakit.errors import NLAKitError

CHATS = [
    [
        {"role": "user", "content": "Tell me about soup."},
        {"role": "assistant", "content": "Soup is warm."},
    ],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ],
]


def docs(spec, tokenizer, **options):
    stats = collections.Counter()
    out = list(iter_corpus(str(spec), tokenizer, CorpusOptions(**options), stats=stats))
    return out, stats


def test_local_formats(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text("first line doc\n\nsecond line doc\n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "a json doc"}) + "\n" + json.dumps({"text": "  "}) + "\n"
    )
    pq.write_table(pa.table({"text": ["a parquet doc"]}), tmp_path / "c.parquet")
    out, stats = docs(tmp_path, tokenizer)
    assert [d.text for d in out] == [
        "first line doc",
        "second line doc",
        "a json doc",
        "a parquet doc",
    ]
    # ids are "{corpus}:{split}:{stream position}"; the empty one is 3
    assert [d.doc_id for d in out] == [f"{tmp_path}:train:{i}" for i in (0, 1, 2, 4)]
    assert stats == {"read": 5, "empty": 1}
    assert all(d.add_special_tokens and d.source == "text" for d in out)


def test_skip_resumes_mid_stream(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text("\n".join(f"doc {i}" for i in range(10)))
    out = list(iter_corpus(str(tmp_path / "a.txt"), tokenizer, skip=7))
    assert [d.doc_id for d in out] == [f"{tmp_path / 'a.txt'}:train:{i}" for i in (7, 8, 9)]


def test_chat_records_are_rendered_with_the_chat_template(tmp_path, tokenizer):
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps({"messages": c}) for c in CHATS))
    out, _ = docs(tmp_path, tokenizer, messages_field="messages")
    assert out[0].text == tokenizer.apply_chat_template(CHATS[0], tokenize=False)
    assert out[0].text.startswith(tokenizer.bos_token) and not out[0].add_special_tokens
    ids = tokenizer(out[0].text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1


def test_regenerate_assistant_replaces_assistant_turns(make_model, tokenizer):
    model = make_model("qwen3")
    new = regenerate_assistant_turns(CHATS, model, tokenizer, CorpusOptions(max_new_tokens=5))
    for old, fresh in zip(CHATS, new, strict=True):
        assert [m["role"] for m in old] == [m["role"] for m in fresh]
        for a, b in zip(old, fresh, strict=True):
            if a["role"] == "user":
                assert a == b
            else:
                assert b["content"] != a["content"]
    assert CHATS[0][1]["content"] == "Soup is warm."  # the input is not modified


def test_hf_dataset_from_a_local_directory(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "data.jsonl").write_text(
        "\n".join(json.dumps({"body": f"text {i}"}) for i in range(3))
    )
    out, _ = docs(f"hf:{tmp_path}", tokenizer, text_field="body")
    assert [d.text for d in out] == ["text 0", "text 1", "text 2"]
    assert [d.doc_id for d in out] == [f"{tmp_path}:train:{i}" for i in range(3)]


@pytest.mark.parametrize(
    ("spec", "prefix"),
    [
        ("hf:HuggingFaceFW/fineweb", "HuggingFaceFW/fineweb:train"),
        ("hf:HuggingFaceFW/fineweb:sample-10BT@train", "HuggingFaceFW/fineweb:train"),
        ("hf:allenai/c4:en@validation", "allenai/c4:validation"),
        ("data/docs.jsonl", "data/docs.jsonl:train"),
    ],
)
def test_doc_ids_follow_the_official_corpus_split_index_shape(spec, prefix):
    assert doc_id_prefix(spec) == prefix


def test_toyworld_corpus(small_world, tokenizer):
    out, _ = docs(f"toyworld:{small_world}", tokenizer)
    assert len(out) == 360 and out[5].doc_id == "5" and out[5].source in ("text", "chat")
    assert {d.source for d in out} == {"text", "chat"}


@pytest.mark.parametrize(
    ("files", "options", "match"),
    [
        ({"a.jsonl": '{"body": "x"}\n'}, {}, r"no field 'text'.*fields: \['body'\]"),
        ({"a.jsonl": '{"text": "x"}\n'}, {"messages_field": "messages"}, "no field 'messages'"),
        ({"a.jsonl": '{"messages": "hello"}\n'}, {"messages_field": "messages"}, "list of"),
        ({"a.jsonl": "not json\n"}, {}, r"a\.jsonl:1: not valid JSON"),
        ({"a.csv": "x"}, {}, "expected .txt"),
    ],
)
def test_bad_corpora(tmp_path, tokenizer, files, options, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(NLAKitError, match=match):
        docs(tmp_path / next(iter(files)), tokenizer, **options)


def test_non_utf8_file_names_file_and_offset(tmp_path, tokenizer):
    (tmp_path / "bad.txt").write_bytes(b"fine line\ncaf\xe9 au lait\n")
    with pytest.raises(NLAKitError, match=r"bad\.txt: not UTF-8 .*0xe9 at byte offset 13"):
        docs(tmp_path / "bad.txt", tokenizer)


def test_missing_corpus(tmp_path, tokenizer):
    with pytest.raises(NLAKitError, match="no such file"):
        docs(tmp_path / "nope", tokenizer)
