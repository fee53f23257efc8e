"""T5's span-corruption objective, as pure functions on token ids.

A chunk of text has ~15% of its tokens masked in spans of mean length 3. Each
masked span becomes one sentinel in the inputs; the targets list every
sentinel followed by the tokens it hides, so sentinel i marks the same gap in
both (Raffel et al. 2020, section 3.1.4):

    tokens   10 11 12 13 14 15      mask  . . x x . x
    inputs   10 11 <s0> 14 <s1> </s>
    targets  <s0> 12 13 <s1> 15 </s>

Documents are packed end to end into chunks whose corrupted inputs fit the
model's input length exactly (`raw_length_for`), as T5 does for C4. Masks are
drawn from torch's global RNG unless a generator is given: the trainer
restores that RNG on resume, so a resumed run replays the same masks.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from pgfsparse.errors import DataConfigError

NOISE_DENSITY = 0.15  # fraction of tokens masked (T5 default)
MEAN_SPAN_LENGTH = 3.0  # mean length of a masked span (T5 default)
IGNORE_INDEX = -100  # label value Hugging Face losses skip


def noise_span_counts(
    length: int, noise_density: float = NOISE_DENSITY, mean_span_length: float = MEAN_SPAN_LENGTH
) -> Tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of `length` tokens."""
    if length < 2:
        raise DataConfigError(f"span corruption needs sequences of >= 2 tokens, got {length}")
    # At least one token is masked and at least one kept, so both kinds of span exist.
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(1, round(num_noise / mean_span_length))
    # Every span, noise or not, holds >= 1 token.
    return num_noise, min(num_spans, num_noise, length - num_noise)


