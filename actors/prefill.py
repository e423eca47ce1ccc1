"""The KV cache of prompts that several rows of a batch share, computed once and copied.

    cache = prefill_cache(model, ids, mask, rows, extra)     # ids, mask: [prompts, width]
    model.generate(input_ids=row_ids, attention_mask=row_mask, cache=cache, ...)

`ids`/`mask` hold each distinct prompt once, left-padded; `rows[r]` is the prompt of row r of
the generate call, whose `row_ids` are those prompts' rows in full. The model runs over every
prompt but its last token, with the position ids model.generate derives from the attention
mask (cumsum - 1, 0 on padding), and the cache is copied to the rows; model.generate then
runs only each row's last prompt token before it decodes. So the rows see the same positions
and the same keys and values as when each prefills its own copy (up to float rounding: a
batch of distinct prompts instead of one of rows).

The cache's plain layers also reserve room for `extra` more positions and write each step's
keys and values in place (`reserve`): DynamicCache otherwise concatenates the whole cache at
every step, which is one full copy of it per generated token.
"""

from __future__ import annotations

import functools

import torch


def prefill_cache(model, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                  extra: int):
    """A DynamicCache of `ids[:, :-1]` for the rows `rows`, reserving `extra` positions."""
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as model.generate makes them
    out = model.base_model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                           position_ids=pos[:, :-1], use_cache=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    cache.batch_select_indices(rows)
    reserve(cache, extra)
    return cache


def reserve(cache, extra: int) -> None:
    """Let the plain layers of a DynamicCache grow into buffers with room for `extra` more
    positions: each update writes the new keys and values in place and the layer holds views
    of the filled part. The same values, so attention gives the same results; the per-token
    copy of the whole cache is gone. Other layer kinds (sliding window, ...) are left alone."""
    from transformers.cache_utils import DynamicLayer

    reserved = _reserved_layer()
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = reserved
            layer._extra = extra


@functools.cache
def _reserved_layer():
    """The DynamicLayer that writes in place into a buffer `_extra` positions longer (built
    once: transformers is imported only where a model runs)."""
    from transformers.cache_utils import DynamicLayer

    class Reserved(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            n = self.get_seq_length()
            if n == 0:
                return super().update(key_states, value_states, *args, **kwargs)
            m = n + key_states.shape[-2]
            buf = getattr(self, "_kv", None)
            if (buf is None or buf[0].data_ptr() != self.keys.data_ptr()
                    or buf[0].shape[-2] < m):  # first update, or the cache was replaced
                shape = (*self.keys.shape[:-2], m + self._extra, self.keys.shape[-1])
                buf = self._kv = (self.keys.new_empty(shape), self.values.new_empty(shape))
                buf[0][..., :n, :], buf[1][..., :n, :] = self.keys, self.values
            buf[0][..., n:m, :], buf[1][..., n:m, :] = key_states, value_states
            self.keys, self.values = buf[0][..., :m, :], buf[1][..., :m, :]
            return self.keys, self.values

    return Reserved
