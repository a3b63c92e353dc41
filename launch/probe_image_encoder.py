"""Linear probes of an image encoder's pooled token for the synthetic captions' shape and
colour words (ga_jax/evaluation/linear_probe.py): does the encoder see what the image flow
stages must generate?

    python -m launch.probe_image_encoder --model=outputs/image_text/encoder.safetensors \
        --train=$GA_JAX_DATA_ROOT/synthetic_latents/train_more \
        --heldout=$GA_JAX_DATA_ROOT/synthetic_latents/heldout

--model: an image-text run's export (its 'encoder') or an image flow stage's model file (its
'condition'). Single-part objects only; training views --train_views of each training
object, view 0 of each held-out one (what launch.eval_generation --task=image conditions
on). Prints one JSON line per word: train / held-out accuracy and the class count.
"""

import json

import jax
import numpy as np
from absl import app, flags

from ga_jax.data.latents import LatentDataset
from ga_jax.evaluation.generation import expected_words
from ga_jax.evaluation.linear_probe import linear_probe
from ga_jax.models.conditioning.build import build_conditioner
from ga_jax.weights.model_files import read_model_file

_MODEL = flags.DEFINE_string("model", None, "a model file with an image encoder")
_TRAIN = flags.DEFINE_string("train", None, "a latent dataset with conditioning views")
_HELDOUT = flags.DEFINE_string("heldout", None, "a latent dataset with conditioning views")
_TRAIN_VIEWS = flags.DEFINE_list("train_views", ["0", "3"], "views of each training object")
flags.mark_flags_as_required(["model", "train", "heldout"])


def encoder_of(path: str):
    """(conditioner, its parameters) of a model file holding an image encoder."""
    config, params, _ = read_model_file(path)
    weights = params.get("encoder", params.get("condition"))
    if weights is None or config.condition.get("name") != "image_encoder":
        raise ValueError(f"{path}: no image encoder (expected an image-text or image stage file)")
    return build_conditioner(config.condition), weights


def single_part_views(root: str, views: list[int]):
    """(uint8 images [N, S, S, 3], shape words, colour words) of the single-part objects."""
    dataset = LatentDataset(root)
    images, shapes, colours = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        words = expected_words(str(item["caption"]))
        if "expected_shape" not in words:
            continue
        if "cond_images" not in item:
            raise ValueError(f"{root}: object {item['instance_id']!r} has no conditioning views")
        for v in views:
            images.append(item["cond_images"][v])
            shapes.append(words["expected_shape"])
            colours.append(words["expected_colour"])
    return np.stack(images), shapes, colours


def main(argv):
    del argv
    conditioner, weights = encoder_of(_MODEL.value)
    pooled = jax.jit(lambda x: conditioner.apply(weights, {"images": x})[1])

    def features(images):
        chunks = [images[s : s + 64] for s in range(0, len(images), 64)]
        prepared = [conditioner.prepare(images=c)["images"] for c in chunks]
        return np.concatenate([np.asarray(pooled(p)) for p in prepared])

    views = [int(v) for v in _TRAIN_VIEWS.value]
    train_images, train_shapes, train_colours = single_part_views(_TRAIN.value, views)
    held_images, held_shapes, held_colours = single_part_views(_HELDOUT.value, [0])
    train_x, held_x = features(train_images), features(held_images)
    for word, train_y, held_y in (
        ("shape", train_shapes, held_shapes),
        ("colour", train_colours, held_colours),
    ):
        result = linear_probe(train_x, train_y, held_x, held_y)
        print(
            json.dumps(
                {
                    "model": _MODEL.value,
                    "word": word,
                    "train_images": len(train_x),
                    "heldout_images": len(held_x),
                    **result,
                }
            )
        )


if __name__ == "__main__":
    app.run(main)
