"""The sampler: writes programs for problems with any Hugging Face causal LM or encoder-decoder.

    sampler = Sampler("runs/tiny/model")                      # a save_pretrained folder
    samples = sampler.generate(problems, SamplerSettings(n=4, include_greedy=True))
    sampler.load_weights(state_dict, version=3)                # in place; tags later samples

Each Sample carries what the rest of the system needs: the program to judge
(program_prefix + completion), the generated token ids, each token's character span in the
completion, the behaviour log-probabilities and the policy version that made it.

* Log-probabilities are log-softmax of the model's raw logits (no temperature or top-p), i.e.
  log pi(token) of the policy itself, which is what the learner's importance ratio compares
  with; they equal a forward pass of the same model on the same tokens.
* Offsets come from incremental decoding of the generated ids: token i spans the characters it
  adds to the decoded text. A token that ends inside a multi-byte character adds nothing
  (an empty span); the token that completes the character carries it.
* Stop strings end a generation; the kept tokens are those that end before the first stop
  string begins (a token in which a stop string starts is dropped with everything after it),
  so the completion is exactly the concatenation of the kept tokens' texts. EOS always stops
  and is not part of the completion.
This is a plain class; `cluster/` wraps it as a Ray actor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from problems.prompts import build_prompt

# Where a model continues a given function (a HumanEval-style prefix), these end its body.
# A model that writes the whole program stops at EOS only, so nothing it needs is cut.
FUNCTION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


@dataclass
class SamplerSettings:
    n: int = 4  # sampled completions per problem
    include_greedy: bool = True  # plus one greedy completion per problem
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 160
    stop: tuple[str, ...] | None = None  # None: FUNCTION_STOPS after a prefix, else none
    batch_size: int = 32  # sequences per generate() call
    max_prompt_tokens: int | None = None  # default: the model's context minus max_new_tokens


@dataclass
class Sample:
    task_id: str
    sample_id: str
    is_greedy: bool
    prompt: str
    program_prefix: str
    completion: str
    program: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    token_offsets: list[tuple[int, int]]
    logprobs: list[float]
    policy_version: int
    finish_reason: str  # eos | stop | length
    metadata: dict = field(default_factory=dict)


def _token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """The text each token adds when decoding `ids` left to right."""
    out: list[str] = []
    prefix_off = read_off = 0
    for i in range(len(ids)):
        prefix_text = tokenizer.decode(ids[prefix_off:read_off], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        new_text = tokenizer.decode(ids[prefix_off:i + 1], skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            out.append(new_text[len(prefix_text):])
            prefix_off, read_off = read_off, i + 1
        else:
            out.append("")
    # Whatever stays pending at the end (an incomplete character) goes to the last token.
    if ids and prefix_off < len(ids):
        tail = tokenizer.decode(ids[prefix_off:], skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)
        head = tokenizer.decode(ids[prefix_off:read_off], skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)
        if len(tail) > len(head) and not out[-1]:
            out[-1] = tail[len(head):]
    return out


def cut_at_stop(texts: list[str], stops: Sequence[str]) -> tuple[int, bool]:
    """How many tokens to keep so that no stop string is in the kept text."""
    full = "".join(texts)
    hits = [full.find(s) for s in stops if s and s in full]
    if not hits:
        return len(texts), False
    cut = min(hits)
    pos = 0
    for i, t in enumerate(texts):
        if pos + len(t) > cut:
            return i, True
        pos += len(t)
    return len(texts), True


class Sampler:
    def __init__(self, model_path: str, device: str = "cpu", dtype: torch.dtype | None = None,
                 policy_version: int = 0, seed: int = 0):
        from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                                  AutoTokenizer)

        if not Path(model_path).exists():
            raise FileNotFoundError(f"model folder {model_path} does not exist")
        config = AutoConfig.from_pretrained(model_path)
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        cls = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
        kwargs = {"dtype": dtype} if dtype is not None else {}
        self.model = cls.from_pretrained(model_path, **kwargs).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left" if not self.encoder_decoder else "right"
        self.device = torch.device(device)
        self._version = policy_version
        self.seed = seed
        self._calls = itertools.count()
        self.context = int(getattr(config, "n_positions", None)
                           or getattr(config, "max_position_embeddings", None) or 2048)

    # -- weights -------------------------------------------------------------------------
    @property
    def policy_version(self) -> int:
        return self._version

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Copy `state` into the model's tensors in place; later samples carry `version`."""
        own = self.model.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(f"state dict does not match the model: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        for k, t in own.items():
            if tuple(state[k].shape) != tuple(t.shape):
                raise ValueError(f"{k}: shape {tuple(state[k].shape)} != {tuple(t.shape)}")
        with torch.no_grad():
            for k, t in own.items():
                t.copy_(state[k].to(t.device, t.dtype))
        self._version = int(version)

    # -- generation ------------------------------------------------------------------------
    def generate(self, problems: Sequence, settings: SamplerSettings | None = None
                 ) -> list[Sample]:
        """n sampled (+ one greedy) completions for each problem, as Samples."""
        s = settings or SamplerSettings()
        call = next(self._calls)
        parts = [build_prompt(p) for p in problems]
        max_prompt = s.max_prompt_tokens or max(16, self.context - s.max_new_tokens)
        out: list[Sample] = []
        counters: dict[int, int] = {}
        for greedy in (True, False):
            if (greedy and not s.include_greedy) or (not greedy and s.n < 1):
                continue
            per_call = max(1, s.batch_size if greedy else s.batch_size // max(1, s.n))
            uniq = list(range(len(problems)))
            for start in range(0, len(uniq), per_call):
                chunk = uniq[start:start + per_call]
                reps = 1 if greedy else s.n
                torch.manual_seed(self.seed * 1_000_003 + call * 1009 + start + greedy)
                stops = [self._stops(parts[i], s) for i in chunk]
                common = stops[0] if all(x == stops[0] for x in stops) else ()
                gens = self._generate_batch([parts[i].text for i in chunk], reps, greedy, s,
                                            max_prompt, common)
                for j, (prompt_ids, ids, lps, reason) in enumerate(gens):
                    i = chunk[j // reps]
                    k = counters[i] = counters.get(i, -1) + 1
                    out.append(self._make_sample(problems[i], parts[i], prompt_ids, ids, lps,
                                                 reason, greedy, f"{call}-{k}",
                                                 stops[j // reps]))
        return out

    @staticmethod
    def _stops(parts, s: SamplerSettings) -> tuple[str, ...]:
        if s.stop is not None:
            return tuple(s.stop)
        return FUNCTION_STOPS if parts.program_prefix else ()

    def _generate_batch(self, prompts: list[str], reps: int, greedy: bool, s: SamplerSettings,
                        max_prompt: int, stops: tuple[str, ...]):
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, truncation=True,
                  max_length=max_prompt, add_special_tokens=self.encoder_decoder)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs = dict(max_new_tokens=s.max_new_tokens, return_dict_in_generate=True,
                      output_logits=True, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
        if greedy:
            kwargs.update(do_sample=False, num_beams=1)
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0,
                          num_return_sequences=reps)
        if stops:
            kwargs.update(stop_strings=list(stops), tokenizer=tok)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        seqs = out.sequences
        start = 1 if self.encoder_decoder else enc["input_ids"].shape[1]
        gen = seqs[:, start:]
        steps = len(out.logits)
        chosen = torch.zeros(gen.shape[0], steps)
        for t in range(steps):
            lp = torch.log_softmax(out.logits[t].float(), dim=-1)
            chosen[:, t] = lp.gather(-1, gen[:, t:t + 1]).squeeze(-1)
        results = []
        eos = tok.eos_token_id
        for row in range(gen.shape[0]):
            p = row // reps
            mask = enc["attention_mask"][p].bool()
            prompt_ids = enc["input_ids"][p][mask].tolist()
            ids = gen[row].tolist()
            reason = "length"
            n = len(ids)
            if eos is not None and eos in ids:
                n = ids.index(eos)
                reason = "eos"
            elif tok.pad_token_id is not None and tok.pad_token_id != eos and \
                    tok.pad_token_id in ids:
                n = ids.index(tok.pad_token_id)
            results.append((prompt_ids, ids[:n], chosen[row, :n].tolist(), reason))
        return results

    def _make_sample(self, problem, parts, prompt_ids, ids, lps, reason, greedy, tag, stops):
        texts = _token_texts(self.tokenizer, ids)
        keep, stopped = cut_at_stop(texts, stops)
        if stopped:
            reason = "stop"
        ids, lps, texts = ids[:keep], lps[:keep], texts[:keep]
        offsets, pos = [], 0
        for t in texts:
            offsets.append((pos, pos + len(t)))
            pos += len(t)
        completion = "".join(texts)
        return Sample(task_id=problem.task_id, sample_id=f"{problem.task_id}/v{self._version}/{tag}",
                      is_greedy=greedy, prompt=parts.text, program_prefix=parts.program_prefix,
                      completion=completion, program=parts.program(completion),
                      prompt_token_ids=prompt_ids, token_ids=ids, token_offsets=offsets,
                      logprobs=lps, policy_version=self._version, finish_reason=reason)
