"""GGUF verification on a real llama.cpp runtime (``llama_cpp.Llama``) against the transformers model.

For a few golden chat prompts rendered with the model's own chat template, the very same prompt tokens go to both
runtimes; llama.cpp's greedy answer must match the transformers greedy answer within a ``Tolerance`` chosen by the
GGUF's file type, llama.cpp run teacher-forced over the transformers answer must agree on the logits, the GGUF's
tokenizer must split the prompt into the same tokens, and the chat template must have travelled into the GGUF.
A mismatch raises ``ExportError`` showing both answers; the report (``VerificationReport``) is JSON-safe.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.engine.errors import ExportError

from .base import is_adapter_dir
from .gguf import check_magic, require_runtime

logger = logging.getLogger(__name__)

DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Give three tips for staying healthy.",
    "Write a short poem about the sea.",
)
# llama.cpp's general.file_type values for the types we write.
_FILE_TYPES = {0: "f32", 1: "f16", 7: "q8_0", 15: "q4_k_m", 17: "q5_k_m", 18: "q6_k", 32: "bf16"}
_END = -1  # stands for any end-of-sequence token when comparing answers


@dataclass(frozen=True)
class Tolerance:
    """When llama.cpp's greedy answer counts as the same as the transformers one (checked per golden prompt).

    Greedy answers: the token sequences (each with an end marker when it stopped on EOS) must be identical, or share
    their first ``min_prefix_tokens`` tokens (all of them if the longer answer is shorter) with a difflib similarity of
    at least ``min_similarity`` over the whole answers, or first differ at a *numerical tie*: a position where the
    transformers model scores llama.cpp's token within ``tie_margin`` logits of its own choice, so that rounding the
    weights may legitimately flip the argmax (the continuations are then free to differ).

    Logits: llama.cpp is also run teacher-forced over the transformers answer. At least ``min_argmax_agreement`` of
    those positions must have the same argmax, and no logit may differ by more than ``max_logit_diff``.

    Calibration (SmolLM2-135M, 3,792 teacher-forced positions of 40 alpaca conversations, llama.cpp vs fp32
    transformers): f16 max |dlogit| p99 0.10, max 0.17, argmax flips 3 (0.08%), each with a margin <= 0.015;
    q8_0 max |dlogit| p50 0.93, p99 2.6, max 3.6, argmax flips 168 (4.4%) with margins up to 0.88. So a q8_0 greedy
    answer of this small model often leaves the transformers one at a tie within the first tokens, and the
    teacher-forced logits carry the q8_0 check; a GGUF of a different model (base vs fine-tuned) shows
    max |dlogit| of 33-47 and argmax agreement of 6-75%.

    The k-quants, on the golden prompts (llama.cpp vs fp32 transformers, 24 tokens each; the base SmolLM2-135M-Instruct
    and a LoRA fine-tune of it merged): Q6_K max |dlogit| <= 2.9, argmax agreement >= 0.875 (base); Q5_K_M (Q5_0 for
    the 576-wide tensors) <= 8.0, >= 0.83 (fine-tune); Q4_K_M <= 8.2, >= 0.67; greedy answers first differ at ties of
    margin <= 0.38, Q4_K_M's from the first token. The tolerances sit above the measured error and far below another
    model's 33-47.
    """

    min_prefix_tokens: int
    min_similarity: float
    tie_margin: float
    min_argmax_agreement: float
    max_logit_diff: float


TOLERANCES = {
    "f16": Tolerance(
        min_prefix_tokens=16, min_similarity=0.8, tie_margin=0.25, min_argmax_agreement=0.95, max_logit_diff=1.0
    ),
    "q8_0": Tolerance(
        min_prefix_tokens=8, min_similarity=0.5, tie_margin=1.0, min_argmax_agreement=0.7, max_logit_diff=6.0
    ),
    "q6_k": Tolerance(
        min_prefix_tokens=8, min_similarity=0.4, tie_margin=1.0, min_argmax_agreement=0.75, max_logit_diff=8.0
    ),
    # tie_margin 1.5 (q5_k_m, q4_k_m): llama.cpp's 4-bit model on an AVX2-only machine, and its 5-bit model on an
    # AVX-512 one, opened a creative prompt with another first token that transformers scored 1.03 logits below its
    # own (a near-tie; the answers were both fluent).
    "q5_k_m": Tolerance(
        min_prefix_tokens=2, min_similarity=0.0, tie_margin=1.5, min_argmax_agreement=0.6, max_logit_diff=12.0
    ),
    "q4_k_m": Tolerance(
        min_prefix_tokens=2, min_similarity=0.0, tie_margin=1.5, min_argmax_agreement=0.5, max_logit_diff=12.0
    ),
    "f32": Tolerance(
        min_prefix_tokens=24, min_similarity=0.95, tie_margin=0.05, min_argmax_agreement=0.99, max_logit_diff=0.5
    ),
    "bf16": Tolerance(
        min_prefix_tokens=8, min_similarity=0.5, tie_margin=1.0, min_argmax_agreement=0.8, max_logit_diff=6.0
    ),
}


@dataclass(frozen=True)
class PromptCheck:
    """The outcome for one golden prompt."""

    prompt: str
    prompt_tokens: int
    hf_answer: str
    llama_answer: str
    hf_token_ids: list[int]
    llama_token_ids: list[int]
    common_prefix: int
    required_prefix: int
    similarity: float
    divergence_margin: float | None
    argmax_agreement: float
    max_logit_diff: float
    tokenizer_match: bool
    match: bool
    reason: str


@dataclass(frozen=True)
class VerificationReport:
    """What ``verify_gguf`` compared and found; stored as JSON next to the GGUF."""

    gguf_path: str
    hf_model_dir: str
    quantization: str
    tolerance: dict[str, Any]
    max_new_tokens: int
    checks: list[PromptCheck]
    chat_template_in_gguf: bool
    passed: bool
    tokens_per_second: float  # llama.cpp generation incl. prompt processing and the first call's warm-up
    decode_tokens_per_second: float  # steady generation rate after each answer's first token
    load_seconds: float
    llama_cpp_version: str
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return json.loads(json.dumps(asdict(self)))

    def summary(self) -> str:
        """One paragraph per failing prompt, with both answers."""
        lines = [f"GGUF verification of {self.gguf_path} ({self.quantization}) against {self.hf_model_dir}:"]
        lines += [f"- {problem}" for problem in self.problems]
        for check in self.checks:
            if check.match:
                continue
            lines.append(
                f"- prompt {check.prompt!r}: {check.reason}\n"
                f"    transformers: {check.hf_answer!r}\n"
                f"    llama.cpp:    {check.llama_answer!r}"
            )
        return "\n".join(lines)


# --- comparison ----------------------------------------------------------------------------------------------------


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def compare_answers(
    hf_tokens: Sequence[int],
    llama_tokens: Sequence[int],
    hf_logits: Any,
    tolerance: Tolerance,
    *,
    eos: set[int],
) -> tuple[bool, str, int, int, float, float | None]:
    """Apply the greedy part of ``tolerance`` to two generated token lists (an EOS, if any, last).

    Returns (match, reason, common prefix, required prefix, similarity, margin at the divergence), where the margin is
    how much the transformers model preferred its own token over llama.cpp's there (``hf_logits`` row per step).
    """
    a = [_END if t in eos else int(t) for t in hf_tokens]
    b = [_END if t in eos else int(t) for t in llama_tokens]
    prefix = _common_prefix(a, b)
    required = min(tolerance.min_prefix_tokens, max(len(a), len(b)))
    similarity = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() if (a or b) else 1.0
    margin = None
    if prefix < min(len(hf_tokens), len(llama_tokens), len(hf_logits)):
        row = hf_logits[prefix]
        margin = float(row[hf_tokens[prefix]] - row[llama_tokens[prefix]])
    if a == b:
        return True, "identical", prefix, required, similarity, margin
    if prefix >= required and similarity >= tolerance.min_similarity:
        reason = f"same first {prefix} tokens, then diverged (similarity {similarity:.2f})"
        return True, reason, prefix, required, similarity, margin
    if margin is not None and margin <= tolerance.tie_margin:
        reason = (
            f"diverged at token {prefix}, where the transformers model scores llama.cpp's token only {margin:.3f} "
            f"logits below its own (<= {tolerance.tie_margin}): a numerical tie"
        )
        return True, reason, prefix, required, similarity, margin
    why = f"diverged at token {prefix}, but the first {required} tokens must be identical"
    if prefix >= required:
        why = f"similarity {similarity:.2f} is below {tolerance.min_similarity}"
    if margin is not None:
        why += f"; the transformers model scores llama.cpp's token {margin:.3f} logits below its own"
    return False, why, prefix, required, similarity, margin


def _gguf_quantization(metadata: dict[str, str]) -> str:
    try:
        return _FILE_TYPES.get(int(metadata.get("general.file_type", "-1")), "unknown")
    except ValueError:
        return "unknown"


def _load_tokenizer(hf_model_dir: str) -> Any:
    from transformers import AutoTokenizer

    from .safetensors import resolve_base

    tok_dir = hf_model_dir
    if is_adapter_dir(hf_model_dir) and not (Path(hf_model_dir) / "tokenizer_config.json").exists():
        tok_dir = resolve_base(hf_model_dir, None)
    try:
        return AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot load the tokenizer of {hf_model_dir}: {exc}") from exc


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _hf_greedy(model: Any, prompt_ids: list[int], max_new_tokens: int, eos: set[int], pad: int) -> tuple[Any, ...]:
    """Greedy tokens (EOS included when reached) and the logits of every step as a (steps, vocab) array."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            output_logits=True,
            return_dict_in_generate=True,
            eos_token_id=sorted(eos),
            pad_token_id=pad,
        )
    tokens = [int(t) for t in out.sequences[0, len(prompt_ids) :].tolist()]
    logits = torch.stack([step[0].float() for step in out.logits]).numpy()
    return tokens, logits


