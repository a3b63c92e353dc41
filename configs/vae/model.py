"""The VAE model section (`config.model`) shared by the configs/vae/*.py files.

`paper_model()` is the base (DESIGN.md sections 2-3, ~14.1M encoder + ~156.6M decoder
parameters); `small_model()` and `tiny_model()` override only what differs. Fields:

    dtype, param_dtype     compute / storage dtype names ('bfloat16', 'float32'); norms,
                           softmax, the posterior and the surfel activations stay float32
    scan_layers            nn.scan over identical blocks (params get a leading 'layers' axis)
    remat_policy           'none' | 'full' | 'dots_saveable' | 'dots_with_no_batch_dims_saveable'
                           | 'nothing_saveable' | 'everything_saveable'
    attention_impl         'xla' | 'chunked' (query chunks of attention_chunk_size, O(chunk*L)
                           memory) | 'cudnn' (GPU flash attention, bf16 only)
                           (these six fields form the one ModelOptions that build_vae hands
                           to every module: ga_jax/models/common/options.py)
    num_points             P, the FPS points = latent tokens (the decoder learns one token
                           per index, so P is fixed by the parameters)
    latent_dim             C of h [B, P, C]
    logvar_limit           logvar <- limit * tanh(logvar / limit)
    logvar_offset          added to the raw logvar before the clamp (0 = the paper). At init the
                           posterior std is ~1 while the means differ between objects by ~0.1,
                           so a short run's decoder sees mostly noise; the small config starts
                           with a small std instead (see configs/vae/small.py)
    sample_posterior       True (the paper): training decodes a posterior sample; False: the
                           posterior mean (an autoencoder, for short runs with KL weight 0)
    encoder.*              ga_jax.models.vae.encoder.Encoder fields
    decoder.*              ga_jax.models.vae.decoder.Decoder fields
    surfels.*              ga_jax.models.vae.surfel_head.SurfelHead fields; levels =
                           ((factor, depth), ...) of the upsamplers

Logical axis names map to mesh axes through `ga_jax.models.LOGICAL_AXIS_RULES` unless the
trainer's `config.mesh.rules` says otherwise.
"""

import ml_collections


def paper_model() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.dtype = "bfloat16"
    m.param_dtype = "float32"
    m.scan_layers = True
    m.remat_policy = "none"
    # The encoder's joint multi-view attention covers 8 * 64 * 64 = 32,768 tokens: plain
    # 'xla' attention would materialise ~34 GB of logits per object. 'cudnn' is faster on GPUs.
    m.attention_impl = "chunked"
    m.attention_chunk_size = 2048
    m.num_points = 768
    m.latent_dim = 10
    m.logvar_limit = 20.0
    m.logvar_offset = 0.0
    m.sample_posterior = True

    m.encoder = ml_collections.ConfigDict()
    e = m.encoder
    e.in_channels = 15  # RGB 3, normal 3, Pluecker 6, xyz 3
    e.xyz_channels = (12, 15)  # [start, stop) of the world xyz map
    e.base_channels = 64
    e.ch_mult = (1, 2, 4, 4)  # channels (64, 128, 256, 256), downsampling f = 8
    e.num_res_blocks = 1
    e.norm_groups = 32
    e.mv_heads = 8
    e.mv_head_dim = 64  # multi-view transformer width 8 * 64 = 512
    e.mv_ffn_dim = 2048
    e.pe_num_freqs = 10  # NeRF PE of xyz: 3 * (1 + 2 * 10) = 63 dims
    e.cross_heads = 8
    e.cross_head_dim = 64
    e.cross_input_norm = True
    e.foreground_tokens = False  # ga_jax.models.vae.encoder.Encoder: our addition, off here
    e.pixel_aligned_rgb = False  # the same: our addition, off here
    e.depth = 3
    e.num_heads = 8
    e.mlp_dim = 1024
    e.head_hidden = 256
    e.quant_hidden = 20

    m.decoder = ml_collections.ConfigDict()
    d = m.decoder
    d.width = 768
    d.depth = 12
    d.num_heads = 12
    d.mlp_dim = 3072
    d.cond_hidden = 10

    m.surfels = ml_collections.ConfigDict()
    s = m.surfels
    s.levels = ((8, 2), (4, 1), (3, 1))  # 768 -> 6,144 -> 24,576 -> 73,728 surfels
    s.num_heads = 12
    s.mlp_dim = 3072
    s.color_dim = 3
    s.base_offset_scale = 0.1 * 0.225
    s.upsample_offset_scale = 0.225
    s.scale_multiplier = 0.006492
    s.scale_bias_init = -2.5
    s.rotation_bias_init = 1.0
    s.head_init_std = 0.0  # 0 = zero-initialised heads (the paper); see configs/vae/small.py
    s.child_spread = ()  # () = children start on their parent (the paper); see SurfelHead
    s.color_gain = ()  # () = 1 on every level (the paper); see SurfelHead (colour learning speed)
    return m


def small_model() -> ml_collections.ConfigDict:
    """Meant to train on a 2-core CPU in under an hour: 4 views at 64 px, 256 points,
    32 -> 128 channel trunk (f = 8: 8 x 8 tokens per view), decoder width 192, two
    upsampler levels (256 -> 1,024 -> 4,096 surfels)."""
    m = paper_model()
    m.dtype = "float32"
    m.attention_impl = "xla"
    m.num_points = 256
    e = m.encoder
    e.base_channels = 32
    e.norm_groups = 16
    e.mv_heads = 4
    e.mv_head_dim = 32
    e.mv_ffn_dim = 512
    e.cross_heads = 4
    e.cross_head_dim = 32
    e.depth = 2
    e.num_heads = 4
    e.mlp_dim = 512
    e.head_hidden = 128
    d = m.decoder
    d.width = 192
    d.depth = 6
    d.num_heads = 6
    d.mlp_dim = 768
    s = m.surfels
    s.levels = ((4, 1), (4, 1))
    s.num_heads = 6
    s.mlp_dim = 768
    return m


def tiny_model() -> ml_collections.ConfigDict:
    """Initialises and applies in seconds on a CPU (tests): 2 views at 32 px, 128 points,
    16 -> 64 channel trunk (f = 4), width 64, one upsampler level (128 -> 512 surfels)."""
    m = small_model()
    m.scan_layers = False
    m.num_points = 128
    e = m.encoder
    e.base_channels = 16
    e.ch_mult = (1, 2, 4)
    e.norm_groups = 8
    e.mv_heads = 2
    e.mv_ffn_dim = 128
    e.cross_heads = 2
    e.depth = 1
    e.num_heads = 2
    e.mlp_dim = 128
    e.head_hidden = 64
    d = m.decoder
    d.width = 64
    d.depth = 2
    d.num_heads = 2
    d.mlp_dim = 128
    s = m.surfels
    s.levels = ((4, 1),)
    s.num_heads = 2
    s.mlp_dim = 128
    return m
