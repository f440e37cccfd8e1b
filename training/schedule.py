"""The schedule ``semedge train`` uses when no recipe is given: scaled to the data.

The built-in recipe's fixed 8 epochs of one pass each trained a few hundred images for
seconds; a recipe tuned for the synthetic build (2.6 M stage-1 samples) would take hours
on them. Without ``--recipe`` (and without ``--epochs`` / ``--samples-per-epoch``) each
model instead trains for a number of samples proportional to its training images, within
bounds, in :data:`EPOCHS` epochs, and stops early when its validation score, averaged
over the last three epochs, has not improved for :data:`PATIENCE` epochs (keeping the
best epoch's weights):

=============  ===================  ==========================
model          samples per image    total, at least – at most
=============  ===================  ==========================
stage 1        150                  60 k – 400 k
stage 2        25                   15 k – 80 k
monolithic     25                   15 k – 80 k
=============  ===================  ==========================

When the training images include at least :data:`OTHER_OUTPUT_MIN_IMAGES` of
``other_defect`` (real defects outside the six classes), stage 2 also learns them as a
seventh output that the runtime answers ``unknown`` (``other_output``). On the real dev
crops, fine-tuned on four grouped folds, that output sent 54 % of the held-out
``other_defect`` crops to ``unknown`` against 13 % for the top-probability threshold
alone (docs/real-sem.md).

On this project's 2-core reference machine that keeps ~2,000 images within 30 minutes:
stage 1 trains in its own thread beside stage 2 (``concurrent_stage1``), at roughly
500 tiles/s, stages 2 and the monolithic model at roughly 75 (whole tiles: a fab's
images carry no defect masks, so there is no crop training). The default stage-1
target recall for such data is :data:`USER_TARGET_RECALL`: on a validation split of a
few hundred images, 99.5 % cannot be shown (with 100 defects and none missed, the 95 %
lower confidence bound of recall is 97 %); ``--target-recall`` sets another.
"""

from __future__ import annotations

from dataclasses import replace

from training.recipe import ModelRecipe, TrainRecipe

__all__ = ["EPOCHS", "OTHER_OUTPUT_MIN_IMAGES", "PATIENCE", "SAMPLES_PER_IMAGE",
           "USER_TARGET_RECALL", "scaled_recipe"]

EPOCHS = 20
"""Epochs of a data-scaled schedule (each a twentieth of the samples)."""

PATIENCE = 8
"""Epochs without a better (3-epoch mean) validation score before a data-scaled run stops.
On ELPV's 295 validation cells one epoch's AUC moves by ±0.02: patience 5 on the raw
score stopped a run at epoch 10 of 20 that, trained on, gained 0.03 test AUC
(docs/elpv.md)."""

SAMPLES_PER_IMAGE: dict[str, tuple[int, int, int]] = {
    "stage1": (150, 60_000, 400_000),
    "stage2": (25, 15_000, 80_000),
    "monolithic": (25, 15_000, 80_000),
}
"""Model → (samples per training image, least total, most total)."""

OTHER_OUTPUT_MIN_IMAGES = 50
"""Training ``other_defect`` images from which a data-scaled stage 2 gets its other
output; fewer train stage 1 only. On the real dev crops (grouped 5-fold, seed 0) the
output cost mapped macro-F1 at every label share and bought 7-way accuracy: with ~31
such training images 0.735 → 0.687 (under the shipped bundle's 0.704) for +0.046; with
~62, 0.794 → 0.747 for +0.095; with ~124, −0.02 for +0.11 (docs/real-sem.md)."""

USER_TARGET_RECALL = 0.95
"""Stage-1 target recall of a data-scaled run (validation recall, visible defects)."""


def scaled_samples(model: str, images: int) -> int:
    """Total training samples of ``model`` for ``images`` training images."""
    per_image, least, most = SAMPLES_PER_IMAGE[model]
    return int(min(most, max(least, per_image * images)))


def scaled_recipe(recipe: TrainRecipe, images: dict[str, int],
                  other_defects: int = 0) -> TrainRecipe:
    """``recipe`` with every model's schedule scaled to its training images
    (``images``: model → count), early stopping on, stage 1 beside stage 2, the
    user-data target recall, and stage 2's other output from ``other_defects``
    (training ``other_defect`` images) on."""
    models: dict[str, ModelRecipe] = {}
    for name, count in images.items():
        m: ModelRecipe = getattr(recipe, name)
        total = scaled_samples(name, count)
        per_epoch = max(m.batch_size, total // EPOCHS // m.batch_size * m.batch_size)
        models[name] = replace(m, epochs=EPOCHS, samples_per_epoch=per_epoch,
                               patience=PATIENCE)
    if "stage2" in models and other_defects >= OTHER_OUTPUT_MIN_IMAGES:
        models["stage2"] = replace(models["stage2"], other_output=True)
    return replace(recipe, **models, concurrent_stage1=True,
                   target_recall=USER_TARGET_RECALL)
