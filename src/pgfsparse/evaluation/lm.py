"""lm-evaluation-harness's `LM` over a Hugging Face causal LM and a pgfsparse tokenizer, in memory.

lm-eval's own `HFLM` needs a Hugging Face tokenizer; a run's `char`, `byte` or offline BPE tokenizer is
not one, so this wrapper speaks the causal-LM tokenizer protocol instead (`encode` without special
tokens, `decode`, `eos_token_id`, and `bos_token_id` where the model expects one): one wrapper for every
tokenizer a run can have. It follows lm-eval's conventions, so scores compare with `HFLM`'s:

- a context's trailing whitespace moves to the continuation, and the continuation's tokens are those of
  `context + continuation` after the context's (the split a BPE tokenizer sees in running text);
- a tokenizer with a `bos_token_id` (a pretrained Llama-family tokenizer, which adds BOS to every text)
  gets BOS before every context and every rolling text, as `HFLM` encodes them;
- otherwise an empty context, and the start of a rolling (perplexity) text, are conditioned on EOS
  (lm-eval's prefix token); a tokenizer without EOS (a char tokenizer of one running text) leaves the
  text's first token unscored;
- inputs longer than the model's context keep their end (truncated from the left); rolling texts are
  cut into lm-eval's disjoint windows, each scored with as much context as fits;
- generation is greedy, stops at EOS or the request's `until` strings, and keeps the prompt's end when
  the prompt and `max_gen_toks` exceed the context.

This module imports lm_eval: import it only once lm_eval is known to be installed (harness.py does).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, List, Optional, Sequence, Tuple, cast

import torch
from lm_eval.api.model import LM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

Tokens = List[int]
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM default for generation requests that name none


def context_length(model: nn.Module) -> int:
    """The most positions the model attends over (GPT2Config maps `max_position_embeddings` to `n_positions`)."""
    return int(cast(Any, model).config.max_position_embeddings)


class HarnessLM(LM):
    """A causal LM as lm-eval's `LM`: log-likelihoods, rolling log-likelihoods and greedy generation.

    `tokenizer` follows the causal-LM tokenizer protocol; `autocast` (a no-argument context manager
    factory, the run's precision) wraps every forward; requests run `batch_size` at a time, longest first.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        device: Any = "cpu",
        autocast: Optional[Callable[[], ContextManager[Any]]] = None,
    ):
        super().__init__()
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self._device = torch.device(device)
        self.autocast = autocast or contextlib.nullcontext
        self.max_length = context_length(model)
        self.bos: Optional[int] = getattr(tokenizer, "bos_token_id", None)  # optional in the protocol
        self.prefix: Optional[int] = self.bos if self.bos is not None else tokenizer.eos_token_id

    # -- lm-eval's three requests -------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> List[Tuple[float, bool]]:
        """(log P(continuation | context), whether greedy decoding would produce it) per request."""
        return self.score([self.encode_pair(*request.args) for request in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> List[float]:
        """log P(text) per request, every token scored once (lm-eval's disjoint rolling windows)."""
        windows: List[Tuple[Tokens, Tokens]] = []
        owners: List[int] = []
        for k, request in enumerate(requests):
            (text,) = request.args
            prefix, tokens = self._prefixed(self.tokenizer.encode(text))
            for window in get_rolling_token_windows(tokens, prefix, self.max_length, 1):
                windows.append(make_disjoint_window(window))
                owners.append(k)
        totals = [0.0] * len(requests)
        for k, (logprob, _) in zip(owners, self.score(windows)):
            totals[k] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> List[str]:
        """Greedy continuations, cut at the first of the request's `until` strings."""
        out = [""] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].args[0]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            texts = self._generate([requests[i].args for i in batch])
            for i, text in zip(batch, texts):
                out[i] = text
        return out

    # -- scoring ------------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> Tuple[Tokens, Tokens]:
        """(context tokens, continuation tokens), as lm-eval splits them; BOS, or for an empty context the prefix."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        head = self.tokenizer.encode(context)
        tail = whole[len(head) :]
        if self.bos is not None:
            return [self.bos] + head, tail
        if head:
            return head, tail
        prefix, tail = self._prefixed(tail)
        return ([prefix] if prefix is not None else []), tail

    def _prefixed(self, tokens: Tokens) -> Tuple[Any, Tokens]:
        """(the token that conditions `tokens`' start, the tokens to score): the prefix, else the first token."""
        if self.prefix is not None or not tokens:
            return self.prefix, tokens
        return tokens[0], tokens[1:]

    def score(self, pairs: Sequence[Tuple[Tokens, Tokens]]) -> List[Tuple[float, bool]]:
        """(summed log-probability, greedy) of each continuation given its context, longest inputs first."""
        longest = max((len(continuation) for _, continuation in pairs), default=0)
        if longest > self.max_length:
            raise ValueError(
                f"lm-eval asked to score a continuation of {longest} tokens, more than the model's context of "
                f"{self.max_length}: drop that task from eval.lm_eval.tasks or use a model with a longer context"
            )
        out: List[Tuple[float, bool]] = [(0.0, True)] * len(pairs)
        order = sorted((i for i in range(len(pairs)) if pairs[i][1]), key=lambda i: -sum(map(len, pairs[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # the input is context + continuation but its last token, left-truncated to the context length
            inputs = [(pairs[i][0] + pairs[i][1])[-(self.max_length + 1) : -1] for i in batch]
            logits = self._logits(inputs)
            for row, i in enumerate(batch):
                targets = torch.tensor(pairs[i][1], device=logits.device)
                end = len(inputs[row])
                logprobs = torch.log_softmax(logits[row, end - len(targets) : end].float(), dim=-1)
                picked = logprobs.gather(-1, targets[:, None]).sum()
                out[i] = (float(picked), bool((logprobs.argmax(-1) == targets).all()))
        return out

    @torch.no_grad()
    def _logits(self, rows: Sequence[Tokens]) -> torch.Tensor:
        """The model's logits over `rows` padded on the right (causal attention: padding follows what is read)."""
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        mask = torch.zeros_like(ids)  # said explicitly: an EOS prefix reads as padding to Hugging Face otherwise
        for r, tokens in enumerate(rows):
            ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[r, : len(tokens)] = 1
        with self.autocast():
            return self.model(input_ids=ids.to(self._device), attention_mask=mask.to(self._device)).logits

    # -- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, requests: Sequence[Tuple[str, dict]]) -> List[str]:
        """One batch of greedy generations (Hugging Face `generate`, prompts padded on the left)."""
        settings = [_generation_settings(kwargs) for _, kwargs in requests]
        new = min(max(n for _, n in settings), self.max_length - 1)
        start = [self.bos] if self.bos is not None else []
        prompts = [(start + self.tokenizer.encode(context))[-(self.max_length - new) :] for context, _ in requests]
        prompts = [p or ([self.prefix] if self.prefix is not None else [0]) for p in prompts]
        width = max(map(len, prompts))
        pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, tokens in enumerate(prompts):
            ids[r, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[r, width - len(tokens) :] = 1
        stop = _StopStrings(self.tokenizer, [until for until, _ in settings], width)
        with self.autocast():
            generated = cast(Any, self.model).generate(  # a Hugging Face GenerationMixin
                input_ids=ids.to(self._device),
                attention_mask=mask.to(self._device),
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([stop]),
            )
        return [
            _cut(stop.text(row[:limit]), until) for row, (until, limit) in zip(generated[:, width:].tolist(), settings)
        ]


def _generation_settings(kwargs: Any) -> Tuple[List[str], int]:
    """(stop strings, most new tokens) of one request's generation kwargs; sampling options are ignored."""
    kwargs = dict(kwargs or {})
    until = kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    return until, int(kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))


def _cut(text: str, until: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    ends = [text.find(s) for s in until if s and s in text]
    return text[: min(ends)] if ends else text


class _StopStrings(StoppingCriteria):
    """Hugging Face stopping criterion: a row is done once its generated text holds one of its stop strings."""

    def __init__(self, tokenizer: Any, until: Sequence[Sequence[str]], start: int):
        self.tokenizer, self.until, self.start = tokenizer, until, start

    def text(self, tokens: Tokens) -> str:
        """The generated tokens as text, up to EOS (a finished row is padded after it)."""
        eos = self.tokenizer.eos_token_id
        return self.tokenizer.decode(tokens[: tokens.index(eos)] if eos in tokens else tokens)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = [
            any(s and s in self.text(row) for s in until)
            for row, until in zip(input_ids[:, self.start :].tolist(), self.until)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
