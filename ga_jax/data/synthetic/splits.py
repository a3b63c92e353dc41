"""The held-out shape/colour combinations of the synthetic set (issue 17).

Flow models are trained on latents of objects whose captions never name one of
HELDOUT_COMBOS (a colour word directly followed by a shape word, in a single-part caption
"a medium pink cylinder" or either part of a composition "a pink cylinder on a grey cube"),
so that text-to-3D on "a medium pink cylinder" tests combining a colour and a shape never seen
together. The VAE may see them (it never reads captions). Ten combinations: every shape at
least once, ten different colours, so that each word is still seen in training with other
partners.
"""

from __future__ import annotations

from ga_jax.data.synthetic.objects import COLOURS, SINGLE_SHAPES

__all__ = ["HELDOUT_COMBOS", "caption_combos", "has_heldout_combo"]

HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "torus"),
    ("green", "cone"),
    ("blue", "cylinder"),
    ("yellow", "box"),
    ("orange", "sphere"),
    ("purple", "cube"),
    ("pink", "cylinder"),
    ("cyan", "torus"),
    ("brown", "cone"),
    ("grey", "sphere"),
)


def caption_combos(caption: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a caption names: each colour word directly followed by a
    shape word."""
    words = caption.lower().split()
    return {
        (a, b)
        for a, b in zip(words, words[1:], strict=False)
        if a in COLOURS and b in SINGLE_SHAPES
    }


def has_heldout_combo(caption: str) -> bool:
    """True when the caption names one of HELDOUT_COMBOS."""
    return bool(caption_combos(caption) & set(HELDOUT_COMBOS))