def _llama_greedy(llm: Any, prompt_ids: list[int], max_new_tokens: int, eos: set[int]) -> tuple[Any, ...]:
    """llama.cpp's greedy tokens (EOS included when reached), seconds in all, seconds after the first token."""
    tokens: list[int] = []
    started = time.perf_counter()
    first_at = None
    for tok in llm.generate(prompt_ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        if first_at is None:
            first_at = time.perf_counter()
        tokens.append(int(tok))
        if tok in eos or len(tokens) >= max_new_tokens:
            break
    ended = time.perf_counter()
    return tokens, ended - started, ended - (first_at or ended)


def _teacher_forced(llm: Any, prompt_ids: list[int], hf_tokens: list[int], hf_logits: Any) -> tuple[float, float]:
    """Run llama.cpp over prompt + the transformers answer: (argmax agreement, max |logit diff|) on answer steps."""
    import numpy as np

    steps = len(hf_logits)
    if steps == 0:
        return 1.0, 0.0
    llm.reset()
    llm.eval(list(prompt_ids) + list(hf_tokens[: steps - 1]))
    start = len(prompt_ids) - 1
    ll = np.asarray(llm.scores[start : start + steps], dtype=np.float32)
    hf = np.asarray(hf_logits, dtype=np.float32)
    width = min(ll.shape[1], hf.shape[1])  # a vocabulary size mismatch is reported separately
    ll, hf = ll[:, :width], hf[:, :width]
    agreement = float((ll.argmax(axis=1) == hf.argmax(axis=1)).mean())
    return agreement, float(np.abs(ll - hf).max())


@dataclass
class _Speed:
    """llama.cpp's generation timing over all prompts."""

    tokens: int = 0
    seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0

    def add(self, tokens: int, seconds: float, after_first: float) -> None:
        self.tokens += tokens
        self.seconds += seconds
        self.decode_tokens += max(0, tokens - 1)
        self.decode_seconds += after_first


@dataclass(frozen=True)
class _Reference:
    """The transformers side of the comparison and the GGUF facts read next to it."""

    model: Any
    tokenizer: Any
    eos: set[int]
    pad: int
    quantization: str
    tolerance: Tolerance
    has_template: bool


def verify_gguf(
    gguf_path: str,
    hf_model_dir: str,
    *,
    prompts: Sequence[str] | None = None,
    max_new_tokens: int = 24,
    tolerance: Tolerance | None = None,
    report_path: str | None = None,
    n_threads: int | None = None,
) -> VerificationReport:
    """Check on llama.cpp that the GGUF answers the golden prompts like the HF model; ExportError on a mismatch."""
    check_magic(gguf_path)
    require_runtime()
    import llama_cpp

    tokenizer = _load_tokenizer(hf_model_dir)
    rendered = _render_prompts(tokenizer, list(prompts or DEFAULT_PROMPTS))
    n_ctx = max(len(ids) for _, _, ids in rendered) + max_new_tokens + 16
    started = time.perf_counter()
    llm = _open_gguf(llama_cpp, gguf_path, n_ctx=n_ctx, n_threads=n_threads)
    load_seconds = time.perf_counter() - started
    problems: list[str] = []
    speed = _Speed()
    try:
        ref = _reference(llm, hf_model_dir, tokenizer, tolerance, problems)
        checks = [_check_prompt(llm, ref, item, max_new_tokens, speed) for item in rendered]
    finally:
        llm.close()
    report = VerificationReport(
        gguf_path=str(gguf_path),
        hf_model_dir=str(hf_model_dir),
        quantization=ref.quantization,
        tolerance=asdict(ref.tolerance),
        max_new_tokens=max_new_tokens,
        checks=checks,
        chat_template_in_gguf=ref.has_template,
        passed=not problems and all(c.match for c in checks),
        tokens_per_second=round(speed.tokens / speed.seconds, 1) if speed.seconds else 0.0,
        decode_tokens_per_second=round(speed.decode_tokens / speed.decode_seconds, 1) if speed.decode_seconds else 0.0,
        load_seconds=round(load_seconds, 3),
        llama_cpp_version=str(getattr(llama_cpp, "__version__", "unknown")),
        problems=problems,
    )
    return _conclude(report, report_path)


def _render_prompts(tokenizer: Any, prompts: list[str]) -> list[tuple[str, str, list[int]]]:
    """(prompt, rendered text, token ids) per golden prompt, rendered with the model's chat template.

    A model without a chat template (a plain base model) is checked on the raw prompt text."""
    rendered = []
    for prompt in prompts:
        text = prompt
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        rendered.append((prompt, text, tokenizer(text, add_special_tokens=False)["input_ids"]))
    return rendered


def llama_threads() -> int:
    """Threads for llama.cpp here, now: the CPU-thread probe the training runs use (``device.choose_cpu_threads``,
    ``FINETUNE_CPU_THREADS`` forces it). ggml's threads spin at a barrier after every operation (and share torch's
    OpenMP runtime), so a thread the kernel descheduled for a busy neighbour stalls every step: measured on 2 cores
    with one core busy, a 135M Q6_K model decoded 7.7 tokens/s on 2 threads and 24.8 on 1 (65 on 2 when idle); in
    an export worker beside a headless browser, verification ran at 0.9-1.3 tokens/s on 2 threads."""
    from training.engine.device import choose_cpu_threads

    return choose_cpu_threads()[0]


def _open_gguf(llama_cpp: Any, gguf_path: str, *, n_ctx: int, n_threads: int | None) -> Any:
    threads = n_threads or llama_threads()
    logger.info("llama.cpp: %s thread(s) for %s", threads, Path(gguf_path).name)
    try:
        return llama_cpp.Llama(
            model_path=str(gguf_path),
            n_ctx=max(n_ctx, 256),
            n_threads=threads,
            logits_all=True,  # the teacher-forced logit comparison reads every position's scores
            verbose=False,
        )
    except Exception as exc:  # llama.cpp reports a broken file as ValueError("Failed to load model ...")
        raise ExportError(f"llama.cpp could not load {gguf_path}: {exc}") from exc


def _reference(
    llm: Any, hf_model_dir: str, tokenizer: Any, tolerance: Tolerance | None, problems: list[str]
) -> _Reference:
    """Load the transformers model, read the GGUF's file type and template, and note file-level mismatches
    (vocabulary size, a chat template that did not travel) in ``problems``."""
    from .safetensors import load_model

    try:
        model = load_model(hf_model_dir, None, dtype="float32")
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot load the reference model {hf_model_dir}: {exc}") from exc
    eos = _eos_ids(model, tokenizer)
    hf_vocab = int(model.get_output_embeddings().weight.shape[0])
    if llm.n_vocab() != hf_vocab:
        problems.append(f"the GGUF has {llm.n_vocab()} vocabulary entries, the transformers model {hf_vocab}")
    metadata = dict(getattr(llm, "metadata", {}) or {})
    quant = _gguf_quantization(metadata)
    has_template = bool(metadata.get("tokenizer.chat_template"))
    if getattr(tokenizer, "chat_template", None) and not has_template:
        problems.append("the GGUF carries no tokenizer.chat_template, although the HF tokenizer has one")
    return _Reference(
        model=model,
        tokenizer=tokenizer,
        eos=eos,
        pad=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0),
        quantization=quant,
        tolerance=tolerance or TOLERANCES.get(quant, TOLERANCES["q8_0"]),
        has_template=has_template,
    )


