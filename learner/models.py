"""Models by name or folder, and the three things every phase must agree on about them: where
the weights and tokenizer come from, which device and dtype they run in, and how a prompt
becomes token ids.

    folder = resolve_model("Salesforce/codet5-large-ntp-py")   # or a save_pretrained folder
    model, tok = load_model(name), load_tokenizer(name)         # both resolve the same way
    ids, cut = encode_prompts(tok, texts, encoder_decoder=True, limit=600)

Where a model comes from (`resolve_model`, used by `rltf train`, `sft`, `eval`, samplers,
learner ranks, the critic's policy and the reference model):

* a folder (written by `save_pretrained`) is used as is;
* anything else that is a valid hub id (`org/name`) is looked up in the local Hugging Face
  cache first (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), without
  touching the network; the cached snapshot folder is used;
* only when it is not cached, and `HF_HUB_OFFLINE` is not set and the hub's host resolves, is
  it downloaded into that cache (the config, tokenizer and one weights format: safetensors
  where the repository has them);
* otherwise `ModelNotAvailable` names the model, says it is neither a folder nor cached, and
  shows how to pre-download it on a machine with a network.

The tokenizer always comes from the same folder as the model. Each process resolves the name
itself, so on a cluster every node uses its own cache.

How prompts become ids (`encode_prompts`), the same in the sampler, the warm start
(`rltf sft`) and the supervised term of `rltf train`:

* encoder–decoders: the tokenizer's own special tokens (`<s> ... </s>` for CodeT5's RoBERTa
  tokenizer, `... </s>` for T5's), since the encoder was pretrained on such inputs;
* decoder-only models: the text's tokens, with BOS in front where the tokenizer's own template
  starts a text with one (Llama, DeepSeek-Coder; not GPT-2 or Qwen2), and never an EOS after
  it, since the model continues the prompt;
* a target (a reference program after its prompt, in the warm start and the supervised term)
  is tokenized as a continuation (`encode_continuations`): without the space marker that
  SentencePiece-style tokenizers (Llama's Metaspace) put at the start of a text, which the
  model never writes after a prompt;
* a prompt longer than `limit` tokens (special tokens included) keeps its first
  ceil(limit/2) and its last floor(limit/2) tokens; the middle goes. The start of a statement
  says what to do; its end holds the examples, the format instruction and the starter code
  the model continues; BOS and `</s>` stay where they are. `prompt_limit` gives the default.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch

DEFAULT_ENCODER_TOKENS = 512  # encoder prompt limit when neither tokenizer nor config has one
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".ot",
                    ".onnx", ".gguf", ".tflite", ".mlmodel")


class ModelNotAvailable(FileNotFoundError):
    """A model name that is neither a folder nor in the local Hugging Face cache, and cannot
    be downloaded here."""


# -- where a model comes from ------------------------------------------------------------------

def hub_cache_dir() -> str:
    """The Hugging Face hub cache this process uses, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _hub_reachable() -> str | None:
    """None when the hub's host resolves (or a proxy is set); else why not. Checked before a
    download because huggingface_hub retries a failed look-up for about 25 seconds."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy")):
        return None
    host = urlparse(_endpoint()).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return None
    except OSError as err:
        return f"{host} cannot be reached ({err})"


def _not_available(name: str, cache: str, why: str) -> ModelNotAvailable:
    return ModelNotAvailable(
        f"model {name!r} is neither a folder nor in the Hugging Face cache ({cache}), and {why}."
        f" Pre-download it on a machine with a network:\n"
        f"    hf download {name}        (older huggingface_hub: huggingface-cli download {name})\n"
        "then copy that cache here (or point HF_HUB_CACHE / HF_HOME at a copy), or pass a "
        "folder written by save_pretrained instead.")


def _download(name: str, cache: str) -> str:
    """The config, tokenizer and one weights format of a hub model, into the cache."""
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi(endpoint=_endpoint()).list_repo_files(name)
    weights = [f for f in files if f.endswith(".safetensors")] or \
        [f for f in files if f.endswith(".bin")]
    keep = [f for f in files if not f.endswith(_WEIGHT_SUFFIXES)] + weights
    return snapshot_download(name, cache_dir=cache, allow_patterns=keep, endpoint=_endpoint())


def resolve_model(name: str, cache_dir: str | None = None) -> str:
    """The local folder to load `name` from: the folder itself, or the snapshot of a hub id
    in the local cache (downloaded first only where the network allows); see the module
    docstring. Raises `ModelNotAvailable` with the fix."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return str(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(name))
    except HFValidationError:
        raise ModelNotAvailable(f"model folder {name} does not exist (a folder written by "
                                "save_pretrained, or a hub id such as org/name, is expected)"
                                ) from None
    cache = cache_dir or hub_cache_dir()
    try:
        folder = snapshot_download(name, cache_dir=cache, local_files_only=True)
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        folder = None
    if folder and (Path(folder) / "config.json").exists():
        return folder
    if folder:
        why = "its cached snapshot has no config.json (an incomplete download)"
        if _offline():
            raise _not_available(name, cache, why)
    if _offline():
        raise _not_available(name, cache, "HF_HUB_OFFLINE is set, so it is not downloaded")
    unreachable = _hub_reachable()
    if unreachable:
        raise _not_available(name, cache, f"it cannot be downloaded: {unreachable}")
    try:
        return _download(name, cache)
    except Exception as err:  # noqa: BLE001 - any hub failure gets the same advice
        raise _not_available(name, cache, f"downloading it failed ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200] if str(err) else ''})") from err


