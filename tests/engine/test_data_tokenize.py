"""Templates, assistant-only masking, label checks, previews, token counting and chunking on the real SmolLM2 tokenizer."""

from __future__ import annotations

import copy
import json

import pytest

from tests.datasets_dir import DATASETS  # noqa: E402
from training.engine.data import (
    CHAT_TEMPLATES,
    IGNORE_INDEX,
    ChatRenderer,
    DatasetFormat,
    LoadedData,
    as_columns,
    build_sft_dataset,
    check_labels,
    chunk_text,
    end_of_turn_token,
    length_stats,
    load_examples,
    preference_lengths,
    preview_segments,
    render_segments,
    resolve_chat_template,
    token_lengths,
    tokenize_conversation,
    tokenize_example,
    tokenize_text,
)
from training.engine.errors import ConfigError, DataError

CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]
NO_EOT_TEMPLATE = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    return AutoTokenizer.from_pretrained(embedded_model_path())


@pytest.fixture(scope="module")
def bare_tokenizer(tokenizer):
    """The same tokenizer with its chat template removed."""
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    return bare


def _trained_groups(tokenizer, example) -> list[str]:
    """Decode every maximal run of trained tokens."""
    groups, current = [], []
    for tok, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == tok
            current.append(tok)
        elif current:
            groups.append(tokenizer.decode(current))
            current = []
    if current:
        groups.append(tokenizer.decode(current))
    return groups


def _loaded(examples, fmt=DatasetFormat.MESSAGES) -> LoadedData:
    return LoadedData(format=fmt, examples=examples, row_errors=[], rows_read=len(examples), sha256="x")


# --- masking on the tokenizer's own ChatML template -------------------------------------------------------------------


def test_only_assistant_content_and_im_end_are_trained(tokenizer):
    ex = tokenize_conversation(tokenizer, CHAT[:2], max_length=256)
    assert _trained_groups(tokenizer, ex) == ["The capital of France is Paris.<|im_end|>"]
    assert ex.input_ids == tokenizer.apply_chat_template(CHAT[:2], tokenize=True, return_dict=False)
    assert not ex.truncated and ex.length_before_truncation == len(ex.input_ids)
    assert ex.num_trained == sum(1 for x in ex.labels if x != IGNORE_INDEX)
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ex.input_ids)) if ex.input_ids[i : i + len(header)] == header)
    assert all(label == IGNORE_INDEX for label in ex.labels[start : start + len(header)])


def test_multi_turn_trains_every_assistant_turn(tokenizer):
    ex = tokenize_conversation(tokenizer, CHAT, max_length=256)
    assert _trained_groups(tokenizer, ex) == ["The capital of France is Paris.<|im_end|>", "Rome.<|im_end|>"]


def test_real_sharegpt_rows_train_each_assistant_turn(tokenizer):
    loaded = load_examples([DATASETS / "sharegpt_conversations.json"], limit=40)
    for example in loaded.examples:
        ex = tokenize_example(tokenizer, example, max_length=4096)
        assistants = [m["content"] for m in example["messages"] if m["role"] == "assistant"]
        assert _trained_groups(tokenizer, ex) == [f"{text}<|im_end|>" for text in assistants]


def test_train_on_all_trains_every_token(tokenizer):
    ex = tokenize_conversation(tokenizer, CHAT, max_length=256, train_on="all")
    assert ex.labels == ex.input_ids and ex.num_trained == len(ex.input_ids)
    with pytest.raises(ConfigError, match="train_on"):
        tokenize_conversation(tokenizer, CHAT, max_length=256, train_on="prompt")  # type: ignore[arg-type]


def test_truncation_cuts_on_the_right_and_counts(tokenizer):
    full = tokenize_conversation(tokenizer, CHAT, max_length=256)
    cut = tokenize_conversation(tokenizer, CHAT, max_length=full.length_before_truncation - 3)
    assert cut.truncated and len(cut.input_ids) == full.length_before_truncation - 3
    assert cut.input_ids == full.input_ids[: len(cut.input_ids)] and cut.labels == full.labels[: len(cut.labels)]
    assert cut.length_before_truncation == full.length_before_truncation
    assert cut.trained_before_truncation == full.num_trained > cut.num_trained