def _check_prompt(
    llm: Any, ref: _Reference, item: tuple[str, str, list[int]], max_new_tokens: int, speed: _Speed
) -> PromptCheck:
    """Both runtimes' greedy answers to one prompt, the teacher-forced logits and the prompt's tokenization."""
    prompt, text, ids = item
    eos, tol = ref.eos, ref.tolerance
    hf_tokens, hf_logits = _hf_greedy(ref.model, ids, max_new_tokens, eos, ref.pad)
    ll_tokens, seconds, after_first = _llama_greedy(llm, ids, max_new_tokens, eos)
    speed.add(len(ll_tokens), seconds, after_first)
    agreement, logit_diff = _teacher_forced(llm, ids, hf_tokens, hf_logits)
    tokenizer_match = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) == list(ids)
    match, reason, prefix, required, similarity, margin = compare_answers(
        hf_tokens, ll_tokens, hf_logits, tol, eos=eos
    )
    match, reason = _verdict(
        match, reason, tol, agreement=agreement, logit_diff=logit_diff, tokenizer_match=tokenizer_match
    )
    return PromptCheck(
        prompt=prompt,
        prompt_tokens=len(ids),
        hf_answer=ref.tokenizer.decode([t for t in hf_tokens if t not in eos], skip_special_tokens=False),
        llama_answer=ref.tokenizer.decode([t for t in ll_tokens if t not in eos], skip_special_tokens=False),
        hf_token_ids=hf_tokens,
        llama_token_ids=ll_tokens,
        common_prefix=prefix,
        required_prefix=required,
        similarity=round(similarity, 4),
        divergence_margin=None if margin is None else round(margin, 4),
        argmax_agreement=round(agreement, 4),
        max_logit_diff=round(logit_diff, 4),
        tokenizer_match=tokenizer_match,
        match=match,
        reason=reason,
    )


