"""Evaluation beyond a task's own metrics: lm-evaluation-harness on causal LMs (harness.py)."""
