"""The point DiT against a dense re-implementation written from the reference's maths, its
symmetries, its input checks, and its parameter counts against the reference classes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs.flow.model import dit_model
from ga_jax.models.flow.build import build_dit, count_dit_params
from ga_jax.models.flow.dit import PointDiT

B, N, L = 2, 6, 5


def tiny(condition="image", stage=1, **changes):
    cfg = dit_model(stage, condition, "tiny")
    cfg.update(changes)
    return build_dit(cfg)


def inputs(model, seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    return (
        jax.random.normal(k[0], (B, N, model.in_dim)),
        jax.random.uniform(k[1], (B,)),
        jax.random.normal(k[2], (B, L, model.context_dim)),
        jax.random.normal(k[3], (B, model.pooled_dim)),
        jax.random.uniform(k[4], (B, N, 3), minval=-0.45, maxval=0.45)
        if model.xyz_condition
        else None,
    )


def random_params(model, seed=1):
    """Initialised, then every leaf perturbed, so that zero-initialised layers (adaLN, the
    pooled embedder, the output) carry signal."""
    params = nn.unbox(model.init(jax.random.key(seed), *inputs(model))["params"])
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, leaves)


# -- a dense re-implementation (float64 numpy, one sample at a time) ------------------------


def _linear(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + (
        np.asarray(p["bias"], np.float64) if "bias" in p else 0.0
    )


def _rms(scale, x, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * np.asarray(scale, np.float64)


def _ln(x, eps, scale=None, bias=None):
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    if scale is not None:
        y = y * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)
    return y


def _gelu(x, tanh):
    if tanh:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _silu(x):
    return x / (1 + np.exp(-x))


def _heads(p, x):  # [T, E] @ [E, H, D] -> [T, H, D]
    y = np.einsum("te,ehd->thd", x, np.asarray(p["kernel"], np.float64))
    return y + (np.asarray(p["bias"], np.float64) if "bias" in p else 0.0)


def _attention(p, x, context):
    q = _rms(p["query_norm"]["scale"], _heads(p["query"], x))
    k = _rms(p["key_norm"]["scale"], _heads(p["key"], context))
    v = _heads(p["value"], context)
    logits = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", w, v)
    return np.einsum("qhd,hde->qe", out, np.asarray(p["out"]["kernel"], np.float64)) + np.asarray(
        p["out"]["bias"], np.float64
    )


def dense_forward(model: PointDiT, params, x, t, context, pooled, xyz):
    """The DiT of DESIGN.md section 6 / the reference's forward, sample by sample."""
    outs = []
    for b in range(x.shape[0]):
        half = 128
        freqs = np.exp(-np.log(1e4) * np.arange(half) / half)
        args = float(t[b]) * freqs
        g = np.concatenate([np.cos(args), np.sin(args)])
        g = _linear(params["t_embedder_mlp_2"], _silu(_linear(params["t_embedder_mlp_0"], g)))
        pn = params["pooled_embedder_norm"]
        g = g + _linear(
            params["pooled_embedder_linear"],
            _ln(np.asarray(pooled[b], np.float64), 1e-5, pn["scale"], pn["bias"]),
        )
        mod = _linear(params["adaLN_modulation"], _silu(g)).reshape(6, -1)
        xe = params["x_embedder"]
        h = _linear(xe["fc2"], _gelu(_linear(xe["fc1"], np.asarray(x[b], np.float64)), True))
        if model.xyz_condition:
            p = np.asarray(xyz[b], np.float64) / model.xyz_scale
            pe = [p] + [
                f(p * 2.0**k) for k in range(model.pe_frequencies) for f in (np.sin, np.cos)
            ]
            h = h + _linear(params["xyz_pos_embed"], np.concatenate(pe, -1))
        c = np.asarray(context[b], np.float64)
        for i in range(model.depth):
            bp = params["blocks"][f"layers_{i}"]
            sa, sc, ga, sm, scm, gm = np.asarray(bp["scale_shift_table"], np.float64) + mod

            def cross(h, bp=bp, c=c):
                ctx = _rms(bp["context_norm"]["scale"], c) if model.condition == "text" else c
                return h + _attention(bp["cross_attn"], _rms(bp["prenorm_ca"]["scale"], h), ctx)

            def self_attn(h, bp=bp, sa=sa, sc=sc, ga=ga):
                m = _rms(bp["norm1"]["scale"], h) * (1 + sc) + sa
                return h + ga * _attention(bp["attn"], m, m)

            h = self_attn(cross(h)) if model.condition == "image" else cross(self_attn(h))
            m = _rms(bp["norm2"]["scale"], h) * (1 + scm) + sm
            mp = bp["mlp"]
            h = h + gm * _linear(mp["fc2"], _gelu(_linear(mp["fc1"], m), False))
        if model.condition == "image":
            shift, scale = np.asarray(params["final_layer_scale_shift_table"], np.float64) + g
        else:
            shift, scale = _linear(params["final_layer_adaLN_modulation"], _silu(g)).reshape(2, -1)
        h = _ln(h, 1e-6) * (1 + scale) + shift
        outs.append(_linear(params["final_layer_linear"], h))
    return np.stack(outs)


