"""T5 span corruption: masks, sentinels, lengths, packing and padding, on a tiny local text."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfsparse.data.text.span_masking import (
    SpanCorruptionDataset,
    corrupt,
    lengths_after_corruption,
    noise_span_counts,
    pack,
    pad_seq2seq,
    random_spans_noise_mask,
    raw_length_for,
    reconstruct,
)

PAD, EOS = 0, 1
SENTINELS = [999 - i for i in range(200)]  # like T5: <extra_id_0> is the top id, counting down

TEXT = """The quick brown fox jumps over the lazy dog while the farmer sleeps in the barn.

Sparse networks keep only a fraction of their weights, and the rest are pruned away during training.

Span corruption masks short runs of tokens and asks the decoder to write them back in order.

Every paragraph here becomes one document, and documents are packed end to end into chunks."""


def spans(mask):
    """[(start, end)] of the True runs of a bool mask."""
    out, start = [], None
    for i, m in enumerate(mask.tolist() + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def t5_complement_targets(tokens, mask):
    """T5's targets, built as T5 describes them: each kept span -> one sentinel, in order; noise kept."""
    out, n = [], 0
    for i, (t, m) in enumerate(zip(tokens.tolist(), mask.tolist())):
        if m:
            out.append(t)
        elif i == 0 or mask[i - 1]:
            out.append(SENTINELS[n])
            n += 1
    return out + [EOS]


@pytest.fixture
def documents(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    paragraphs = [p.split() for p in path.read_text().split("\n\n")]
    vocab = {w: i + 2 for i, w in enumerate(sorted({w for p in paragraphs for w in p}))}
    return [[vocab[w] for w in p] for p in paragraphs]


def test_noise_span_counts():
    assert noise_span_counts(100) == (15, 5)
    assert noise_span_counts(2) == (1, 1)
    assert noise_span_counts(3) == (1, 1)  # round(0.45) = 0, raised to 1
    assert noise_span_counts(10) == (2, 1)
    assert noise_span_counts(4, 0.9, 1.0) == (3, 1)  # 3 noise tokens, but only 1 kept token to separate spans
    with pytest.raises(ValueError, match=">= 2 tokens"):
        noise_span_counts(1)


def test_mask_density_and_span_lengths():
    gen = torch.Generator().manual_seed(0)
    first_noise, first_kept, masks = [], [], set()
    for _ in range(2000):
        mask = random_spans_noise_mask(100, generator=gen)
        assert mask.dtype == torch.bool and mask.shape == (100,)
        assert int(mask.sum()) == 15  # round(100 * 0.15), exactly, every time
        noise = spans(mask)
        kept = spans(~mask)
        assert len(noise) == len(kept) == 5 and all(e > s for s, e in noise + kept)
        assert not mask[0] and mask[-1]
        first_kept.append(noise[0][0])
        first_noise.append(noise[0][1] - noise[0][0])
        masks.add(tuple(mask.tolist()))
    # A uniformly random segment of n items into k parts has mean n / k: 15 / 5 and 85 / 5.
    assert sum(first_noise) / len(first_noise) == pytest.approx(3.0, abs=0.1)
    assert sum(first_kept) / len(first_kept) == pytest.approx(17.0, abs=0.5)
    assert len(masks) > 1900  # fresh masks, not a handful repeated


@pytest.mark.parametrize("density,mean", [(0.15, 3.0), (0.5, 1.0), (0.3, 8.0)])
def test_mask_counts_for_all_small_lengths(density, mean):
    gen = torch.Generator().manual_seed(1)
    for length in range(2, 40):
        mask = random_spans_noise_mask(length, density, mean, generator=gen)
        num_noise, num_spans = noise_span_counts(length, density, mean)
        assert int(mask.sum()) == num_noise and len(spans(mask)) == num_spans
        assert not mask[0] and mask[-1]


def test_hand_worked_example():
    tokens = torch.arange(10, 20)
    mask = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=torch.bool)
    inputs, targets = corrupt(tokens, mask, SENTINELS, EOS)
    assert inputs.tolist() == [10, 11, 999, 14, 15, 16, 998, 18, 997, EOS]
    assert targets.tolist() == [999, 12, 13, 998, 17, 997, 19, EOS]
    assert inputs.dtype == targets.dtype == torch.long
    assert reconstruct(inputs, targets, SENTINELS).tolist() == tokens.tolist()


