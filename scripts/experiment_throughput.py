"""Experiment A cost per sentence: XLA-counted FLOPs, measured time here, and a projection.

For MiniLM (installed) and a random bert-base-sized BERT (12 layers, d 768, 12 heads,
built with transformers + torch, the test extras), at sentence lengths of 16/32/64 tokens:

- FLOPs of everything a record needs (z→z zero + ITB, z→u zero + ITB for every target
  and head, the self-attention probabilities, u→z zero + att_itb_a0; all layers) from
  `compiled.cost_analysis()` of the per-layer functions compiled with one chunk holding
  every integration node (XLA counts a loop body once), times the number of layers;
- the measured wall time per sentence of the experiment's own computation
  (`SentenceComputer`, the compute core; after compilation, best of 3) and the achieved
  GFLOP/s against this machine's measured float32 matmul rate;
- a projection for Penn Treebank dev 0–1699 (1,700 sentences) on an H100 and a TPU v4-8
  from those FLOPs: the FLOP bound at the card's peak and at 25 % of it (an assumed
  fraction, not a measurement).

    python scripts/experiment_throughput.py [--lengths 16,32,64] [--steps 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Peak dense rates (TFLOP/s) from the vendors' data sheets; see docs/experiment-a.md.
PEAKS = {
    "H100 SXM, FP32 (CUDA cores)": 67.0,
    "H100 SXM, TF32 tensor cores (JAX's default f32 matmul precision on GPU)": 495.0,
    "TPU v4-8 (4 chips), bf16 MXU passes at 'highest' f32 precision (÷6)": 4 * 275.0 / 6,
}
SENTENCES = 1700
# Fractions of peak for the projection: the FLOP bound, and a guess for one-sentence-per-device
# programs of this size on an accelerator (not measured: no accelerator was available).
EFFICIENCIES = (1.0, 0.25)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="16,32,64")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--skip-bert-base", action="store_true")
    args = p.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    import jax

    jax.config.update("jax_default_matmul_precision", "float32")
    from bench import BERT_BASE, TOKENIZER_FILES, _best, _flops, machine_info, matmul_rate

    from lig_jax.loading import default_model_folder, load_model

    info = machine_info()
    rate = matmul_rate()
    print(f"machine: {info['cpu']} | {info['cores']} cores | jax {info['jax']} | "
          f"devices {info['jax_devices']}; float32 matmul {rate:.1f} GFLOP/s")
    models = [("all-MiniLM-L6-v2", None)]
    tmp = None
    if not args.skip_bert_base:
        import shutil

        import torch
        from transformers import BertConfig, BertModel

        tmp = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512, **BERT_BASE)
                  ).eval().save_pretrained(tmp.name)
        for name in TOKENIZER_FILES:
            shutil.copy(default_model_folder() / name, Path(tmp.name) / name)
        models.append(("random bert-base", tmp.name))
    for label, folder in models:
        lm = load_model(folder)
        for s in lengths:
            flops = sentence_flops(lm, s, args.steps, _flops)
            seconds = sentence_seconds(lm, s, args.steps, _best)
            gflops = flops / seconds / 1e9
            frac = gflops / rate
            print(f"\n{label}, {s} tokens, {args.steps} steps: {flops / 1e9:.1f} GFLOP per "
                  f"sentence; {seconds:.2f} s per sentence here ({gflops:.1f} GFLOP/s, "
                  f"{frac:.0%} of the matmul rate)")
            for name, peak in PEAKS.items():
                t = [SENTENCES * flops / (peak * 1e12 * e) for e in EFFICIENCIES]
                print(f"  projection, {SENTENCES} sentences of this length on {name} "
                      f"({peak:.0f} TFLOP/s): " + ", ".join(
                          f"{x:.0f} s at {e:.0%} of peak" for x, e in
                          zip(t, EFFICIENCIES, strict=True)))
    if tmp is not None:
        tmp.cleanup()
    return 0


def sentence_flops(lm, length: int, steps: int, flops_of) -> float:
    """XLA FLOPs of one record's computation at `length` tokens (all layers)."""
    import jax
    import jax.numpy as jnp
    from bench import sentence
    from flax import nnx

    from lig_jax.attribution import ratio
    from lig_jax.attribution.run import integrand_for, program
    from lig_jax.quadrature import make_rule

    ids = lm.tokenizer(sentence(lm.tokenizer, length))["input_ids"]
    z = lm.model.hidden_states(jnp.asarray(ids, jnp.int32))[0]
    gd, st = nnx.split(lm.model.layers[0])
    alphas, weights = make_rule("captum_trapezoid", steps).without_zero_node()
    n = int(alphas.shape[0])
    t, h = jnp.arange(length), jnp.arange(lm.config.num_heads)
    total = 0.0
    # every node in one step and every target in one chunk: no loop for XLA to count once
    for quantity, bases in (("z2z", ("zero", "self_input_token")),
                            ("z2u", ("zero", "self_input_token")),
                            ("u2z", ("zero", "att_itb_a0"))):
        for base in bases:
            total += flops_of(program.lower(gd, st, z, t, h, alphas, weights, per_step=n,
                                            integrand=integrand_for(quantity, base)).compile())
    total += flops_of(jax.jit(lambda state, x: ratio.self_attention_probs(
        nnx.merge(gd, state), x)).lower(st, z).compile())
    return total * lm.config.num_layers


def sentence_seconds(lm, length: int, steps: int, best_of) -> float:
    """Wall time of the experiment's computation for one sentence (compiled, best of 3)."""
    from bench import sentence

    from lig_jax.experiment.compute import SentenceComputer, Settings

    ids = lm.tokenizer(sentence(lm.tokenizer, length))["input_ids"]
    computer = SentenceComputer(lm, Settings(steps=steps), None)  # one device
    computer.run(ids)  # compile
    t0 = time.perf_counter()
    computer.run(ids)
    once = time.perf_counter() - t0
    return min(once, best_of(lambda: computer.run(ids), 2))


if __name__ == "__main__":
    raise SystemExit(main())
