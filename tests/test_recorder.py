"""The Recorder's throughput window and summary rate, on a fake clock and hand-computed numbers."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.spec import resolve
from pgfsparse.run.recorder import Recorder

# cumulative training FLOPs after each step: 100 per step, then 200 per step from step 4 on
CUMULATIVE = {0: 0.0, 1: 100.0, 2: 200.0, 3: 300.0, 4: 500.0, 5: 700.0}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def recorder(tmp_path, clock, start=0, wall_offset=0.0, task=None):
    cfg = TrainConfig()
    cfg.logger.wandb, cfg.log_every, cfg.budget.steps = False, 3, 5
    parts = SimpleNamespace(
        start_step=start, total_steps=5, wall_offset=wall_offset, run_id="r", peak_flops=1e4,
        train_examples=100, examples_per_step=8, data=None,
        flops=SimpleNamespace(cumulative_train_flops=CUMULATIVE.__getitem__, inference_flops=lambda: 7.0),
        optimizer=SimpleNamespace(param_groups=[{"lr": 0.1}]),
        sparsifier=SimpleNamespace(layers=[], skipped=[]), oneshot=None)
    process = SimpleNamespace(is_main=True, world_size=1)
    task = task or SimpleNamespace(eval_metric="top1", higher_is_better=True)
    return Recorder(cfg, resolve(cfg), task, parts, process, tmp_path, clock=clock)


def train_events(tmp_path):
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "train"]


def test_each_log_line_covers_its_own_window(tmp_path):
    clock = Clock()
    rec = recorder(tmp_path, clock)
    with rec.training():
        for done, (now, loss) in enumerate([(2, 4.0), (4, 2.0), (6, 3.0), (7, 1.0), (10, 3.0)], start=1):
            clock.now = now
            rec.step_done(done, loss, examples=8, grad_norm=0.5)
    first, second = train_events(tmp_path)
    # steps 1-3 over 6 s: 300 FLOPs, 24 examples; steps 4-5 over 4 s (6 -> 10): 400 FLOPs, 16 examples
    assert (first["step"], first["train/loss"], first["train/examples_per_s"]) == (3, 3.0, 4.0)
    assert (first["train/flops_per_s"], first["train/mfu"], first["epoch"]) == (50.0, 0.005, 0.24)
    assert (first["train/lr"], first["train/grad_norm"], first["train_flops"]) == (0.1, 0.5, 300.0)
    assert (second["step"], second["train/loss"], second["train/examples_per_s"]) == (5, 2.0, 4.0)
    assert (second["train/flops_per_s"], second["epoch"]) == (100.0, 0.4)
    assert rec.loop_seconds == 10.0
    summary = rec.finish({"eval/top1": 50.0, "eval_strict/top1": 40.0})
    assert (summary["train_flops_per_s"], summary["mfu"], summary["train_flops"]) == (70.0, 0.007, 700.0)
    assert json.loads((tmp_path / "summary.json").read_text())["eval_value_strict"] == 40.0


def test_a_resumed_launch_rates_only_its_own_steps(tmp_path):
    clock = Clock()
    clock.now = 100.0
    rec = recorder(tmp_path, clock, start=3, wall_offset=50.0)
    with rec.training():
        clock.now = 101.0
        rec.step_done(4, 1.0, examples=8, grad_norm=0.5)
        clock.now = 104.0
        rec.step_done(5, 3.0, examples=8, grad_norm=0.5)
    (event,) = train_events(tmp_path)
    assert (event["step"], event["train/flops_per_s"], event["train/examples_per_s"]) == (5, 100.0, 4.0)
    assert rec.loop_seconds == pytest.approx(4.0) and rec.elapsed() == pytest.approx(54.0)
    assert rec.summary({"eval/top1": 1.0, "eval_strict/top1": 1.0}, 54.0).train_flops_per_s == pytest.approx(100.0)


def test_each_task_writes_its_own_headline():
    from pgfsparse.tasks import ImageClassification
    from pgfsparse.tasks.translation import Translation

    summary = {"eval_metric": "token_acc", "eval_value": 61.234, "eval_value_strict": 60.5, "steps": 40,
               "train_flops": 1.234e12, "wall_seconds": 12.4, "run_dir": "runs/x",
               "eval": {"eval/bleu": 3.14159, "eval_strict/bleu": 2.5}}
    plain = "token_acc 61.23 as trained, 60.50 strict N:M; 40 steps, 1.23e+12 training FLOPs, 12s -> runs/x"
    assert ImageClassification(TrainConfig()).headline(summary) == plain
    assert Translation(TrainConfig()).headline(summary) == plain.replace("N:M;", "N:M (BLEU 3.14 / 2.50);")



@pytest.mark.parametrize("module, name, expected", [
    ("pgfsparse.tasks.image_classification", "ImageClassification", ("top1", True)),
    ("pgfsparse.tasks.causal_lm", "CausalLM", ("perplexity", False)),  # lower perplexity is better
])
def test_the_summary_records_the_direction_of_the_tasks_headline(tmp_path, module, name, expected):
    """summary.json's eval_higher_is_better is the task's own (a class attribute, read off the class)."""
    cls = getattr(pytest.importorskip(module), name)
    assert (cls.eval_metric, cls.higher_is_better) == expected
    task = SimpleNamespace(eval_metric=cls.eval_metric, higher_is_better=cls.higher_is_better)
    rec = recorder(tmp_path, Clock(), task=task)
    with rec.training():
        pass
    rec.finish({f"eval/{cls.eval_metric}": 12.5, f"eval_strict/{cls.eval_metric}": 13.0})
    written = json.loads((tmp_path / "summary.json").read_text())
    assert (written["eval_metric"], written["eval_higher_is_better"], written["eval_value"]) == (*expected, 12.5)


def test_a_lower_is_better_headline_is_recorded_as_such_whatever_its_name(tmp_path):
    """The flag comes from the task, not from the metric's name: a made-up 'score' where lower is better."""
    rec = recorder(tmp_path, Clock(), task=SimpleNamespace(eval_metric="score", higher_is_better=False))
    with rec.training():
        pass
    summary = rec.finish({"eval/score": 3.0, "eval_strict/score": 4.0})
    assert summary["eval_higher_is_better"] is False
    assert json.loads((tmp_path / "summary.json").read_text())["eval_higher_is_better"] is False
