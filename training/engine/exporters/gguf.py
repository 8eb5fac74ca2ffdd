"""GGUF exporters (``gguf-f16``, ``gguf-q8_0``, ``gguf-q6_k``, ``gguf-q5_k_m``, ``gguf-q4_k_m``): llama.cpp's own
converter, then verification (``verify.py``).

Conversion runs llama.cpp's ``convert_hf_to_gguf.py`` in a subprocess. The converter, its ``conversion/`` package
and the ``gguf-py/`` it was written against come from the llama-cpp-python sdist and are extracted at install time by
``scripts/install_gguf_tools.sh`` (never committed). The vendored ``gguf-py`` is put first on the subprocess's
``PYTHONPATH`` only, so the venv's PyPI ``gguf`` (which transformers uses to read GGUF files) stays as it is.
The k-quants (Q6_K, Q5_K_M, Q4_K_M) are made from an f16 conversion by llama.cpp's own quantizer,
``llama_model_quantize`` of the compiled library llama-cpp-python ships (no ``llama-quantize`` binary needed). Tensors
whose rows do not divide into 256-value k-quant blocks (SmolLM2's 576-wide ones) fall back to a legacy type, as with
``llama-quantize``: Q8_0 for Q6_K, Q5_0 for Q4_K_M and (by our override; llama.cpp would pick Q5_1) for Q5_K_M.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.engine.errors import ExportError

from .base import is_adapter_dir, register
from .safetensors import merge_to_folder

logger = logging.getLogger(__name__)

SUPPORTED_QUANTIZATIONS = ("f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")
CONVERTER_TYPES = ("f16", "q8_0")  # written by the converter itself; the others are quantized from its f16 output
# llama.cpp's file types (llama_ftype) of the quantized exports.
QUANTIZE_FTYPES = {"q6_k": 18, "q5_k_m": 17, "q4_k_m": 15}
TOOLS_ENV = "FINETUNE_GGUF_TOOLS"
CONVERTER = "convert_hf_to_gguf.py"
INSTALL_COMMAND = "scripts/install_gguf_tools.sh [VENV_DIR] [TARGET_DIR]"
GGUF_MAGIC = b"GGUF"

# --- tools ---------------------------------------------------------------------------------------------------------


def unsupported_quantization_message(quant: str, supported: Sequence[str] = SUPPORTED_QUANTIZATIONS) -> str:
    """The error text for a quantization we cannot produce."""
    names = ", ".join(f"gguf-{q}" for q in supported)
    return f"GGUF quantization {quant!r} is not supported; supported exports: {names}."


def _repo_tools_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "vendor" / "llama.cpp-tools"


def _tools_ok(path: Path) -> bool:
    script = path / CONVERTER
    if not script.is_file() or not (path / "gguf-py" / "gguf" / "__init__.py").is_file():
        return False
    if "from conversion import" in script.read_text(encoding="utf-8", errors="replace"):
        return (path / "conversion" / "__init__.py").is_file()
    return True


def find_tools() -> Path:
    """Folder holding llama.cpp's converter: ``$FINETUNE_GGUF_TOOLS``, else ``<repo>/vendor/...``, else the cache."""
    from training.engine.embedded import cache_dir

    configured = os.environ.get(TOOLS_ENV)
    candidates = [Path(configured)] if configured else [_repo_tools_dir(), cache_dir() / "llama.cpp-tools"]
    for candidate in candidates:
        if _tools_ok(candidate):
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise ExportError(
        f"llama.cpp's GGUF converter ({CONVERTER} with conversion/ and gguf-py/) was not found in {where}. "
        f"Install it with `{INSTALL_COMMAND}`"
        + (f" passing {configured} as TARGET_DIR" if configured else "")
        + f", or point {TOOLS_ENV} at an installed copy."
    )


def tools_version(tools: Path) -> str:
    """The llama-cpp-python version the converter was extracted from ("unknown" when not recorded)."""
    markers = sorted(tools.glob(".installed-llama-cpp-python-*"))
    return markers[-1].name.rsplit("-", 1)[-1] if markers else "unknown"


