"""lm-evaluation-harness, offline: local tasks on a tiny GPT-2 with a char tokenizer (issue 23, item 4).

The wrapper's log-likelihoods, rolling windows and greedy generations are checked against direct,
unbatched forwards of the model; the local tasks (tests/fixtures/lm_eval: a multiple-choice task and a
perplexity task over JSON lines) run through lm-eval's own `simple_evaluate` with a TaskManager that
scans only that folder, and their metrics are recomputed here from the model's logits. No socket may
connect during these tests.
"""

from __future__ import annotations

import json
import math
import re
import socket
import string
import sys
from pathlib import Path

import pytest
import torch

if sys.version_info < (3, 10):  # lm_eval>=0.4.10 needs Python 3.10; the extra installs nothing on 3.9
    pytest.skip("lm-evaluation-harness needs Python >= 3.10", allow_module_level=True)

from pgfsparse.config.schema import LmEvalConfig, TrainConfig
from pgfsparse.errors import ConfigError
from pgfsparse.evaluation import harness
from pgfsparse.evaluation.harness import check_lm_eval, flat_metrics, run_lm_eval

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"


class CharTokenizer:
    """The causal-LM tokenizer protocol over a fixed alphabet; the last id is EOS."""

    chars = string.ascii_letters + string.digits + " .,?!:;'\"=+-\n"

    def __init__(self):
        self.ids = {c: i for i, c in enumerate(self.chars)}
        self.eos_token_id = len(self.chars)
        self.vocab_size = len(self.chars) + 1

    def encode(self, text):
        return [self.ids[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids if i < len(self.chars))


TOK = CharTokenizer()


def tiny_gpt2(n_positions: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=TOK.vocab_size,
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=TOK.eos_token_id,
        eos_token_id=TOK.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Hub access switched off, and any socket connection an error."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def instances(kind, arguments):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=args, idx=0) for args in arguments]


def harness_lm(model, batch_size=2):
    from pgfsparse.evaluation.lm import HarnessLM

    return HarnessLM(model, TOK, batch_size=batch_size, device="cpu")


@torch.no_grad()
def logprob(model, inputs, targets):
    """log P(targets) when the last len(targets) positions of one unpadded forward over `inputs` predict them."""
    logits = model(input_ids=torch.tensor([inputs])).logits[0]
    logprobs = torch.log_softmax(logits[len(inputs) - len(targets) :].double(), dim=-1)
    return float(sum(logprobs[j, t] for j, t in enumerate(targets)))


def direct_loglikelihood(model, context, continuation, max_length):
    """lm-eval's definition, one request at a time: a context's trailing whitespace is scored with the
    continuation; an empty context is the EOS token; of context + continuation the last max_length + 1
    tokens are kept, and their first max_length are the input."""
    stripped = context.rstrip()
    context, continuation = stripped, context[len(stripped) :] + continuation
    head = TOK.encode(context) or [TOK.eos_token_id]
    tail = TOK.encode(continuation)
    tokens = (head + tail)[-(max_length + 1) :]
    return logprob(model, tokens[:-1], tail)


@torch.no_grad()
def greedy(model, prompt, steps):
    """`steps` argmax tokens after `prompt`, recomputing the whole sequence each step (no cache, no padding)."""
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_loglikelihood_is_log_softmax_of_the_logits_over_the_continuation():
    model = tiny_gpt2(n_positions=16)
    requests = [
        ("The sky is", " blue"),
        ("2 + 2 =", " 4"),
        ("", "hello"),  # conditioned on EOS
        ("Answer: ", "yes"),  # the trailing space is scored with the continuation
        ("A context longer than sixteen characters", " ends"),  # truncated from the left
    ]
    got = harness_lm(model).loglikelihood(instances("loglikelihood", requests))
    for (context, continuation), (value, _) in zip(requests, got):
        assert value == pytest.approx(direct_loglikelihood(model, context, continuation, 16), abs=1e-4)


def test_is_greedy_holds_exactly_for_the_argmax_continuation():
    model = tiny_gpt2(n_positions=16)
    context = "Once upon"
    best = TOK.decode(greedy(model, TOK.encode(context), 3))
    worse = best[:2] + next(c for c in "xyz" if c != best[2])  # the third character is not the argmax
    got = harness_lm(model).loglikelihood(instances("loglikelihood", [(context, best), (context, worse)]))
    assert [g for _, g in got] == [True, False]
    assert got[0][0] > got[1][0]


def test_rolling_loglikelihood_scores_every_token_once_in_disjoint_windows():
    """40 tokens, context 16: lm-eval's windows predict tokens 0-15 from [EOS] + 0-14, tokens 16-31 from
    15-30, and the last 8 (32-39) from 23-38, the full context before them."""
    model = tiny_gpt2(n_positions=16)
    text = "Now is the winter of our discontent, mad"
    t = TOK.encode(text)
    assert len(t) == 40
    expected = (
        logprob(model, [TOK.eos_token_id] + t[:15], t[:16])
        + logprob(model, t[15:31], t[16:32])
        + logprob(model, t[23:39], t[32:40])
    )
    short = TOK.encode("To be.")  # one window: all of it from [EOS] + all but its last token
    got = harness_lm(model).loglikelihood_rolling(instances("loglikelihood_rolling", [(text,), ("To be.",)]))
    assert got[0] == pytest.approx(expected, abs=1e-4)
    assert got[1] == pytest.approx(logprob(model, [TOK.eos_token_id] + short[:-1], short), abs=1e-4)


def test_without_eos_the_first_token_is_unscored_and_a_bos_starts_every_context():
    from pgfsparse.evaluation.lm import HarnessLM

    model = tiny_gpt2(n_positions=16)
    t, hello, sky = TOK.encode("To be."), TOK.encode("hello"), TOK.encode("The sky is blue")
    no_eos = CharTokenizer()
    no_eos.eos_token_id = None  # a char tokenizer of one running text: nothing conditions a text's start
    lm = HarnessLM(model, no_eos, batch_size=2)
    assert lm.loglikelihood_rolling(instances("loglikelihood_rolling", [("To be.",)])) == [
        pytest.approx(logprob(model, t[:-1], t[1:]), abs=1e-4)
    ]
    ((value, _),) = lm.loglikelihood(instances("loglikelihood", [("", "hello")]))
    assert value == pytest.approx(logprob(model, hello[:-1], hello[1:]), abs=1e-4)

    with_bos = CharTokenizer()
    with_bos.bos_token_id = bos = 0  # a pretrained Llama-family tokenizer's: before every text
    lm = HarnessLM(model, with_bos, batch_size=2)
    assert lm.loglikelihood_rolling(instances("loglikelihood_rolling", [("To be.",)])) == [
        pytest.approx(logprob(model, [bos] + t[:-1], t), abs=1e-4)
    ]
    ((value, _),) = lm.loglikelihood(instances("loglikelihood", [("The sky is", " blue")]))
    assert value == pytest.approx(logprob(model, [bos] + sky[:-1], sky[-5:]), abs=1e-4)


def test_generate_until_is_greedy_per_prompt_despite_left_padding():
    model = tiny_gpt2(n_positions=16)
    prompts = ["Hi", "The sky is so", "A prompt far longer than the context"]
    gen = {"until": ["\n"], "max_gen_toks": 6}
    # one batch of three prompts of 2, 10 and 10 tokens: the shortest is padded on the left
    got = harness_lm(model, batch_size=3).generate_until(instances("generate_until", [(p, gen) for p in prompts]))
    for prompt, text in zip(prompts, got):
        tokens = greedy(model, TOK.encode(prompt)[-10:], 6)  # the prompt keeps 16 - 6 tokens
        if TOK.eos_token_id in tokens:
            tokens = tokens[: tokens.index(TOK.eos_token_id)]
        assert text == TOK.decode(tokens).split("\n")[0]
    # a stop string cuts the text where it first occurs
    first = TOK.decode(greedy(model, TOK.encode("Hi"), 6))
    stop = first[2]
    cut = harness_lm(model).generate_until(instances("generate_until", [("Hi", {"until": [stop], "max_gen_toks": 6})]))
    assert cut == [first[: first.index(stop)]]


def test_local_tasks_through_simple_evaluate_give_the_model_s_metrics(monkeypatch):
    monkeypatch.chdir(FIXTURES)  # the task YAMLs name their data files relative to this folder
    model = tiny_gpt2(n_positions=64)
    rng = torch.get_rng_state()
    settings = LmEvalConfig(tasks=["tiny_mc", "tiny_ppl"], include_path=str(FIXTURES), batch_size=4)
    got = run_lm_eval(model, TOK, settings, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # lm-eval's seeding is undone

    docs = [json.loads(line) for line in (FIXTURES / "tiny_mc.jsonl").read_text().splitlines()]
    acc = acc_norm = 0
    for doc in docs:
        context = f"Question: {doc['question']}\nAnswer:"
        lls = [direct_loglikelihood(model, context, " " + c, 64) for c in doc["choices"]]
        acc += max(range(len(lls)), key=lambda i: lls[i]) == doc["answer"]
        acc_norm += max(range(len(lls)), key=lambda i: lls[i] / len(doc["choices"][i])) == doc["answer"]
    texts = [json.loads(line)["text"] for line in (FIXTURES / "tiny_ppl.jsonl").read_text().splitlines()]
    total = sum(logprob(model, [TOK.eos_token_id] + TOK.encode(x)[:-1], TOK.encode(x)) for x in texts)
    words = sum(len(re.split(r"\s+", x)) for x in texts)
    chars = sum(len(x.encode()) for x in texts)
    n = len(docs)
    expected = {
        "lm_eval/tiny_mc/acc": acc / n,
        "lm_eval/tiny_mc/acc_norm": acc_norm / n,
        "lm_eval/tiny_mc/acc_stderr": math.sqrt(acc / n * (1 - acc / n) / (n - 1)),
        "lm_eval/tiny_mc/acc_norm_stderr": math.sqrt(acc_norm / n * (1 - acc_norm / n) / (n - 1)),
        "lm_eval/tiny_ppl/word_perplexity": math.exp(-total / words),
        "lm_eval/tiny_ppl/byte_perplexity": math.exp(-total / chars),
        "lm_eval/tiny_ppl/bits_per_byte": -total / chars / math.log(2),
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key


def test_flat_metrics_keeps_finite_numbers_and_non_default_filters():
    results = {
        "arc": {"alias": "arc", "acc,none": 0.5, "acc_stderr,none": 0.1},
        "gsm8k": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": "N/A", "x,none": math.nan},
        "wiki": {"word_perplexity,none": 12, "bits_per_byte,none": True},
    }
    assert flat_metrics(results) == {
        "lm_eval/arc/acc": 0.5,
        "lm_eval/arc/acc_stderr": 0.1,
        "lm_eval/gsm8k/exact_match,strict-match": 0.25,
        "lm_eval/wiki/word_perplexity": 12.0,
    }


def config(family="gpt2", **settings):
    cfg = TrainConfig()
    cfg.model.family = family
    cfg.eval.lm_eval = LmEvalConfig(**settings)
    return cfg


def test_check_lm_eval_refuses_what_would_fail_after_training(tmp_path):
    check_lm_eval(config("vit"))  # no tasks: nothing to check
    check_lm_eval(config(tasks=["tiny_mc"], include_path=str(FIXTURES)))
    with pytest.raises(ConfigError, match="needs a causal language model but model.family=t5"):
        check_lm_eval(config("t5", tasks=["tiny_mc"], include_path=str(FIXTURES)))
    with pytest.raises(ConfigError, match="include_path=.*no such folder"):
        check_lm_eval(config(tasks=["tiny_mc"], include_path=str(tmp_path / "absent")))
    with pytest.raises(ConfigError, match="no task 'tiny_mcq'.*did you mean tiny_mc"):
        check_lm_eval(config(tasks=["tiny_mcq"], include_path=str(FIXTURES)))


@pytest.mark.slow  # scans lm-eval's ~15,000 built-in task YAMLs (seconds)
def test_check_lm_eval_knows_the_built_in_tasks():
    check_lm_eval(config(tasks=["hellaswag", "arc_easy"]))
    with pytest.raises(ConfigError, match="no task 'helaswag' among lm-eval's tasks: did you mean hellaswag"):
        check_lm_eval(config(tasks=["helaswag"]))


def test_without_lm_eval_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(harness.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=re.escape('pip install "pgfsparse[lm_eval]"')) as error:
        check_lm_eval(config(tasks=["tiny_mc"], include_path=str(FIXTURES)))
    assert "\n" not in str(error.value)


def test_pgf_train_records_lm_eval_metrics_of_the_strict_model(tmp_path, monkeypatch):
    """A 2-step 1:4 GPT-2 run (byte tokens) with eval.lm_eval: the final eval event (metrics.jsonl, which W&B
    logs as is) and summary.json's eval carry the local tasks' metrics, those of the strict N:M model."""
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_module

    from pgfsparse.config.validation import to_train_config
    from pgfsparse.run.trainer import Trainer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("To be, or not to be: that is the question.\nAll the world is a stage.\n" * 8)
    (corpus / "validation.txt").write_text("Brevity is the soul of wit.\n")
    monkeypatch.chdir(FIXTURES)
    overrides = [
        "logger=local", "checkpoint_every=null", "model=gpt2", "data=text", f"data.path={corpus}",
        "model.tokenizer.kind=byte", "data.block_size=16", "data.batch_size=4", "model.kwargs.n_layer=1",
        "model.kwargs.n_embd=32", "model.kwargs.n_head=2", "sparsity=1:4", "budget.steps=2", "threads=1",
        "eval.lm_eval.tasks=[tiny_mc,tiny_ppl]", f"eval.lm_eval.include_path={FIXTURES}",
    ]  # fmt: skip
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = to_train_config(compose(config_name="train", overrides=overrides))
    trainer = Trainer(cfg, tmp_path / "run", choices={"model": "gpt2"})
    summary = trainer.fit()

    parts = trainer.parts
    with parts.sparsifier.strict():
        strict = run_lm_eval(parts.model, trainer.task.tokenizer, cfg.eval.lm_eval, "cpu")
    as_trained = run_lm_eval(parts.model, trainer.task.tokenizer, cfg.eval.lm_eval, "cpu")
    assert strict["lm_eval/tiny_ppl/word_perplexity"] != as_trained["lm_eval/tiny_ppl/word_perplexity"]
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["eval"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    final_event = [e for e in map(json.loads, lines) if e["event"] == "eval"][-1]
    for key, value in strict.items():
        assert recorded[key] == summary["eval"][key] == final_event[key] == pytest.approx(value, rel=1e-6), key
    assert "eval_strict/perplexity" in recorded  # the task's own metrics stay
