"""Plain-library exports load without pgfsparse (a subprocess that cannot import it), and pgf-export end to end."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch
from conftest import build_t5, build_vit

import pgfsparse
from pgfsparse.export import builder_for, timm_builder
from pgfsparse.export.plain import export_hf, export_timm

VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)

# -S: no site module, so neither the editable install's .pth hook nor its finder puts src/ on the path;
# only the site-packages folder is added back (its .pth files are not run).
CHILD = """
import importlib.util, json, sys
sys.path.append({site!r})
assert importlib.util.find_spec("pgfsparse") is None, "pgfsparse is importable"
import safetensors.torch as st, timm, torch
from transformers import T5ForConditionalGeneration
torch.set_num_threads({threads})  # the parent's: other thread counts split the sums differently on some CPUs

spec = json.load(open({timm_json!r}))
vit = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"]).eval()
vit.load_state_dict(st.load_file({timm_file!r}))
x = st.load_file({inputs!r})
st.save_file(vit.state_dict(), {vit_again!r})  # a load/save round trip
vit2 = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"]).eval()
vit2.load_state_dict(st.load_file({vit_again!r}))
t5 = T5ForConditionalGeneration.from_pretrained({hf_dir!r}).eval()
t5.save_pretrained({hf_again!r})
t5b = T5ForConditionalGeneration.from_pretrained({hf_again!r}).eval()
with torch.no_grad():
    out = {{"vit": vit2(x["images"]),
            "t5": t5b(input_ids=x["ids"], decoder_input_ids=x["dec"]).logits,
            "vit_fc1": vit2.blocks[0].mlp.fc1.weight.detach().clone(),
            "t5_wi": t5b.encoder.block[0].layer[1].DenseReluDense.wi.weight.detach().clone()}}
st.save_file(out, {result!r})
"""


def test_timm_and_hf_exports_load_without_pgfsparse(tmp_path):
    from safetensors.torch import load_file, save_file

    vit, t5 = build_vit(), build_t5()
    vit_sp = pgfsparse.sparsify(vit, {"ff": "1:8", "qk": "2:4", "v": "1:4"}, recipe="ste")
    t5_sp = pgfsparse.sparsify(t5, {"ff": "1:8", "qkv": "2:4"}, recipe="ste")
    g = torch.Generator().manual_seed(0)
    x = {"images": torch.randn(2, 3, 32, 32, generator=g), "ids": torch.randint(0, 64, (2, 7), generator=g),
         "dec": torch.randint(0, 64, (2, 5), generator=g)}
    with torch.no_grad(), vit_sp.strict(), t5_sp.strict():
        want_vit = vit(x["images"])
        want_t5 = t5(input_ids=x["ids"], decoder_input_ids=x["dec"]).logits
    timm_json = export_timm(vit_sp.export_state_dict("strict"), timm_builder("vit_tiny_patch16_224", **VIT_KWARGS),
                            tmp_path / "vit.safetensors")
    export_hf(t5_sp.export_state_dict("strict"), builder_for(t5), tmp_path / "t5")
    save_file(x, str(tmp_path / "inputs.safetensors"))
    paths = dict(site=sysconfig.get_paths()["purelib"], timm_json=str(timm_json),
                 timm_file=str(tmp_path / "vit.safetensors"), inputs=str(tmp_path / "inputs.safetensors"),
                 vit_again=str(tmp_path / "vit2.safetensors"), hf_dir=str(tmp_path / "t5"),
                 hf_again=str(tmp_path / "t5_again"), result=str(tmp_path / "out.safetensors"),
                 threads=torch.get_num_threads())
    done = subprocess.run([sys.executable, "-I", "-S", "-c", textwrap.dedent(CHILD.format(**paths))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = load_file(paths["result"])
    assert torch.equal(got["vit"], want_vit) and torch.equal(got["t5"], want_t5)
    # the N:M zeros survived load -> save -> load
    fc1 = got["vit_fc1"].reshape(128, -1, 8)
    assert ((fc1 != 0).sum(-1) <= 1).all()
    assert torch.equal(got["vit_fc1"], vit_sp.export_state_dict()["blocks.0.mlp.fc1.weight"])
    assert ((got["t5_wi"].reshape(64, -1, 8) != 0).sum(-1) <= 1).all()


def test_importing_pgfsparse_still_imports_only_torch():
    heavy = "('safetensors', 'timm', 'transformers')"
    code = f"import sys, pgfsparse; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
    assert callable(pgfsparse.load_compressed)


# -- pgf-export on a run dir ---------------------------------------------------------------------
def test_pgf_export_on_a_run_dir(tmp_path, capsys):
    pytest.importorskip("hydra")
    from test_cli import TINY_VIT, train

    from pgfsparse.cli.pgf_export import main

    run_dir = tmp_path / "run"
    train(run_dir, "data=digits", "sparsity=1:4", "recipe=ste", "budget.steps=2", *TINY_VIT)
    assert main([str(run_dir), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "check passed" in printed and "theoretical" in printed
    assert main([str(run_dir / "checkpoint.pt"), "--format", "timm", "--check"]) == 0
    spec = json.loads((run_dir / "model.timm.json").read_text())
    assert spec["name"] == "vit_tiny_patch16_224" and spec["kwargs"]["num_classes"] == 10
    assert main([str(run_dir), "--format", "hf"]) == 2  # a timm model has no save_pretrained form
    assert "--format hf needs a Hugging Face model" in capsys.readouterr().err
    (run_dir / "checkpoint.pt").write_bytes(b"broken")
    assert main([str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pgf-export: error:") and "\n" not in err