@pytest.mark.parametrize("condition,stage", [("image", 1), ("text", 1), ("image", 2), ("text", 2)])
def test_matches_the_dense_reimplementation(condition, stage):
    model = tiny(condition, stage, scan_layers=False)
    params = random_params(model)
    args = inputs(model)
    got = model.apply({"params": params}, *args)
    assert got.shape == (B, N, model.out_dim) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, dense_forward(model, params, *args), rtol=1e-4, atol=1e-5)


def test_block_order_matters():
    """The same parameters under the other block order give another output (so the order
    checked above is not vacuous)."""
    image = tiny("image", scan_layers=False)
    params = random_params(image)
    args = inputs(image)
    text_order = image.clone(condition="text")
    # the text order has context_norm and a DiT final layer: give it those parameters
    p = jax.tree.map(lambda x: x, params)
    for i in range(image.depth):
        p["blocks"][f"layers_{i}"]["context_norm"] = {"scale": jnp.ones(image.context_dim)}
    p["final_layer_adaLN_modulation"] = {
        "kernel": jnp.zeros((32, 64)),
        "bias": jnp.concatenate(
            [params["final_layer_scale_shift_table"][0], params["final_layer_scale_shift_table"][1]]
        ),
    }
    a = image.apply({"params": params}, *args)
    b = text_order.apply({"params": p}, *args)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_zero_output_at_init_and_permutation_equivariance():
    model = tiny("text", 2)
    args = inputs(model)
    params = nn.unbox(model.init(jax.random.key(0), *args)["params"])
    np.testing.assert_array_equal(model.apply({"params": params}, *args), 0.0)  # zero-init out
    params = random_params(model)
    x, t, c, p, xyz = args
    perm = np.random.default_rng(0).permutation(N)
    out = model.apply({"params": params}, x, t, c, p, xyz)
    permuted = model.apply({"params": params}, x[:, perm], t, c, p, xyz[:, perm])
    np.testing.assert_allclose(permuted, out[:, perm], rtol=1e-5, atol=1e-6)
    moved = model.apply({"params": params}, x, t, c, p, xyz + 0.05)
    assert float(jnp.max(jnp.abs(moved - out))) > 1e-4  # stage 2 reads the xyz


def test_scan_and_unrolled_blocks_agree():
    scanned, unrolled = tiny("image", 2), tiny("image", 2, scan_layers=False)
    params = random_params(unrolled)
    stacked = dict(params)
    blocks = [params["blocks"][f"layers_{i}"] for i in range(unrolled.depth)]
    stacked["blocks"] = {"layers": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}
    args = inputs(scanned)
    np.testing.assert_allclose(
        scanned.apply({"params": stacked}, *args),
        unrolled.apply({"params": params}, *args),
        rtol=1e-5,  # float32 summation order differs (measured 1.7e-6 on outputs of ~7)
        atol=1e-5,
    )


def test_bf16_compute_runs_close_to_float32():
    model = tiny("text", 1)
    params = random_params(model)
    args = inputs(model)
    full = model.apply({"params": params}, *args)
    half = tiny("text", 1, dtype="bfloat16").apply({"params": params}, *args)
    assert half.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(half - full))) < 0.1 * float(jnp.max(jnp.abs(full)))


def test_bad_inputs_are_named():
    model = tiny("image", 2)
    x, t, c, p, xyz = inputs(model)
    params = random_params(model)
    with pytest.raises(ValueError, match="xyz: required"):
        model.apply({"params": params}, x, t, c, p, None)
    with pytest.raises(ValueError, match=r"context: expected shape \[B, L, context_dim\]"):
        model.apply({"params": params}, x, t, c[..., :3], p, xyz)
    with pytest.raises(ValueError, match=r"xyz: expected shape \[B, N, 3\]"):
        model.apply({"params": params}, x, t, c, p, xyz[:, :3])
    cfg = dit_model(1, "image", "tiny")
    cfg.num_heads = 5
    with pytest.raises(ValueError, match="width: 32 must be divisible by num_heads 5"):
        build_dit(cfg)
    del cfg.condition
    with pytest.raises(ValueError, match=r"missing field\(s\) \['condition'\]"):
        build_dit(cfg)


# -- parameter counts of the reference classes --------------------------------------------


