"""The stage DiT section (`config.model`) of the flow configs (ga_jax/models/flow/dit.py).

`dit_model(stage, condition, size)`:
    stage       1: in/out 3 (the latent's xyz); 2: in/out latent_dim with xyz_condition
    condition   'image' (CA -> SA -> FFN; context = DINOv2 ViT-L/14 patch tokens at paper
                size) | 'text' (SA -> CA -> FFN; CLIP ViT-L/14 text tokens)
    size        'paper' (the reference's DiT-PixArt-PCD-CLAY-L / -stage2-L and DiT-PCD-L /
                -stage2-xyz2feat: width 1024, 24 blocks, 16 heads, MLP 4096), 'small'
                (CPU-trainable: width 256, 8 blocks; the offline conditioners' widths) or
                'tiny' (tests: width 32, 2 blocks)
Fields: in_dim, out_dim, width, depth, num_heads, mlp_dim, condition, context_dim (condition
token width), pooled_dim (pooled condition width), xyz_condition, xyz_scale (the NeRF
encoding's input scale: the object box 0.45), pe_frequencies, and the ModelOptions fields
(dtype, param_dtype, scan_layers, remat_policy, attention_impl, attention_chunk_size; see
configs/vae/model.py).
"""

import ml_collections

LATENT_DIM = 10
# (context_dim, pooled_dim) of each size's conditioner: DINOv2-L (patch tokens, CLS) and
# CLIP-L text (tokens, projected pooled) at paper size; the small image encoder and MiniLM
# (384) for small; anything for tiny (the tests' null conditioner).
CONDITION_DIMS = {
    ("paper", "image"): (1024, 1024),
    ("paper", "text"): (768, 768),
    ("small", "image"): (256, 256),
    ("small", "text"): (384, 384),
    ("tiny", "image"): (32, 32),
    ("tiny", "text"): (32, 32),
}
SIZES = {
    "paper": dict(width=1024, depth=24, num_heads=16, mlp_dim=4096),
    "small": dict(width=256, depth=8, num_heads=4, mlp_dim=1024),
    "tiny": dict(width=32, depth=2, num_heads=4, mlp_dim=64),
}


def dit_model(stage: int, condition: str, size: str) -> ml_collections.ConfigDict:
    if stage not in (1, 2):
        raise ValueError(f"stage: expected 1 or 2, got {stage!r}")
    if (size, condition) not in CONDITION_DIMS:
        raise ValueError(
            f"(size, condition): expected one of {sorted(CONDITION_DIMS)}, got {(size, condition)}"
        )
    m = ml_collections.ConfigDict()
    m.in_dim = m.out_dim = 3 if stage == 1 else LATENT_DIM
    m.update(SIZES[size])
    m.condition = condition
    m.context_dim, m.pooled_dim = CONDITION_DIMS[(size, condition)]
    m.xyz_condition = stage == 2
    m.xyz_scale = 0.45
    m.pe_frequencies = 10
    m.dtype = "bfloat16" if size == "paper" else "float32"
    m.param_dtype = "float32"
    m.scan_layers = True
    m.remat_policy = "none"
    m.attention_impl = "xla"
    m.attention_chunk_size = 1024
    return m
