"""The optional adversarial term of the VAE objective: a PatchGAN discriminator with hinge
losses (DESIGN.md section 5: 64 channels, 3 layers, hinge x0.025, AdamW lr 5e-5,
betas (0, 0.999); the generator term weighs 6.25e-4).

The discriminator is pix2pix's N-layer PatchGAN as used by taming-transformers / LDM: 4x4
convolutions, stride 2 for the first `num_layers` and stride 1 for the last two, LeakyReLU
0.2, channels base * min(2^i, 8). It scores overlapping patches (70x70 px receptive field at
3 layers), so its logits are a map, not a scalar.

Where we differ: the reference normalises with BatchNorm, whose running statistics would make
the discriminator stateful (a mutable collection threaded through the step and checkpoints);
we use GroupNorm, which has no state and the same role. Images are [N, H, W, 3] in [0, 1]
(mapped to [-1, 1] inside).

Config (`config.loss`): use_adversarial (switch), adversarial (generator weight),
adversarial_start_step (both players start then); (`config.discriminator`): base_channels,
num_layers, norm_groups, loss_weight (the hinge's factor), lr, b1, b2, weight_decay.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

__all__ = [
    "PatchDiscriminator",
    "build_discriminator",
    "default_discriminator_config",
    "discriminator_hinge_loss",
    "generator_hinge_loss",
    "make_discriminator_optimizer",
]


def default_discriminator_config() -> ml_collections.ConfigDict:
    """DESIGN.md section 5's discriminator and its optimiser."""
    return ml_collections.ConfigDict(
        dict(
            base_channels=64,
            num_layers=3,
            norm_groups=32,
            loss_weight=0.025,
            lr=5e-5,
            b1=0.0,
            b2=0.999,
            weight_decay=0.01,
        )
    )


class PatchDiscriminator(nn.Module):
    """images [N, H, W, 3] in [0, 1] -> patch logits [N, h, w, 1] (float32)."""

    base_channels: int = 64
    num_layers: int = 3
    norm_groups: int = 32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected [N, H, W, 3], got {images.shape}")
        conv = lambda ch, stride, name, bias=True: nn.Conv(
            ch,
            (4, 4),
            strides=(stride, stride),
            padding=((1, 1), (1, 1)),
            use_bias=bias,
            name=name,
        )
        x = 2.0 * images.astype(jnp.float32) - 1.0
        x = nn.leaky_relu(conv(self.base_channels, 2, "conv_in")(x), 0.2)
        for i in range(1, self.num_layers + 1):
            channels = self.base_channels * min(2**i, 8)
            stride = 2 if i < self.num_layers else 1
            x = conv(channels, stride, f"conv_{i}", bias=False)(x)
            x = nn.GroupNorm(num_groups=min(self.norm_groups, channels), name=f"norm_{i}")(x)
            x = nn.leaky_relu(x, 0.2)
        return conv(1, 1, "conv_out")(x)


def build_discriminator(cfg) -> PatchDiscriminator:
    """The discriminator from `config.discriminator`."""
    if cfg.num_layers < 1 or cfg.base_channels < 1:
        raise ValueError(
            f"config.discriminator: num_layers and base_channels must be >= 1, got "
            f"{cfg.num_layers} and {cfg.base_channels}"
        )
    return PatchDiscriminator(cfg.base_channels, cfg.num_layers, cfg.norm_groups)


def make_discriminator_optimizer(cfg) -> optax.GradientTransformation:
    return optax.adamw(cfg.lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)


def discriminator_hinge_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """0.5 * (mean relu(1 - D(real)) + mean relu(1 + D(fake)))."""
    return 0.5 * (
        jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    )


def generator_hinge_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean D(fake): the generator raises the discriminator's score of its renders."""
    return -jnp.mean(fake_logits)
