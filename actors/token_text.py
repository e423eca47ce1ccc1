"""Text of generated token ids, as the sampler cuts programs at stop strings.

A program is cut at the first stop string in the text the model wrote, so the text of each
token must be the text that token adds to what came before it (its context), for every
tokenizer: byte-level BPE tokenizers (GPT-2, CodeGen, CodeT5, StarCoder...) decode through a
byte table and an incremental UTF-8 decoder (a character split over two tokens appears once,
with the token that completes it); any other tokenizer decodes a short window of ids after
their context, so no leading space is stripped. Checked by tests/test_sampler.py.
"""

from __future__ import annotations

import codecs
from itertools import accumulate
from typing import Sequence


def byte_level_table(tokenizer) -> list[bytes] | None:
    """id -> bytes for a byte-level BPE tokenizer (GPT-2, CodeGen, CodeT5, StarCoder...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    bs = [*range(33, 127), *range(161, 173), *range(174, 256)]  # GPT-2's bytes_to_unicode
    cs = bs + [256 + i for i in range(256 - len(bs))]
    bs = bs + [b for b in range(256) if b not in bs]
    byte_of = {chr(c): b for b, c in zip(bs, cs)}
    vocab = backend.get_vocab(with_added_tokens=True)
    added = set(getattr(tokenizer, "added_tokens_decoder", {}))
    table = [b""] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        if i not in added and all(ch in byte_of for ch in token):
            table[i] = bytes(byte_of[ch] for ch in token)
        else:
            table[i] = tokenizer.decode([i], skip_special_tokens=False).encode("utf-8")
    return table


class Stream:
    """Incremental text of generated ids: push(id) returns the text that id adds."""

    def __init__(self, tokenizer, table, context: Sequence[int]):
        self.tok, self.table = tokenizer, table
        if table is not None:
            self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        else:  # any other tokenizer: decode a short window (context avoids a stripped space)
            self.ids, self.prefix, self.read = list(context), 0, len(context)

    def _dec(self, a: int, b: int) -> str:
        return self.tok.decode(self.ids[a:b], skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)

    def push(self, i: int) -> str:
        if self.table is not None:
            return self.utf8.decode(self.table[i] if 0 <= i < len(self.table) else b"")
        self.ids.append(i)
        head, new = self._dec(self.prefix, self.read), self._dec(self.prefix, len(self.ids))
        if len(new) > len(head) and not new.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return new[len(head):]
        return ""

    def flush(self) -> str:
        if self.table is not None:
            return self.utf8.decode(b"", final=True)
        if self.read == len(self.ids):
            return ""
        return self._dec(self.prefix, len(self.ids))[len(self._dec(self.prefix, self.read)):]


def token_texts(tokenizer, table, ids: Sequence[int], context: Sequence[int] = ()) -> list[str]:
    """Each id's text, left to right; what is still pending at the end goes to the last."""
    stream = Stream(tokenizer, table, context)
    texts = [stream.push(i) for i in ids]
    tail = stream.flush()
    if tail and texts:
        texts[-1] += tail
    return texts


def cut_at_stop(texts: Sequence[str], stops: Sequence[str]) -> tuple[int, bool]:
    """(how many tokens to keep, whether a stop string was found), by the module's stop rule."""
    full = "".join(texts)
    hits = [h for h in (full.find(s) for s in stops) if h >= 0]
    if not hits:
        return len(texts), False
    c = min(hits)
    ends = list(accumulate(len(t) for t in texts))
    t = next(i for i, e in enumerate(ends) if e > c)  # the token in which the stop begins
    start = ends[t] - len(texts[t])
    whole = any(s in full[c:ends[t]] for s in stops)
    x = start if start == c or whole else ends[t]  # the completion ends at character x
    keep = 0  # tokens up to the last one with text ending by x (never half a character)
    for i, e in enumerate(ends):
        if e > x:
            break
        if texts[i]:
            keep = i + 1
    return keep, True