def test_text_examples_train_everything_plus_eos(tokenizer):
    ex = tokenize_text(tokenizer, "Plain pretraining text.", max_length=64)
    assert ex.input_ids[-1] == tokenizer.eos_token_id and ex.labels == ex.input_ids
    assert tokenizer.decode(ex.input_ids) == "Plain pretraining text.<|im_end|>"


# --- label checks ---------------------------------------------------------------------------------------------------------


def test_all_masked_guard_when_only_the_prompt_fits(tokenizer):
    prompt_only = len(
        tokenizer.apply_chat_template(CHAT[:1], tokenize=True, add_generation_prompt=True, return_dict=False)
    )
    loaded = _loaded([{"messages": CHAT[:2]}, {"messages": CHAT}])
    with pytest.raises(DataError) as info:
        build_sft_dataset(loaded, tokenizer, max_length=prompt_only)
    message = str(info.value)
    assert "Every label is masked: no assistant tokens are left to train on after truncation to " in message
    assert f"max_length={prompt_only}" in message and "raise max_length or check the format/mapping" in message


def test_rows_truncated_away_are_counted(tokenizer):
    short = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    examples, report = build_sft_dataset(_loaded([short, long]), tokenizer, max_length=64)
    assert report.rows == 2 and report.all_masked_rows == 1 and report.truncated_away_rows == 1
    assert report.truncated_rows == 1 and report.eot_trained_rows == 1 and report.eot_token == "<|im_end|>"
    assert len(examples) == 1 and report.trained_tokens == examples[0].num_trained
    columns = as_columns(examples)
    assert columns["input_ids"] == [examples[0].input_ids] and columns["labels"] == [examples[0].labels]


def test_it_raises_when_the_end_of_turn_token_is_never_trained(bare_tokenizer):
    # A template that closes assistant turns with a plain newline: nothing ever teaches the model to stop.
    assert end_of_turn_token(bare_tokenizer, NO_EOT_TEMPLATE) == "<|im_end|>"
    examples = [tokenize_conversation(bare_tokenizer, CHAT, max_length=256, chat_template=NO_EOT_TEMPLATE)]
    assert examples[0].num_trained > 0
    with pytest.raises(DataError, match="The end-of-turn token <|im_end|> is never trained: the model would never"):
        check_labels(examples, bare_tokenizer, NO_EOT_TEMPLATE)
    report = check_labels(examples, bare_tokenizer, NO_EOT_TEMPLATE, raise_on_error=False)
    assert report.eot_trained_rows == 0 and report.trained_tokens > 0


def test_preference_data_is_refused_for_sft(tokenizer):
    loaded = _loaded(
        [{"prompt": [CHAT[0]], "chosen": [CHAT[1]], "rejected": [{"role": "assistant", "content": "No."}]}],
        DatasetFormat.PREFERENCE,
    )
    with pytest.raises(DataError, match="preference dataset"):
        build_sft_dataset(loaded, tokenizer, max_length=128)


def test_build_sft_dataset_on_real_alpaca_rows(tokenizer):
    loaded = load_examples([DATASETS / "alpaca_en_demo.json"], limit=60)
    examples, report = build_sft_dataset(loaded, tokenizer, max_length=256)
    assert report.rows == 60 and report.total_tokens == sum(len(e.input_ids) for e in examples)
    assert 0 < report.truncated_rows < 30 and report.all_masked_rows == 0
    assert report.eot_trained_rows == 60 - report.truncated_rows  # a cut row loses its <|im_end|>
    assert all(len(e.input_ids) <= 256 for e in examples)
    first = loaded.examples[0]["messages"][-1]["content"]
    assert _trained_groups(tokenizer, examples[0])[0] == first[: len(_trained_groups(tokenizer, examples[0])[0])]