def reference_count(stage: int, condition: str) -> tuple[int, int]:
    """(every parameter the reference class builds, the unused ones among them), counted from
    NIRVANALAN/GaussianAnything 3cf3fde at L size: hidden D = 1024, 24 blocks, 16 heads of 64,
    MLP ratio 4; in/out 3 (stage 1) or 10 (stage 2); image: DiT-PixArt-PCD-CLAY-L (-stage2-L)
    = DiT_I23D_PCD_PixelArt_noclip(_clay_stage2) with ImageCondDiTBlockPixelArtRMSNormClayLRM,
    context_dim 1024 (DINOv2-L); text: DiT-PCD-L (-stage2-xyz2feat) = DiT_PCD_PixelArt(_tofeat)
    with PixelArtTextCondDiTBlock, context_dim 768 (CLIP-L), pooled 768."""
    d, depth, mlp, c_in = 1024, 24, 4096, 3 if stage == 1 else 10
    ctx = 1024 if condition == "image" else 768

    def linear(i, o, bias=True):
        return i * o + (o if bias else 0)

    def timm_mlp(i, h, o):  # timm Mlp: fc1, fc2 with biases
        return linear(i, h) + linear(h, o)

    head_norms = 2 * 64  # q_norm, k_norm: RMSNorm(dim_head) with weights
    self_attn = linear(d, 3 * d) + linear(d, d) + head_norms  # MemEffAttention qkv bias, proj
    cross_attn = (
        linear(d, d, False) + 2 * linear(ctx, d, False) + head_norms + linear(d, d)
    )  # to_q, to_k, to_v, norms, to_out
    fused_mlp = linear(d, mlp) + linear(mlp, d)  # xformers FusedMLP: weights + FusedDropoutBias
    table = 6 * d  # scale_shift_table
    norms = 2 * d  # norm1, norm2 (RMSNorm weights)
    if condition == "image":
        # ClayLRM: cross_attn_dino + prenorm_ca_dino; its parent ImageCondDiTBlock still
        # builds attention_y_norm = RMSNorm(1024), unused (the CA reads DINO tokens as is).
        block = norms + self_attn + fused_mlp + table + cross_attn + d + 1024
        unused_block = 1024
    else:
        # cross_attn + attention_y_norm(768) + prenorm_ca_text
        block = norms + self_attn + fused_mlp + table + cross_attn + ctx + d
        unused_block = 0
    top = timm_mlp(c_in, d, d)  # x_embedder
    top += linear(256, d) + linear(d, d)  # t_embedder
    top += linear(d, 6 * d)  # the shared adaLN_modulation
    pooled = 1024 if condition == "image" else 768
    top += 2 * pooled + linear(pooled, d)  # pooled_vec_embedder / cap_embedder: LN + Linear
    if stage == 2:
        top += linear(63, d)  # xyz_pos_embed.xyz_projection (NeRF PE, 10 frequencies)
    if condition == "image":
        top += linear(d, c_in) + 2 * d  # T2IFinalLayer: linear + scale_shift_table
        # DiT's clip_text_proj (CaptionEmbedder(1024)) and DiT_I23D's clip_spatial_proj are
        # built and never called by the PCD noclip forward.
        unused_top = 2 * timm_mlp(1024, d, d)
        top += unused_top
    else:
        top += linear(d, c_in) + linear(d, 2 * d)  # FinalLayer: linear + adaLN_modulation
        unused_top = 0
    return top + depth * block, unused_top + depth * unused_block


REFERENCE = {  # (all parameters, unused), pinned
    (1, "image"): (417_070_083, 4_222_976),
    (2, "image"): (417_149_962, 4_222_976),
    (1, "text"): (402_117_123, 0),
    (2, "text"): (402_197_002, 0),
}


@pytest.mark.parametrize("stage,condition", list(REFERENCE))
def test_paper_counts_equal_the_reference_classes(stage, condition):
    total, unused = reference_count(stage, condition)
    assert (total, unused) == REFERENCE[(stage, condition)]
    ours = count_dit_params(build_dit(dit_model(stage, condition, "paper")))  # eval_shape only
    assert ours == total - unused


def test_analytic_train_flops_match_xla_on_unrolled_blocks():
    """ga_jax/models/flow/flops.py against XLA's count of the compiled forward + backward of
    an unrolled DiT (XLA also counts norms, softmax and activations: a few percent more)."""
    from ga_jax.models.flow.flops import dit_train_flops  # noqa: PLC0415

    model = tiny("image", 1, scan_layers=False, width=128, mlp_dim=512, num_heads=4)
    points, context, batch = 64, 48, 2
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (batch, points, 3))
    t = jax.random.uniform(k[1], (batch,))
    ctx = jax.random.normal(k[2], (batch, context, model.context_dim))
    pooled = jax.random.normal(k[3], (batch, model.pooled_dim))
    params = nn.unbox(model.init(jax.random.key(1), x, t, ctx, pooled)["params"])
    loss = lambda p: jnp.sum(model.apply({"params": p}, x, t, ctx, pooled) ** 2)
    cost = jax.jit(jax.grad(loss)).lower(params).compile().cost_analysis()
    xla = float((cost[0] if isinstance(cost, list | tuple) else cost)["flops"])
    analytic = dit_train_flops(
        params,
        depth=model.depth,
        width=model.width,
        batch=batch,
        num_points=points,
        context=context,
    )
    assert 0.9 * xla <= analytic <= 1.02 * xla, (analytic, xla)
