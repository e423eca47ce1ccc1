"""The sampler: writes programs for problems with any Hugging Face causal LM or encoder-decoder.

    sampler = Sampler("runs/tiny/model", device="cuda", dtype="bfloat16", seed=0)
    samples = sampler.generate(problems, SamplerSettings(n=4, include_greedy=True))
    sampler.load_weights(state_dict, version=3)     # in place; later samples carry version 3

The model is a save_pretrained folder or a hub id in the local cache, its tokenizer from the same
place (`learner.models.resolve_model`). Prompts follow `problems.prompts.build_prompt`: the model
continues `prompt`, and the program the executor judges is `program_prefix + completion`. The
prompt's token ids come from `learner.models.encode_prompts`, as in the warm start and the
supervised term: special tokens for encoder–decoders, BOS where a decoder-only tokenizer adds
one, and a prompt longer than `max_prompt_tokens` keeps its first and last halves. Generation
runs `model.generate` (KV cache, batched, LEFT padding for decoder-only models) with one logits
processor that does the sampling itself, so greedy and sampled rows share a batch and the
sampler's own seeded generator decides. A problem's rows sit side by side (n + greedy copies of
one prompt), so a decoder-only model prefills each distinct prompt of a batch once (all but
its last token) and the KV cache is copied to the prompt's rows; the position ids come from
the full attention mask as before, and the tokens are those of per-row prefill (log-probs
equal up to float rounding; actors/prefill.py).

Decisions, each checked by tests/test_sampler.py:

* Log-probs: `logprobs[i]` is log-softmax of the model's RAW logits at token i (no temperature,
  no top-p), i.e. log pi(token) of the policy, which is what the learner's importance ratio
  compares with; it equals a forward pass of the same model on the same tokens. The checkpoint's
  own generation defaults (repetition penalty, top-k, ...) are dropped so that nothing changes
  the logits before they are recorded; temperature and top-p shape only the choice of token.
* Text and offsets: token i's text is what it adds to the decoded text when the generated ids
  are decoded left to right (byte-level BPE: bytes through an incremental UTF-8 decoder). A
  token that ends inside a multi-byte character adds "" (an empty span); the token that
  completes the character carries all of it. Bytes left over at the end (a generation cut in
  the middle of a character) decode to U+FFFD on the last token, as `tokenizer.decode` does.
  So completion == "".join(token texts) == tokenizer.decode(token_ids) (byte-level), and
  `token_offsets[i] = (start, end)` is token i's span in `completion`.
* Stop rule: EOS always ends a generation and is not part of the completion's tokens; when
  it ended one, `eos_token_id` and `eos_logprob` record it (the learner trains on it as the
  last RL token, so the RL term also rewards stopping). A stop string ends it at the first
  place one begins (searched in the generated text only). If it begins at a token boundary the
  completion ends there. If it begins inside a token, that token is kept, so no program text
  before the stop is lost (e.g. a token ")\\n" under the stop "\\ndef "), unless the token holds
  a whole stop string, in which case it is dropped. The completion therefore never contains a
  stop string and is exactly the text of the kept tokens.
* Stops by prompt kind: `stop` applies where the model continues given code (a non-empty
  `program_prefix`, e.g. a HumanEval signature); `stop_whole_program` (empty by default) where
  the model writes the whole program, so "\\nprint(" or "\\n# " never cut a program in two.

A plain class: `cluster/topology.py` wraps it as a Ray actor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

import torch

from actors.prefill import prefill_cache
from actors.samples import Sample
from actors.token_text import Stream, byte_level_table, cut_at_stop, token_texts
from learner.models import encode_prompts
from problems.prompts import build_prompt

# Ends the body of a function the model continues (HumanEval-style prefix): the model has
# started something at column 0 that is not part of the function.
FUNCTION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


@dataclass
class SamplerSettings:
    """How to sample. Validated when built."""

    n: int = 4  # sampled completions per problem
    include_greedy: bool = True  # plus one greedy completion per problem (is_greedy=True)
    temperature: float = 0.8  # divides the logits before sampling (greedy rows ignore it)
    top_p: float = 0.95  # nucleus: sample from the smallest set of tokens with this mass
    max_new_tokens: int = 160  # longest completion, in tokens
    stop: tuple[str, ...] = FUNCTION_STOPS  # stop strings after a non-empty program_prefix
    stop_whole_program: tuple[str, ...] = ()  # stop strings when the model writes it all
    batch_size: int = 32  # sequences (not problems) per model.generate call
    max_prompt_tokens: int | None = None  # longer prompts keep their first and last halves;
    #                           None: learner.models.prompt_limit (context - max_new_tokens, or
    #                           the encoder's tokenizer limit)

    def __post_init__(self):
        self.stop, self.stop_whole_program = tuple(self.stop), tuple(self.stop_whole_program)
        if self.n < 0 or self.n + self.include_greedy < 1:
            raise ValueError(f"n={self.n}, include_greedy={self.include_greedy}: ask for at "
                             "least one completion (n >= 1, or n = 0 with include_greedy)")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be > 0; for greedy decoding "
                             "use n=0, include_greedy=True")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]; 1 turns nucleus off")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if any(not s for s in self.stop + self.stop_whole_program):
            raise ValueError("stop strings must be non-empty")


# -- the two hooks into model.generate -------------------------------------------------------

def _policy_processor(greedy: torch.Tensor, temperature: float, top_p: float,
                      generator: torch.Generator, logps: list):
    """A logits processor that records log pi(chosen) from the raw logits, picks the token
    (argmax for greedy rows, temperature + top-p sampling otherwise) and returns scores whose
    argmax is that token; generate() runs in greedy mode and so takes it."""
    from transformers import LogitsProcessor

    all_greedy = bool(greedy.all())

    class _Policy(LogitsProcessor):
        def __call__(self, input_ids, scores):
            logits = scores.float()  # [B, V] raw: no processor runs before this one
            tok = logits.argmax(-1)
            if not all_greedy:
                x = logits / temperature
                if top_p < 1.0:
                    xs, idx = x.sort(-1, descending=True)
                    p = xs.softmax(-1)
                    drop = (p.cumsum(-1) - p) >= top_p  # mass before it already >= top_p
                    x = x.scatter(-1, idx, xs.masked_fill(drop, float("-inf")))
                drawn = torch.multinomial(x.softmax(-1), 1, generator=generator).squeeze(-1)
                tok = torch.where(greedy, tok, drawn)
            picked = logits.gather(-1, tok[:, None]).squeeze(-1)
            logps.append(picked - torch.logsumexp(logits, -1))  # [B]
            return torch.full_like(logits, float("-inf")).scatter_(-1, tok[:, None], 0.0)

    return _Policy()


def _stop_criteria(stops: list[tuple[str, ...]], tokenizer, table, contexts, eos: set[int]):
    """Ends a row once one of its stop strings appears in its generated text."""
    from transformers import StoppingCriteria

    longest = max(len(s) for row in stops for s in row)
    streams = [Stream(tokenizer, table, ctx) for ctx in contexts]
    tails = [""] * len(stops)
    done = [not row for row in stops]

    class _Stops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            for r, i in enumerate(input_ids[:, -1].tolist()):
                if done[r]:
                    continue
                if i in eos:
                    done[r] = True
                    continue
                w = tails[r] + streams[r].push(i)
                done[r] = any(s in w for s in stops[r])
                tails[r] = w[len(w) - longest + 1:] if longest > 1 else ""
            return torch.tensor([d and bool(row) for d, row in zip(done, stops)],
                                device=input_ids.device)

    return _Stops()


# -- the sampler ---------------------------------------------------------------------------

class Sampler:
    """Generation with one model; `load_weights` swaps its weights in place."""

    def __init__(self, model_path: str, *, device: str = "cpu",
                 dtype: torch.dtype | str = torch.float32, policy_version: int = 0,
                 seed: int = 0):
        """`model_path`: a save_pretrained folder or a hub id (cached, or downloadable where
        the network allows); `dtype` a torch dtype or its name (float32, bfloat16, ...)."""
        from transformers import GenerationConfig

        from learner.models import (context_length, is_encoder_decoder, load_config,
                                    load_model, load_tokenizer)

        config = load_config(model_path)
        self.encoder_decoder = is_encoder_decoder(config)
        self.model = load_model(model_path, dtype=dtype).to(device).eval()
        self.tokenizer = load_tokenizer(model_path)
        self.device = torch.device(device)
        self.model_path = model_path
        self.seed = int(seed)
        self._version = int(policy_version)
        self._calls = 0
        self._name = os.urandom(3).hex()  # sample ids never repeat, even after a restart

        gc = self.model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (gc.pad_token_id if gc.pad_token_id is not None
                                           else min(self.eos_ids, default=0))
        self.pad_id = int(pad)
        # The sampler owns the sampling distribution: drop the checkpoint's generation defaults.
        self.model.generation_config = GenerationConfig(
            eos_token_id=sorted(self.eos_ids) or None, pad_token_id=self.pad_id,
            bos_token_id=gc.bos_token_id, decoder_start_token_id=(
                gc.decoder_start_token_id if gc.decoder_start_token_id is not None
                else getattr(config, "decoder_start_token_id", None)))
        self._table = byte_level_table(self.tokenizer)
        self.context = context_length(config)  # None: no position limit (e.g. T5)
        # Decoder-only: prefill each distinct prompt once per batch, not once per row (the
        # same tokens up to float rounding; tests/test_sampler.py compares both paths).
        self._share_prompts = True

    # -- weights ---------------------------------------------------------------------------
    @property
    def policy_version(self) -> int:
        return self._version

    def get_weights(self) -> dict[str, torch.Tensor]:
        """A state dict of CPU copies."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Copy `state` into the model's parameters and buffers in place; later samples carry
        `version`. Everything is checked before anything is copied. A tied weight may come
        under any one of its names."""
        own = self.model.state_dict()
        given = {own[k].data_ptr() for k in own if k in state}
        missing = [k for k in own if k not in state and own[k].data_ptr() not in given]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: {tuple(getattr(v, 'shape', ()))} != {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own
                 and (not torch.is_tensor(v) or v.shape != own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(
                f"state dict does not match the sampler's model ({self.model_path}): "
                f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected "
                f"{unexpected[:5]}, {len(wrong)} with a wrong shape {wrong[:5]}; send the "
                "state dict of a model built from the same config")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
        self._version = int(version)

    # -- generation ------------------------------------------------------------------------
    def generate(self, problems: Sequence, settings: SamplerSettings | None = None
                 ) -> list[Sample]:
        """For each problem in order: the greedy sample (if asked) then n sampled ones."""
        s = settings or SamplerSettings()
        call, self._calls = self._calls, self._calls + 1
        parts = [build_prompt(p) for p in problems]
        texts = [p.text for p in parts]
        prompts, cut = encode_prompts(self.tokenizer, texts,
                                      encoder_decoder=self.encoder_decoder,
                                      limit=self.prompt_limit(s))
        # Rows of similar prompt length share a batch (less padding); output keeps input order.
        order = sorted(range(len(problems)), key=lambda i: len(prompts[i]))
        rows = [(i, g) for i in order for g in [True] * s.include_greedy + [False] * s.n]
        made: dict[int, list] = {i: [] for i in range(len(problems))}
        for b in range(0, len(rows), s.batch_size):
            chunk = rows[b:b + s.batch_size]
            seed = (self.seed * 1_000_003 + call * 10_007 + b) % (2 ** 63)
            stops = [s.stop if parts[i].program_prefix else s.stop_whole_program
                     for i, _ in chunk]
            outs = self._generate_rows([prompts[i] for i, _ in chunk], [g for _, g in chunk],
                                       stops, s, seed, keys=[i for i, _ in chunk])
            for (i, g), out in zip(chunk, outs):
                made[i].append((g, out))
        samples, counts = [], {}
        for i, p in enumerate(problems):
            for g, (ids, texts, lps, reason, eos) in made[i]:
                k = counts[p.task_id] = counts.get(p.task_id, -1) + 1
                group = f"{p.task_id}/v{self._version}/{self._name}-{call}"
                offsets = list(zip(accumulate((len(t) for t in texts), initial=0),
                                   accumulate(len(t) for t in texts)))
                completion = "".join(texts)
                samples.append(Sample(
                    task_id=p.task_id,
                    sample_id=f"{group}-{k}", group_id=group,
                    is_greedy=g, prompt=parts[i].text, program_prefix=parts[i].program_prefix,
                    completion=completion, program=parts[i].program(completion),
                    prompt_token_ids=list(prompts[i]), token_ids=ids, token_offsets=offsets,
                    logprobs=lps, policy_version=self._version, finish_reason=reason,
                    prompt_truncated=cut[i],
                    eos_token_id=eos[0] if eos else None, eos_logprob=eos[1] if eos else None))
        return samples

    def prompt_limit(self, s: SamplerSettings) -> int | None:
        """The longest prompt in tokens under settings `s` (learner.models.prompt_limit)."""
        from learner.models import prompt_limit

        return prompt_limit(s.max_prompt_tokens, encoder_decoder=self.encoder_decoder,
                            context=self.context, max_new_tokens=s.max_new_tokens,
                            tokenizer_max=getattr(self.tokenizer, "model_max_length", None))

    def _padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), [rows, longest prompt]: decoder-only prompts padded on the
        LEFT, encoder inputs on the right."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            span = slice(0, len(p)) if self.encoder_decoder else slice(width - len(p), width)
            ids[r, span], mask[r, span] = torch.tensor(p, dtype=torch.long), 1
        return ids.to(self.device), mask.to(self.device)

    def _shared_prefill(self, prompts: list[list[int]], keys: Sequence, extra: int) -> dict:
        """The KV cache of every row's prompt but its last token, computed once per distinct
        prompt (rows with the same key share one) and copied to the rows; {} when sharing
        saves nothing. model.generate then runs only each row's last prompt token before
        decoding, with the same position ids (from the full attention mask) as without it.
        The cache keeps room for `extra` more positions (actors/prefill.py)."""
        first: dict = {}
        for r, k in enumerate(keys):
            first.setdefault(k, r)
        if (not self._share_prompts or self.encoder_decoder or len(first) == len(keys)
                or max(len(p) for p in prompts) < 2):
            return {}
        slot = {k: j for j, k in enumerate(first)}
        ids, mask = self._padded([prompts[r] for r in first.values()])
        rows = torch.tensor([slot[k] for k in keys], device=self.device)
        return {"cache": prefill_cache(self.model, ids, mask, rows, extra)}

    def _generate_rows(self, prompts: list[list[int]], greedy: list[bool],
                       stops: list[tuple[str, ...]], s: SamplerSettings, seed: int,
                       keys: Sequence | None = None):
        """One model.generate call; per row (kept ids, token texts, logprobs, reason, and
        (EOS id, its log-prob) when EOS ended the row, else None). Rows with equal `keys`
        have the same prompt, whose prefill is then shared (decoder-only models)."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        ids, mask = self._padded(prompts)
        width = ids.shape[1]
        contexts = [[] if self.encoder_decoder else p[-1:] for p in prompts]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        logps: list[torch.Tensor] = []
        policy = _policy_processor(torch.tensor(greedy, device=self.device), s.temperature,
                                   s.top_p, generator, logps)
        criteria = ([_stop_criteria(stops, self.tokenizer, self._table, contexts, self.eos_ids)]
                    if any(stops) else [])
        with torch.inference_mode():
            prefill = ({} if keys is None else
                       self._shared_prefill(prompts, keys, s.max_new_tokens))
            seqs = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=s.max_new_tokens,
                do_sample=False, logits_processor=LogitsProcessorList([policy]),
                stopping_criteria=StoppingCriteriaList(criteria), **prefill)
        gen = seqs[:, 1 if self.encoder_decoder else width:].tolist()
        lps = torch.stack(logps, 1).tolist() if logps else [[] for _ in prompts]
        out = []
        for r, row in enumerate(gen):
            n = next((t for t, i in enumerate(row) if i in self.eos_ids), len(row))
            reason = "eos" if n < len(row) else "length"
            texts = token_texts(self.tokenizer, self._table, row[:n], contexts[r])
            keep, stopped = cut_at_stop(texts, stops[r]) if stops[r] else (n, False)
            eos = (row[n], lps[r][n]) if reason == "eos" and not stopped else None
            out.append((row[:keep], texts[:keep], lps[r][:keep], "stop" if stopped else reason,
                        eos))
        return out
