"""Training losses. LPIPS-VGG lives in ga_jax.losses.lpips."""