def require_runtime() -> None:
    """Raise ExportError with the install command when llama-cpp-python is not importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ExportError(
            f"GGUF verification needs the llama.cpp runtime (llama-cpp-python), which is not installed. "
            f"Install it with `{INSTALL_COMMAND}`."
        )


def convert_to_gguf(
    hf_dir: str, outfile: str, quantization: str, *, model_name: str | None = None, timeout_s: float = 1800
) -> float:
    """Run llama.cpp's converter on a plain HF folder (quantizing its f16 output for a k-quant); return the
    seconds it took."""
    if quantization not in SUPPORTED_QUANTIZATIONS:
        raise ExportError(unsupported_quantization_message(quantization))
    if quantization not in CONVERTER_TYPES:
        f16 = str(Path(outfile).with_suffix(".f16.tmp"))
        try:
            seconds = convert_to_gguf(hf_dir, f16, "f16", model_name=model_name, timeout_s=timeout_s)
            return seconds + quantize_gguf(f16, outfile, quantization)
        finally:
            Path(f16).unlink(missing_ok=True)
    tools = find_tools()
    cmd = [sys.executable, str(tools / CONVERTER), str(hf_dir), "--outtype", quantization, "--outfile", str(outfile)]
    if model_name:
        cmd += ["--model-name", model_name]
    env = os.environ.copy()
    env.pop("NO_LOCAL_GGUF", None)
    # The converter must see the gguf-py it was written for, not the venv's PyPI gguf.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tools / "gguf-py"), env.get("PYTHONPATH", "")) if p)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"GGUF conversion of {hf_dir} took longer than {timeout_s:.0f} s.") from exc
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not Path(outfile).is_file():
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise ExportError(f"llama.cpp's converter failed on {hf_dir} (exit {proc.returncode}):\n{tail}")
    logger.info("converted %s to %s (%s) in %.1f s", hf_dir, outfile, quantization, seconds)
    return seconds


def quantize_gguf(source: str, outfile: str, quantization: str, *, threads: int | None = None) -> float:
    """Quantize an f16 GGUF with llama.cpp's ``llama_model_quantize``; return the seconds it took."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZE_FTYPES[quantization]
    params.nthread = threads or max(1, os.cpu_count() or 1)
    overrides = _q5_0_for_narrow_rows(source) if quantization == "q5_k_m" else None
    if overrides is not None:
        params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    started = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(outfile).encode(), ctypes.byref(params))
    seconds = time.perf_counter() - started
    if rc != 0 or not Path(outfile).is_file():
        raise ExportError(f"llama.cpp could not quantize the model to {quantization.upper()} (code {rc}).")
    logger.info("quantized %s to %s in %.1f s", source, quantization, seconds)
    return seconds


def _q5_0_for_narrow_rows(source: str) -> Any:
    """Tensor overrides for Q5_K_M: the weights whose rows do not split into 256-value k-quant blocks get Q5_0.

    llama.cpp falls back to Q5_1 for them, which measured far worse than Q5_0 on a fine-tuned SmolLM2-135M (max
    |dlogit| 15-20 against 7-8, greedy answers off from the first token); Q4_K_M's own fallback is Q5_0 already.
    None when every weight fits the k-quant blocks."""
    import re

    import llama_cpp
    from gguf import GGUFReader

    names = [t.name for t in GGUFReader(source).tensors if len(t.shape) >= 2 and int(t.shape[0]) % 256]
    if not names:
        return None
    table = (llama_cpp.llama_model_tensor_override * (len(names) + 1))()  # ends with a NULL pattern
    for row, name in zip(table, names, strict=False):
        row.pattern = f"^{re.escape(name)}$".encode()
        row.type = llama_cpp.GGML_TYPE_Q5_0
    return table


