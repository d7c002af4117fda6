"""The names of the end-to-end attribution: targets, outputs, methods, baselines (one place)."""

from __future__ import annotations

from ..errors import LIGError, choice_error

DECODER_TARGETS = ("next", "token", "contrast", "continuation")
ENCODER_TARGETS = ("hidden", "hidden_sum", "pooled", "similarity")
TARGET_KINDS = DECODER_TARGETS + ENCODER_TARGETS
TARGET_FORMS = ("next", "token:<id or token>", "contrast:<a>,<b>", "continuation:<text>",
                "hidden:<pos>:<dim>", "hidden_sum:<pos>", "pooled", "similarity:<text>")
DEFAULT_TARGET = {"decoder": "next", "encoder": "pooled"}
OUTPUTS = ("logit", "prob", "logprob")
DEFAULT_OUTPUT = "logit"

GRADIENT_METHODS = ("ig", "grad_x_input", "attnlrp")
# method → the rollout (lig_jax.measures name) it reads at the target; lig_flow composes
# LIG's z→z itself (`measures.rollout.lig_flow_shares`)
FLOW_METHODS = {"lig_flow": None, "attention_rollout": "rollout/attention",
                "alti_rollout": "rollout/alti", "value_zeroing_rollout": "rollout/value_zeroing"}
METHODS = GRADIENT_METHODS + tuple(FLOW_METHODS)
DEFAULT_METHODS = ("ig", "grad_x_input", "attnlrp")
DESCRIPTIONS = {
    "ig": "Integrated Gradients on the word embeddings (Captum's LayerIntegratedGradients "
          "on the input embedding layer), Σ over the embedding width",
    "grad_x_input": "gradient × word embedding, Σ over the embedding width",
    "attnlrp": "AttnLRP (Achtibat et al. 2024): word embedding × the gradient of one "
               "backward pass under LRP's rules (lxt 2.1's choices)",
    "lig_flow": "LIG's per-layer z→z maps as 0.5·|z→z| shares + 0.5·I, composed through "
                "the blocks, read at the target's positions",
    "attention_rollout": "attention rollout (0.5·A + 0.5·I) read at the target's positions",
    "alti_rollout": "ALTI rollout read at the target's positions",
    "value_zeroing_rollout": "value-zeroing rollout read at the target's positions",
}
IG_BASELINES = ("zero", "pad")
DEFAULT_IG_RULE, DEFAULT_IG_STEPS = "gauss_legendre", 50  # Captum's defaults


def method_list(methods: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """"all", a comma-separated string or a list → method names in `METHODS` order."""
    if methods is None:
        return list(DEFAULT_METHODS)
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    items = [m.strip() for m in items if isinstance(m, str) and m.strip()]
    if not items:
        raise LIGError(f"no method given. Allowed: all, {', '.join(METHODS)}")
    if "all" in items:
        return list(METHODS)
    for m in items:
        if m not in METHODS:
            raise choice_error("method", m, ("all", *METHODS))
    return [m for m in METHODS if m in items]