def load_config(name: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model(name))


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def is_encoder_decoder(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def context_length(config) -> int | None:
    """The model's position limit (None: no fixed limit, e.g. T5's relative positions)."""
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings",
                                                            None)
    return int(limit) if limit else None


def load_model(name: str, dtype: torch.dtype | str | None = None):
    """Any HF causal LM or encoder–decoder (chosen from its config), by folder or hub id."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    folder = resolve_model(name)
    config = AutoConfig.from_pretrained(folder)
    cls = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
    kwargs = {"dtype": torch_dtype(dtype)} if dtype is not None else {}
    return cls.from_pretrained(folder, **kwargs)


# -- devices and dtypes (pure) -----------------------------------------------------------------

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r}: use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def pick_device(requested: str = "auto", cuda_available: bool | None = None) -> str:
    """auto: cuda where a GPU is visible, else cpu. cuda without one is an error."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested.startswith("cuda") and not cuda_available:
        raise ValueError(f"device {requested} asked for, but no GPU is visible; use cpu or auto")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ValueError(f"device {requested!r}: use auto, cpu or cuda")
    return requested


def learner_precision(precision: str, on_gpu: bool, ds_config: dict | None = None) -> str:
    """fp32 | bf16 | fp16: what the learner trains in. A user DeepSpeed config decides by
    its bf16 / fp16 sections; else `precision`, where auto means bf16 on GPU, fp32 on CPU."""
    if ds_config is not None:
        for name in ("bf16", "fp16"):
            if (ds_config.get(name) or {}).get("enabled") in (True, "true", "auto"):
                return name
        return "fp32"
    if precision == "auto":
        return "bf16" if on_gpu else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision {precision!r}: use auto, fp32, bf16 or fp16")
    return precision


def sampler_dtype(setting: str, learner_prec: str) -> str:
    """The dtype samplers generate in: `setting` (float32 | bfloat16 | float16), or with auto
    the learner's precision, so that a fresh sample's behaviour log-probs are the ones the
    learner computes (importance ratio 1)."""
    if setting == "auto":
        return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[learner_prec]
    if setting not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"sampler dtype {setting!r}: use auto, float32, bfloat16 or float16")
    return setting


# -- prompts -----------------------------------------------------------------------------------