def _verdict(
    match: bool, reason: str, tol: Tolerance, *, agreement: float, logit_diff: float, tokenizer_match: bool
) -> tuple[bool, str]:
    """The greedy comparison's verdict, overruled by the teacher-forced logits and the prompt's tokenization."""
    if match and agreement < tol.min_argmax_agreement:
        match = False
        reason = (
            f"teacher-forced on the transformers answer, llama.cpp picks the same top token at only "
            f"{agreement:.0%} of the steps (< {tol.min_argmax_agreement:.0%})"
        )
    if match and logit_diff > tol.max_logit_diff:
        match = False
        reason = f"a logit differs by {logit_diff:.2f} from the transformers model (> {tol.max_logit_diff})"
    if not tokenizer_match:
        match = False
        reason = "the GGUF's tokenizer splits the prompt differently from the HF tokenizer; " + reason
    return match, reason


def _conclude(report: VerificationReport, report_path: str | None) -> VerificationReport:
    """Write the report (when asked), log the verdict, and raise ``ExportError`` (carrying the report) on a failure."""
    if report_path:
        Path(report_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    logger.info(
        "verified %s: passed=%s, %.1f tok/s on llama.cpp", report.gguf_path, report.passed, report.tokens_per_second
    )
    if not report.passed:
        error = ExportError(report.summary())
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