def test_raw_text_is_packed_into_max_length_blocks_and_no_row_is_cut(tokenizer):
    """Continued pre-training: 300 documents, most longer than max_length, joined with EOS and cut into blocks."""
    rows = json.loads((DATASETS / "alpaca_en_demo.json").read_text())[:300]
    docs = [{"text": f"{r['instruction']}\n{r['input']}\n{r['output']}".replace("\n\n", "\n")} for r in rows]
    loaded = _loaded(docs, DatasetFormat.TEXT)
    whole = [tokenize_text(tokenizer, d["text"], max_length=1 << 20).input_ids for d in docs]
    assert sum(len(ids) > 64 for ids in whole) > 100  # truncating would cut most of them

    blocks, report = build_sft_dataset(loaded, tokenizer, max_length=64)  # packing="auto" packs raw text
    stream = [t for ids in whole for t in ids]
    assert [t for b in blocks for t in b.input_ids] == stream  # every token once, in order
    assert all(len(b.input_ids) == 64 for b in blocks[:-1]) and 2 <= len(blocks[-1].input_ids) <= 64
    assert all(b.labels == b.input_ids for b in blocks)  # loss on every token
    assert report.packed_blocks == len(blocks) == -(-len(stream) // 64) and report.truncated_rows == 0
    assert stream.count(tokenizer.eos_token_id) == 300  # documents joined with EOS

    cut, off = build_sft_dataset(loaded, tokenizer, max_length=64, packing="off")
    assert off.packed_blocks == 0 and off.truncated_rows > 100 and len(cut) == 300


def test_packing_on_joins_chat_rows_and_keeps_their_labels(tokenizer):
    loaded = _loaded([{"messages": CHAT}, {"messages": CHAT[:2]}] * 4)
    rows, _ = build_sft_dataset(loaded, tokenizer, max_length=512, packing="off")
    blocks, report = build_sft_dataset(loaded, tokenizer, max_length=48, packing="on")
    assert [t for b in blocks for t in b.labels] == [t for r in rows for t in r.labels]
    assert report.packed_blocks == len(blocks) > 1 and all(len(b.input_ids) <= 48 for b in blocks)
    with pytest.raises(ConfigError, match="packing must be one of auto, on, off"):
        build_sft_dataset(loaded, tokenizer, max_length=48, packing="yes")


# --- named templates on a tokenizer without one ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHAT_TEMPLATES))
def test_named_templates_render_like_apply_chat_template_and_mask(bare_tokenizer, name):
    template = resolve_chat_template(bare_tokenizer, name)
    renderer = ChatRenderer(bare_tokenizer, name)
    system_chat = [{"role": "system", "content": "Be brief."}, *CHAT]
    for messages in (CHAT, system_chat):
        expected = bare_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
        assert renderer.render(messages) == expected
    eos = bare_tokenizer.eos_token
    assert end_of_turn_token(bare_tokenizer, template) == ("<|im_end|>" if name == "chatml" else eos)
    ex = tokenize_conversation(bare_tokenizer, CHAT, max_length=512, chat_template=name)
    groups = [g.strip() for g in _trained_groups(bare_tokenizer, ex)]
    sep = " " if name == "llama2" else ""  # llama2 writes " {content} </s>"; SmolLM2's EOS is <|im_end|>
    assert groups == [f"The capital of France is Paris.{sep}<|im_end|>", f"Rome.{sep}<|im_end|>"]
    check_labels([ex], bare_tokenizer, name)  # trains the end-of-turn marker


def test_template_resolution(tokenizer, bare_tokenizer):
    assert resolve_chat_template(tokenizer, None) == tokenizer.chat_template
    assert resolve_chat_template(tokenizer, "auto") == tokenizer.chat_template
    assert resolve_chat_template(tokenizer, "alpaca") == CHAT_TEMPLATES["alpaca"]
    assert resolve_chat_template(bare_tokenizer, None) == CHAT_TEMPLATES["chatml"]  # vocab has <|im_start|>
    assert resolve_chat_template(bare_tokenizer, NO_EOT_TEMPLATE) == NO_EOT_TEMPLATE
    with pytest.raises(ConfigError) as info:
        resolve_chat_template(tokenizer, "vicuna")
    assert "Unknown chat template 'vicuna'" in str(info.value)
    assert "alpaca, chatml, llama2, completion" in str(info.value)
    assert end_of_turn_token(tokenizer, resolve_chat_template(tokenizer)) == "<|im_end|>"


# --- previews ---------------------------------------------------------------------------------------------------------------


def test_render_segments_marks_the_trained_spans(tokenizer):
    segments = render_segments(tokenizer, CHAT)
    assert "".join(s.text for s in segments) == tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert [s.text for s in segments if s.trained] == [
        "The capital of France is Paris.<|im_end|>",
        "Rome.<|im_end|>",
    ]
    assert segments[0].text.startswith("<|im_start|>system\n") and not segments[0].trained
    assert not any(s.truncated for s in segments)


def test_render_segments_shows_what_truncation_cuts(tokenizer):
    full = tokenize_conversation(tokenizer, CHAT, max_length=256)
    limit = full.length_before_truncation - 4
    segments = render_segments(tokenizer, CHAT, max_length=limit)
    kept = "".join(s.text for s in segments if not s.truncated)
    assert tokenizer(kept, add_special_tokens=False)["input_ids"] == full.input_ids[:limit]
    assert segments[-1].truncated and not segments[-1].trained
    assert "".join(s.text for s in segments) == tokenizer.apply_chat_template(CHAT, tokenize=False)


# --- counting and chunking ------------------------------------------------------------------------------------------------


def test_token_lengths_match_full_tokenization(tokenizer):
    alpaca = load_examples([DATASETS / "alpaca_en_demo.json"], limit=300).examples
    tricky = [
        {
            "messages": [
                {"role": "user", "content": "Ünïcödé 中文 🙂 x²\x1cy\u00a0z it's 12345 'LL"},
                {"role": "assistant", "content": "  spaced   out\n\n\ttabs <|im_end|> literal"},
            ]
        },
        {"text": "Plain text, naïve café."},
        {"text": "ends with eos<|im_end|>"},
    ]
    examples = alpaca + tricky
    lengths = token_lengths(tokenizer, examples, batch_size=128)
    expected = [tokenize_example(tokenizer, ex, max_length=100_000).length_before_truncation for ex in examples]
    assert lengths == expected


def test_token_lengths_without_the_fast_counter(tokenizer, monkeypatch):
    from training.engine.data import tokenize as module

    monkeypatch.setattr(module.FastTokenCounter, "for_tokenizer", classmethod(lambda cls, tok: None))
    examples = load_examples([DATASETS / "sharegpt_conversations.json"], limit=50).examples
    expected = [tokenize_example(tokenizer, ex, max_length=100_000).length_before_truncation for ex in examples]
    assert token_lengths(tokenizer, examples) == expected


def test_chunk_text_overlaps_and_respects_max_length(tokenizer):
    text = " ".join(json.loads((DATASETS / "alpaca_en_demo.json").read_text(encoding="utf-8"))[0]["output"].split())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = chunk_text(tokenizer, text, max_length=64, overlap=16)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert len(tokenizer(a, add_special_tokens=False)["input_ids"]) <= 65
        tail = tokenizer(a, add_special_tokens=False)["input_ids"][-16:]
        assert tokenizer.decode(tail).strip() in b
    assert chunks[0] == text[: len(chunks[0])] and text.endswith(chunks[-1])
    assert chunk_text(tokenizer, "short", max_length=64) == ["short"]
    assert len(ids) > 64
    with pytest.raises(ConfigError, match="overlap"):
        chunk_text(tokenizer, text, max_length=16, overlap=16)


THIRD_PARTY_TEMPLATES = {
    # Gemma: trims content, calls the assistant "model", closes turns with <end_of_turn>.
    "gemma": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
        "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + "
        "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
    ),
    # Phi-3 style: <|end|> closes turns, EOS only at the very end.
    "phi3": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
    ),
    # Renders the last assistant turn differently from the history (like reasoning templates): prefixes don't match.
    "last_turn_differs": (
        "{% for message in messages %}{% if message.role == 'assistant' and loop.last %}"
        "{{ '<|im_start|>assistant\\n[final] ' + message.content + '<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}


@pytest.mark.parametrize("name", sorted(THIRD_PARTY_TEMPLATES))
def test_masking_works_for_third_party_templates(bare_tokenizer, name):
    template = THIRD_PARTY_TEMPLATES[name]
    eot = end_of_turn_token(bare_tokenizer, template)
    assert eot == {"gemma": "<end_of_turn>", "phi3": "<|end|>", "last_turn_differs": "<|im_end|>"}[name]
    segments = render_segments(bare_tokenizer, CHAT, chat_template=template)
    trained = [s.text for s in segments if s.trained]
    assert len(trained) == 2
    assert trained[0].startswith("The capital of France is Paris.") and trained[0].endswith(eot)
    assert trained[1].endswith(f"Rome.{eot}")
    assert "user" not in "".join(trained) and "<start_of_turn>model" not in "".join(trained)
    ex = tokenize_conversation(bare_tokenizer, CHAT, max_length=512, chat_template=template)
    assert check_labels([ex], bare_tokenizer, template).eot_trained_rows == 1


def test_preference_lengths_and_previews_on_real_hh_rows(tokenizer):
    examples = load_examples([DATASETS / "hh_rlhf_harmless_test.jsonl.gz"], limit=20).examples
    lengths = preference_lengths(tokenizer, examples)
    for ex, (prompt, chosen, rejected) in zip(examples, lengths, strict=True):
        assert prompt == len(
            tokenizer.apply_chat_template(ex["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
        )
        chosen_ids = tokenizer.apply_chat_template([*ex["prompt"], *ex["chosen"]], tokenize=True, return_dict=False)
        assert chosen == len(chosen_ids) and rejected > prompt
    segments = preview_segments(tokenizer, examples[0])
    assert [s.text for s in segments if s.trained] == [examples[0]["chosen"][0]["content"] + "<|im_end|>"]
    text = preview_segments(tokenizer, {"text": "Hello world, again."}, max_length=3)
    assert text[0].trained and text[-1].truncated and "".join(s.text for s in text) == "Hello world, again.<|im_end|>"


def test_length_stats():
    stats = length_stats([5, 1, 9, 3, 7], max_length=6)
    assert stats == {
        "count": 5,
        "min": 1,
        "max": 9,
        "mean": 5.0,
        "p50": 5,
        "p95": 9,
        "p99": 9,
        "total": 25,
        "max_length": 6,
        "over_max_length": 2,
    }
    assert length_stats([]) == {"count": 0}


def test_fast_counter_is_exact_on_adversarial_whitespace_and_unicode(tokenizer):
    import random

    from training.engine.data.counting import FastTokenCounter

    counter = FastTokenCounter.for_tokenizer(tokenizer)
    assert counter is not None  # SmolLM2 is a GPT-2 style byte-level BPE
    rng = random.Random(7)
    pool = [
        " ",
        "  ",
        "a",
        "Z",
        "1",
        ".",
        "'s",
        "\n",
        "\t",
        "\r",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x00",
        "\x85",
        "\xa0",
        "\u1680",
        "\u2003",
        "\u200b",
        "\u2028",
        "\u3000",
        "\ufeff",
        "é",
        "中",
        "²",
        "🙂",
        "<|im_end|>",
        "12345",
    ]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randrange(1, 30))) for _ in range(4000)]
    expected = [len(e.ids) for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert counter.count(texts) == expected
    assert counter.count(texts[:100]) == expected[:100]  # warm cache gives the same


def test_render_for_counting_equals_render(bare_tokenizer):
    conversations = [
        CHAT,
        [{"role": "system", "content": "Be brief."}, *CHAT[:2]],
        [{"role": "user", "content": "  padded  "}, {"role": "assistant", "content": "\nnewline first"}],
        *[ex["messages"] for ex in load_examples([DATASETS / "sharegpt_conversations.json"], limit=80).examples],
    ]
    templates = [*CHAT_TEMPLATES.values(), *THIRD_PARTY_TEMPLATES.values()]
    for template in templates:
        renderer = ChatRenderer(bare_tokenizer, template)
        for messages in conversations:
            assert renderer.render_for_counting(messages) == renderer.render(messages)
            assert renderer.render_for_counting(messages, add_generation_prompt=True) == renderer.render(
                messages, add_generation_prompt=True
            )
    inspecting = (
        "{% for m in messages %}{% if 'secret' in m['content'] %}[redacted]"
        "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    )
    renderer = ChatRenderer(bare_tokenizer, inspecting)
    rows = [[{"role": "user", "content": "hello"}]] * 100 + [[{"role": "user", "content": "my secret"}]]
    assert [renderer.render_for_counting(m) for m in rows] == [renderer.render(m) for m in rows]