def prompt_limit(setting: int | None, *, encoder_decoder: bool, context: int | None,
                 max_new_tokens: int, tokenizer_max: int | None = None) -> int | None:
    """The longest prompt in tokens. `setting` when given (checked against the context);
    else decoder-only: context - max_new_tokens; encoder–decoder: the tokenizer's
    model_max_length (512 for CodeT5), else the position limit, else 512."""
    if tokenizer_max is not None and tokenizer_max > 1_000_000:  # "no limit" sentinel
        tokenizer_max = None
    if setting is not None:
        if setting < 1:
            raise ValueError(f"max_prompt_tokens={setting} must be >= 1")
        if not encoder_decoder and context and setting + max_new_tokens > context:
            raise ValueError(f"max_prompt_tokens {setting} + max_new_tokens {max_new_tokens} "
                             f"exceed the model's context ({context}); lower one of them")
        return setting
    if encoder_decoder:
        return tokenizer_max or context or DEFAULT_ENCODER_TOKENS
    if context is None:
        return tokenizer_max
    if context - max_new_tokens < 1:
        raise ValueError(f"no room for a prompt: context {context} - max_new_tokens "
                         f"{max_new_tokens}; lower max_new_tokens")
    return context - max_new_tokens


def model_prompt_limit(setting: int | None, config, tokenizer, max_new_tokens: int
                       ) -> int | None:
    """`prompt_limit` for a loaded config and tokenizer."""
    return prompt_limit(setting, encoder_decoder=is_encoder_decoder(config),
                        context=context_length(config), max_new_tokens=max_new_tokens,
                        tokenizer_max=getattr(tokenizer, "model_max_length", None))


def cut_middle(ids: Sequence[int], limit: int | None) -> list[int]:
    """The first ceil(limit/2) and last floor(limit/2) ids of a sequence longer than limit."""
    ids = list(ids)
    if limit is None or len(ids) <= limit:
        return ids
    tail = limit // 2
    return ids[:limit - tail] + (ids[len(ids) - tail:] if tail else [])


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's own template starts a text with BOS (Llama, DeepSeek-Coder)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return with_special[:1] == [bos] and plain[:1] != [bos]


def encode_prompts(tokenizer, texts: Sequence[str], *, encoder_decoder: bool,
                   limit: int | None) -> tuple[list[list[int]], list[bool]]:
    """(ids of each prompt, whether it was cut), by the rule in the module docstring."""
    if not texts:
        return [], []
    if encoder_decoder:
        full = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
    else:
        full = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        if adds_bos(tokenizer):
            full = [[tokenizer.bos_token_id] + ids for ids in full]
    return [cut_middle(ids, limit) for ids in full], \
        [limit is not None and len(ids) > limit for ids in full]


_CONTINUATION: dict[int, tuple] = {}  # id(tokenizer) -> (tokenizer, backend or None)


def _without_start_marker(node, key: str = ""):
    """A tokenizer.json normaliser / pre-tokenizer with its start-of-text space marker off
    (Metaspace prepend_scheme "never"; a legacy Prepend("▁") normaliser removed)."""
    if isinstance(node, list):
        return [_without_start_marker(n) for n in node if not (isinstance(n, dict)
                                                              and n.get("type") == "Prepend")]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "Prepend":
        return None
    out = {k: _without_start_marker(v, k) for k, v in node.items()}
    if out.get("type") == "Metaspace":
        if out.get("prepend_scheme") not in (None, "never"):
            out["prepend_scheme"] = "never"
        if out.get("add_prefix_space"):
            out["add_prefix_space"] = False
    return out


def _continuation_backend(tokenizer):
    """A copy of the tokenizer's backend that does not mark the start of a text, or None when
    its own does not."""
    hit = _CONTINUATION.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fixed = None
    if backend is not None:
        from tokenizers import Tokenizer

        spec = json.loads(backend.to_str())
        new = {**spec, "normalizer": _without_start_marker(spec.get("normalizer")),
               "pre_tokenizer": _without_start_marker(spec.get("pre_tokenizer"))}
        if new != spec:
            fixed = Tokenizer.from_str(json.dumps(new))
    _CONTINUATION[id(tokenizer)] = (tokenizer, fixed)
    return fixed


def encode_continuations(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of texts that continue a prompt (no special tokens, no start marker)."""
    if not texts:
        return []
    backend = _continuation_backend(tokenizer)
    if backend is None:
        return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