def check_magic(path: str | Path) -> None:
    """Raise ExportError unless ``path`` starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ExportError(f"Cannot read {path}: {exc}") from exc
    if magic != GGUF_MAGIC:
        raise ExportError(f"{path} is not a GGUF file (magic {magic!r}).")


# --- exporters -----------------------------------------------------------------------------------------------------


def _preflight(*, verify: bool = True, quantization: str = "f16", **_: Any) -> None:
    find_tools()
    if verify or quantization in QUANTIZE_FTYPES:  # the k-quants are made by the llama.cpp library
        require_runtime()


def _export_gguf(
    quantization: str,
    *,
    model_dir: str,
    base_model_path: str,
    staging: str,
    verify: bool = True,
    prompts: Sequence[str] | None = None,
    max_new_tokens: int = 24,
    model_name: str | None = None,
    file_name: str | None = None,
    timeout_s: float = 1800,
) -> tuple[str, dict[str, Any]]:
    tools = find_tools()
    stage = Path(staging)
    merged_from_adapter = is_adapter_dir(model_dir)
    merge_seconds = 0.0
    hf_dir = model_dir
    if merged_from_adapter:
        # The converter wants plain weights; merge in fp32 into a scratch folder that is deleted afterwards.
        hf_dir = str(stage / ".merged")
        merge_seconds = float(merge_to_folder(model_dir, base_model_path, hf_dir)["seconds"])
    name = file_name or f"model-{quantization}.gguf"
    if not name.endswith(".gguf") or "/" in name:
        raise ExportError(f"Invalid GGUF file name {name!r}.")
    outfile = stage / name
    seconds = convert_to_gguf(hf_dir, str(outfile), quantization, model_name=model_name, timeout_s=timeout_s)
    check_magic(outfile)
    metadata: dict[str, Any] = {
        "quantization": quantization,
        "file": name,
        "converter": f"llama.cpp {CONVERTER} (llama-cpp-python {tools_version(tools)} sdist)"
        + (" to f16, then llama.cpp's llama_model_quantize" if quantization in QUANTIZE_FTYPES else ""),
        "conversion_seconds": round(seconds, 2),
        "merged_from_adapter": merged_from_adapter,
        "merge_seconds": round(merge_seconds, 2),
        "verified": False,
    }
    if verify:
        report_name = name[: -len(".gguf")] + ".verification.json"
        from .verify import verify_gguf

        report = verify_gguf(str(outfile), hf_dir, prompts=prompts, max_new_tokens=max_new_tokens)
        # Paths inside the report point at the staging folder; record the final names instead.
        data = report.to_dict()
        data["gguf_path"] = name
        data["hf_model_dir"] = "merged base + adapter" if merged_from_adapter else str(model_dir)
        (stage / report_name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        metadata.update(verified=True, verification=data, verification_file=report_name)
    (stage / "Modelfile").write_text(f"FROM ./{name}\n", encoding="utf-8")
    if merged_from_adapter:
        shutil.rmtree(hf_dir, ignore_errors=True)
    return name, metadata


def _make(quantization: str) -> Any:
    def exporter(
        *,
        model_dir: str,
        base_model_path: str,
        staging: str,
        verify: bool = True,
        prompts: Sequence[str] | None = None,
        max_new_tokens: int = 24,
        model_name: str | None = None,
        file_name: str | None = None,
        timeout_s: float = 1800,
    ) -> tuple[str, dict[str, Any]]:
        return _export_gguf(
            quantization,
            model_dir=model_dir,
            base_model_path=base_model_path,
            staging=staging,
            verify=verify,
            prompts=prompts,
            max_new_tokens=max_new_tokens,
            model_name=model_name,
            file_name=file_name,
            timeout_s=timeout_s,
        )

    exporter.__doc__ = f"Convert to GGUF {quantization} with llama.cpp's converter, then verify it on llama.cpp."
    return exporter


for _quant in SUPPORTED_QUANTIZATIONS:
    register(f"gguf-{_quant}", preflight=functools.partial(_preflight, quantization=_quant))(_make(_quant))
