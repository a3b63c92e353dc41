"""Held-out shape/colour combinations of the synthetic set."""

from ga_jax.data.synthetic import COLOURS, SINGLE_SHAPES, make_object
from ga_jax.data.synthetic.splits import HELDOUT_COMBOS, caption_combos, has_heldout_combo


def test_heldout_combos_cover_every_shape_with_distinct_colours():
    assert len(HELDOUT_COMBOS) >= 10
    assert {s for _, s in HELDOUT_COMBOS} == set(SINGLE_SHAPES)
    colours = [c for c, _ in HELDOUT_COMBOS]
    assert len(set(colours)) == len(colours) and set(colours) <= set(COLOURS)


def test_caption_combos_reads_single_and_two_part_captions():
    assert caption_combos("a medium pink cylinder") == {("pink", "cylinder")}
    assert caption_combos("an orange sphere on a grey cube") == {
        ("orange", "sphere"),
        ("grey", "cube"),
    }
    assert has_heldout_combo("a small red torus")
    assert has_heldout_combo("a yellow cone on a blue cylinder")  # the bottom part
    assert not has_heldout_combo("a large red cube")


def test_every_generated_caption_names_its_parts():
    for i in range(200):
        obj = make_object(0, i)
        want = {(p.colour, obj.caption.split()[-1]) for p in obj.parts[:1]}
        if obj.class_name != "composition":
            assert caption_combos(obj.caption) == want
        else:
            assert len(caption_combos(obj.caption)) == 2
