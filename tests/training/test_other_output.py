"""Stage 2's other output: ``other_defect`` learnt as a seventh output that the runtime
answers ``unknown`` (training side: layout, schedule, targets, decision, a whole run)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import TINY_RECIPE  # noqa: E402

from training.evaluate import stage2_answers  # noqa: E402
from training.labels import OTHER_DEFECT, OTHER_OUTPUT  # noqa: E402
from training.models import build_model, widen_head  # noqa: E402
from training.pipeline import (  # noqa: E402
    _initial_model,
    _stage2_spec,
    load_checkpoint,
    save_checkpoint,
    train_bundle,
)
from training.recipe import ModelRecipe, TrainRecipe  # noqa: E402
from training.schedule import OTHER_OUTPUT_MIN_IMAGES, scaled_recipe  # noqa: E402


def test_widening_keeps_the_trained_rows_and_starts_the_new_one_at_their_mean():
    model = build_model("stage2")
    old_w, old_b = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    widen_head(model, 7)
    assert model.arch.outputs == 7 and model.head.out_features == 7
    torch.testing.assert_close(model.head.weight[:6], old_w)
    torch.testing.assert_close(model.head.weight[6], old_w.mean(0))
    torch.testing.assert_close(model.head.bias[6], old_b.mean())
    model.eval()
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)
    widen_head(model, 6)  # never narrows
    assert model.head.out_features == 7


def test_fine_tuning_widens_a_six_output_checkpoint_and_a_seven_output_one_loads(tmp_path):
    six = save_checkpoint(build_model("stage2"), "stage2", tmp_path / "six.pt", TrainRecipe())
    widened = _initial_model("stage2", six, other_output=True)
    assert widened.head.out_features == 7 and widened.training
    seven = save_checkpoint(widened, "stage2", tmp_path / "seven.pt", TrainRecipe())
    loaded, _ = load_checkpoint(seven)
    assert loaded.arch.outputs == 7
    # a bundle whose stage 2 has the output keeps it, even on data without other_defect
    assert _initial_model("stage2", seven, other_output=False).head.out_features == 7
    assert _initial_model("stage2", None, other_output=False).head.out_features == 6


@pytest.mark.parametrize("others, on", [(0, False), (OTHER_OUTPUT_MIN_IMAGES - 1, False),
                                        (OTHER_OUTPUT_MIN_IMAGES, True)])
def test_the_scaled_schedule_turns_the_other_output_on_from_enough_images(others, on):
    r = scaled_recipe(TrainRecipe(), {"stage1": 500, "stage2": 300}, others)
    assert r.stage2.other_output is on
    # a run that trains stage 1 alone has no stage 2 to give it to
    alone = scaled_recipe(TrainRecipe(), {"stage1": 500}, OTHER_OUTPUT_MIN_IMAGES)
    assert alone.stage2.other_output is False


def test_stage2_targets_for_other_defect():
    labels = np.array([0, 1, 6, OTHER_DEFECT])
    keep, targets, _, _ = _stage2_spec(labels, ModelRecipe())
    assert keep.tolist() == [False, True, True, False]
    keep, targets, _, _ = _stage2_spec(labels, ModelRecipe(other_output=True))
    assert keep.tolist() == [False, True, True, True] and targets[3] == OTHER_OUTPUT
    keep, targets, _, _ = _stage2_spec(labels, ModelRecipe(outlier_weight=0.5))
    assert keep[3] and targets[3] == -1  # outlier exposure: a uniform target


def test_stage2_answers_read_the_other_output_as_the_runtime_does():
    six = np.array([[4.0, 0, 0, 0, 0, 0], [0.4, 0.3, 0, 0, 0, 0]])
    _, pred, unknown = stage2_answers(six, 1.0, 0.5)
    assert pred.tolist() == [0, 0] and unknown.tolist() == [False, True]
    seven = np.array([[4.0, 0, 0, 0, 0, 0, 5.0],   # the other output wins: unknown
                      [4.0, 0, 0, 0, 0, 0, 2.0],   # ler wins over it and the floor
                      [2.0, 0, 0, 0, 0, 0, 1.9]])  # ler wins over it, under the floor
    probs, pred, unknown = stage2_answers(seven, 1.0, 0.5)
    assert probs.shape == (3, 6) and (probs.sum(1) < 1).all()
    assert unknown.tolist() == [True, False, True] and (pred == 0).all()


def test_a_bundle_with_the_other_output_trains_loads_and_answers(tmp_path, tiny_folder,
                                                                  tiny_eval_folder):
    import edge
    from edge.evaluation import evaluate
    from training.evaluate import predict_onnx
    from training.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(TINY_RECIPE.replace("[stage2]\n", "[stage2]\nother_output = true\n"),
                    encoding="utf-8")
    outcome = train_bundle(tiny_folder, tmp_path / "b", recipe=load_recipe(str(path)),
                           eval_sets=[], quiet=True, name="other")
    assert outcome.manifest is not None
    manifest = json.loads(outcome.manifest.read_text(encoding="utf-8"))
    assert manifest["stage2"]["other_output"] is True
    x = np.zeros((2, 1, 224, 224), np.float32)
    assert predict_onnx(tmp_path / "b" / "stage2.int8.onnx", x).shape == (2, 7)
    cascade = edge.load(tmp_path / "b", target="x86-cpu")
    assert cascade.bundle.stage2_outputs == 7
    card = evaluate(cascade, tiny_eval_folder)
    assert all(p.ok for p in card.predictions)
    assert {p.label for p in card.predictions} <= {"normal", "unknown", *edge.DEFECT_CLASSES}