def test_too_few_sentinels():
    mask = torch.tensor([0, 1, 0, 1, 0, 1], dtype=torch.bool)
    with pytest.raises(ValueError, match="3 noise spans but only 2 sentinel"):
        corrupt(torch.arange(6), mask, SENTINELS[:2], EOS)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 300), density=st.floats(0.05, 0.6), mean=st.floats(1.0, 10.0), seed=st.integers(0, 2**31))
def test_corruption_round_trip(length, density, mean, seed):
    tokens = torch.randint(2, 800, (length,), generator=torch.Generator().manual_seed(seed))
    mask = random_spans_noise_mask(length, density, mean, generator=torch.Generator().manual_seed(seed))
    inputs, targets = corrupt(tokens, mask, SENTINELS, EOS)
    num_noise, num_spans = noise_span_counts(length, density, mean)
    # T5 builds the targets as the complement of the inputs; ours match it (masks end on noise).
    assert targets.tolist() == t5_complement_targets(tokens, mask)
    # Sentinels appear in order 0, 1, 2, ... in both, one per noise span.
    used = SENTINELS[:num_spans]
    assert [t for t in inputs.tolist() if t in SENTINELS] == used
    assert [t for t in targets.tolist() if t in SENTINELS] == used
    assert (len(inputs), len(targets)) == lengths_after_corruption(length, density, mean)
    assert inputs[-1] == targets[-1] == EOS
    assert reconstruct(inputs, targets, SENTINELS).tolist() == tokens.tolist()


def test_raw_length_for():
    assert raw_length_for(512) == 568  # T5: 568 raw tokens -> 512 inputs, 114 targets
    assert lengths_after_corruption(568) == (512, 114)
    for m in [3, 4, 5, 10, 32, 64, 100, 512]:
        raw = raw_length_for(m)
        assert lengths_after_corruption(raw)[0] <= m < lengths_after_corruption(raw + 1)[0]
    assert raw_length_for(3) == 2
    with pytest.raises(ValueError, match="set it to >= 3"):
        raw_length_for(2)


def test_pack():
    chunks = pack([[5, 6, 7], [8], [9, 10, 11, 12]], 3, EOS)
    assert chunks.dtype == torch.long
    assert chunks.tolist() == [[5, 6, 7], [EOS, 8, EOS], [9, 10, 11]]  # [12, EOS] dropped
    assert pack([[5, 6]], 3, EOS).tolist() == [[5, 6, EOS]]
    with pytest.raises(ValueError, match="has 2 tokens.*lower the sequence length or add text"):
        pack([[5]], 3, EOS)


def test_dataset_on_local_text(documents):
    raw = raw_length_for(32)
    assert raw == 34 and noise_span_counts(raw) == (5, 2)  # 2 spans: masks vary (1 span would not)
    chunks = pack(documents, raw, EOS)
    assert chunks.shape == (2, raw)  # 69 tokens with eos, 1 left over
    dataset = SpanCorruptionDataset(chunks, SENTINELS, EOS)
    assert len(dataset) == len(chunks)
    torch.manual_seed(0)
    items = [dataset[i] for i in range(len(dataset))]
    for chunk, (inputs, targets) in zip(chunks, items):
        assert (len(inputs), len(targets)) == lengths_after_corruption(raw)
        assert len(inputs) <= 32
        assert reconstruct(inputs, targets, SENTINELS).tolist() == chunk.tolist()
    # Same global RNG state -> same items; another draw -> a fresh mask.
    torch.manual_seed(0)
    again = [dataset[i] for i in range(len(dataset))]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(items, again))
    later = [dataset[i] for i in range(len(dataset))]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(items, later))
    batch = pad_seq2seq(items, PAD)
    assert batch["input_ids"].shape == (2, 32) and batch["attention_mask"].all()  # fixed length: no padding


def test_generator_determinism():
    a = random_spans_noise_mask(200, generator=torch.Generator().manual_seed(7))
    b = random_spans_noise_mask(200, generator=torch.Generator().manual_seed(7))
    c = random_spans_noise_mask(200, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # A private generator leaves the global RNG alone.
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    random_spans_noise_mask(200, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(1), expected)


def test_pad_seq2seq():
    pairs = [(torch.tensor([5, 6, 1]), torch.tensor([7, 1])),
             (torch.tensor([8, 1]), torch.tensor([9, 10, 11, 1]))]
    batch = pad_seq2seq(pairs, PAD)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [8, 1, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [9, 10, 11, 1]]
    assert all(v.dtype == torch.long for v in batch.values())