def _random_segmentation(num_items: int, num_segments: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Lengths of `num_segments` non-empty segments summing to `num_items`, uniformly at random."""
    # Choose num_segments - 1 distinct cuts among the num_items - 1 gaps between items.
    cuts = torch.randperm(num_items - 1, generator=generator)[: num_segments - 1].sort().values + 1
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([num_items])])
    return bounds.diff()


def random_spans_noise_mask(
    length: int,
    noise_density: float = NOISE_DENSITY,
    mean_span_length: float = MEAN_SPAN_LENGTH,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """A (length,) bool mask, True = noise: k kept spans and k noise spans, alternating, kept first.

    So the mask always starts with a kept token and ends with a noise token.
    """
    num_noise, num_spans = noise_span_counts(length, noise_density, mean_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, generator)
    kept_lengths = _random_segmentation(length - num_noise, num_spans, generator)
    span_lengths = torch.stack([kept_lengths, noise_lengths], dim=1).reshape(-1)
    return torch.tensor([False, True]).repeat(num_spans).repeat_interleave(span_lengths)


def corrupt(
    tokens: torch.Tensor, noise_mask: torch.Tensor, sentinel_ids: Sequence[int], eos_id: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): noise span i -> sentinel_ids[i] in inputs; targets = s0 span0 s1 span1 ... eos.

    T5 builds the targets as the complement (each kept span -> one sentinel),
    which adds a trailing sentinel when the mask ends on a kept token. Masks
    from `random_spans_noise_mask` start kept and end noisy, so the complement
    is exactly "each sentinel followed by its span", built here directly.
    """
    tokens, noise_mask = torch.as_tensor(tokens, dtype=torch.long), torch.as_tensor(noise_mask, dtype=torch.bool)
    starts = noise_mask & ~torch.cat([torch.tensor([False]), noise_mask[:-1]])
    num_spans = int(starts.sum())
    if num_spans > len(sentinel_ids):
        raise DataConfigError(
            f"{num_spans} noise spans but only {len(sentinel_ids)} sentinel ids; "
            "pass more sentinel ids or shorter sequences"
        )
    sentinel_at = torch.zeros_like(tokens)
    sentinel_at[starts] = torch.as_tensor(sentinel_ids[:num_spans], dtype=torch.long)
    eos = torch.tensor([eos_id])

    # Inputs: kept tokens, plus each span's first position turned into its sentinel.
    inputs = torch.where(starts, sentinel_at, tokens)[~noise_mask | starts]
    # Targets: for each noise token, (its span's sentinel if it opens the span, the token).
    pairs = torch.stack([sentinel_at, tokens], dim=1)[noise_mask]
    keep = torch.stack([starts, torch.ones_like(starts)], dim=1)[noise_mask]
    targets = pairs[keep]
    return torch.cat([inputs, eos]), torch.cat([targets, eos])


def reconstruct(inputs: torch.Tensor, targets: torch.Tensor, sentinel_ids: Sequence[int]) -> torch.Tensor:
    """The original tokens: each sentinel in inputs replaced by what follows it in targets."""
    sentinels = {int(s) for s in sentinel_ids}
    fills: Dict[int, List[int]] = {}
    current: Optional[List[int]] = None
    for t in targets.tolist()[:-1]:  # drop eos
        if t in sentinels:
            current = fills.setdefault(t, [])
        else:
            assert current is not None, "targets open with a sentinel"
            current.append(t)
    out: List[int] = []
    for t in inputs.tolist()[:-1]:
        out.extend(fills[t] if t in sentinels else [t])
    return torch.tensor(out, dtype=torch.long)


def lengths_after_corruption(
    raw_length: int, noise_density: float = NOISE_DENSITY, mean_span_length: float = MEAN_SPAN_LENGTH
) -> Tuple[int, int]:
    """(inputs, targets) lengths, eos included, of a corrupted chunk of `raw_length` tokens.

    Fixed by the counts alone (masks end on noise, so targets have no trailing sentinel).
    """
    num_noise, num_spans = noise_span_counts(raw_length, noise_density, mean_span_length)
    return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def raw_length_for(
    max_inputs_length: int, noise_density: float = NOISE_DENSITY, mean_span_length: float = MEAN_SPAN_LENGTH
) -> int:
    """The longest chunk whose corrupted inputs (eos included) fit `max_inputs_length` (512 -> 568)."""

    def fits(raw: int) -> bool:
        return lengths_after_corruption(raw, noise_density, mean_span_length)[0] <= max_inputs_length

    if not fits(2):
        raise DataConfigError(f"max inputs length {max_inputs_length} is too short for span corruption; set it to >= 3")
    # Inputs grow by 0 or 1 token per raw token, so walk up until the next one overflows.
    raw = 2
    while fits(raw + 1):
        raw += 1
    return raw


def pack(token_lists: Iterable[Sequence[int]], chunk_length: int, eos_id: int) -> torch.Tensor:
    """(num_chunks, chunk_length): documents joined, each followed by eos, cut into full chunks."""
    flat = [t for doc in token_lists for t in (*doc, eos_id)]
    num_chunks = len(flat) // chunk_length
    if num_chunks == 0:
        raise DataConfigError(
            f"the text has {len(flat)} tokens (eos included), less than one chunk of "
            f"{chunk_length}; lower the sequence length or add text"
        )
    # The remainder is dropped: a short last chunk would need padding T5 never trains on.
    return torch.tensor(flat[: num_chunks * chunk_length], dtype=torch.long).view(num_chunks, chunk_length)


class SpanCorruptionDataset(Dataset):
    """Packed chunks, corrupted with a fresh mask (global RNG) on every access."""

    def __init__(
        self,
        chunks: torch.Tensor,
        sentinel_ids: Sequence[int],
        eos_id: int,
        noise_density: float = NOISE_DENSITY,
        mean_span_length: float = MEAN_SPAN_LENGTH,
    ):
        self.chunks, self.sentinel_ids, self.eos_id = chunks, list(sentinel_ids), eos_id
        self.noise_density, self.mean_span_length = noise_density, mean_span_length

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        chunk = self.chunks[i]
        mask = random_spans_noise_mask(len(chunk), self.noise_density, self.mean_span_length)
        return corrupt(chunk, mask, self.sentinel_ids, self.eos_id)


def pad_seq2seq(pairs: Sequence[Tuple[torch.Tensor, torch.Tensor]], pad_id: int) -> dict:
    """Batch (inputs, targets) pairs: inputs right-padded with pad_id, labels with -100 (ignored by the loss)."""
    in_len = max(len(x) for x, _ in pairs)
    out_len = max(len(y) for _, y in pairs)
    input_ids = torch.full((len(pairs), in_len), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), in_len), dtype=torch.long)
    labels = torch.full((len(pairs), out_len), IGNORE_INDEX, dtype=torch.long)
    for row, (x, y) in enumerate(pairs):
        input_ids[row, : len(x)], attention_mask[row, : len(x)], labels[row, : len(y)] = x, 1, y
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
