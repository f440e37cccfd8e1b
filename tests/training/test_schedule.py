"""The schedule without a recipe (scaled to the data) and early stopping on the
validation score."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import cli  # noqa: E402
from training.models import build_model  # noqa: E402
from training.recipe import TrainRecipe  # noqa: E402
from training.schedule import EPOCHS, PATIENCE, USER_TARGET_RECALL, scaled_recipe  # noqa: E402
from training.train_loop import EarlyStopping, FitConfig, balanced_weights, fit  # noqa: E402


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    model = torch.nn.Linear(1, 1)
    stop = EarlyStopping(patience=3, window=1)
    scores = [0.5, 0.7, 0.6, 0.65, 0.6]
    decisions = []
    for epoch, score in enumerate(scores, 1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stop.update(epoch, score, model))
    assert decisions == [False, False, False, False, True]
    assert stop.best_epoch == 2 and float(stop.best_state["weight"]) == 2.0


def test_one_lucky_epoch_does_not_stop_a_run_that_is_still_improving():
    # validation AUC on a few hundred images: epoch 2 is a +0.08 fluke
    scores = [0.70, 0.80, 0.72, 0.74, 0.75, 0.76]
    model = torch.nn.Linear(1, 1)
    raw, smoothed = EarlyStopping(patience=3, window=1), EarlyStopping(patience=3)
    assert [raw.update(e, s, model) for e, s in enumerate(scores, 1)][4]  # stops at 5
    assert not any(smoothed.update(e, s, model) for e, s in enumerate(scores, 1))
    assert smoothed.best_epoch == 2  # the weights kept are still the best epoch's
    with pytest.raises(ValueError, match="window"):
        EarlyStopping(patience=3, window=0)


def test_a_score_that_is_not_a_number_never_stops_a_run():
    stop = EarlyStopping(patience=1)
    model = torch.nn.Linear(1, 1)
    assert not any(stop.update(e, float("nan"), model) for e in range(1, 6))
    assert stop.best_epoch is None and stop.best_state is None


def test_fit_stops_early_and_restores_the_best_weights():
    rng = np.random.default_rng(0)
    x = rng.random((32, 1, 64, 64), dtype=np.float32)
    y = (np.arange(32) % 2).astype(np.float32)
    model = build_model("stage1")
    seen: dict[int, torch.Tensor] = {}
    scripted = iter([0.6, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])

    def validate(m) -> float:
        seen[len(seen) + 1] = next(iter(m.state_dict().values())).detach().clone()
        assert not m.training  # scored in eval mode
        return next(scripted)

    cfg = FitConfig(epochs=8, samples_per_epoch=32, batch_size=16, patience=2)
    result = fit(model, x, y, balanced_weights(y), binary=True, config=cfg,
                 validate=validate)
    # means of the last three scores peak at epoch 4 (0.8): two epochs later it stops
    assert result.stopped_early and result.best_epoch == 2
    assert [h["val_score"] for h in result.history] == [0.6, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert result.samples == 6 * 32  # six epochs ran, not eight
    torch.testing.assert_close(next(iter(model.state_dict().values())), seen[2])


def test_scaled_recipe_follows_the_number_of_images_within_bounds():
    r = scaled_recipe(TrainRecipe(), {"stage1": 2000, "stage2": 100, "monolithic": 10**6})
    s1, s2, mono = r.stage1, r.stage2, r.monolithic
    assert s1.epochs == s2.epochs == EPOCHS and s1.patience == PATIENCE
    assert s1.samples_per_epoch * EPOCHS == pytest.approx(150 * 2000, rel=0.01)
    assert s2.samples_per_epoch * EPOCHS == pytest.approx(15_000, rel=0.1)  # the floor
    assert mono.samples_per_epoch * EPOCHS == pytest.approx(80_000, rel=0.1)  # the cap
    assert all(m.samples_per_epoch % m.batch_size == 0 for m in (s1, s2, mono))
    assert r.concurrent_stage1 and r.target_recall == USER_TARGET_RECALL


def _parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("extra, scaled", [([], True), (["--recipe", "r.toml"], False),
                                           (["--epochs", "3"], False)])
def test_without_a_recipe_the_cli_asks_for_the_scaled_schedule(monkeypatch, tmp_path, extra,
                                                                scaled):
    calls = {}
    monkeypatch.setattr("training.pipeline.train_bundle",
                        lambda *a, **kw: calls.update(kw))
    monkeypatch.setattr("training.recipe.load_recipe", lambda path: TrainRecipe())
    args = _parsed(["--data", str(tmp_path), "--out", str(tmp_path / "o"),
                    "--target-recall", "0.97", *extra])
    assert cli.run_train(args) == 0
    assert calls["scale_to_data"] is scaled and calls["target_recall"] == 0.97


def test_target_recall_outside_0_1_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        _parsed(["--data", "d", "--out", "o", "--target-recall", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err


def test_drift_budgets_from_the_cli_keep_the_scaled_schedule(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr("training.pipeline.train_bundle",
                        lambda *a, **kw: calls.update(kw))
    args = _parsed(["--data", str(tmp_path), "--out", str(tmp_path / "o"),
                    "--max-recall-drop", "0.02", "--max-macro-f1-drop", "0.05"])
    assert cli.run_train(args) == 0
    assert calls["scale_to_data"] is True
    assert calls["recipe"].max_recall_drop == 0.02
    assert calls["recipe"].max_macro_f1_drop == 0.05
    assert "--max-recall-drop 0.02 --max-macro-f1-drop 0.05" in calls["command"]


def test_a_refused_export_tells_the_user_what_to_do_next(monkeypatch, tmp_path, capsys):
    from training.export.gate import ExportRefused

    def refuse(*a, **kw):
        raise ExportRefused("export refused: onnx-int8 drifts from fp32: stage2_macro_f1", {})

    monkeypatch.setattr("training.pipeline.train_bundle", refuse)
    out = tmp_path / "o"
    assert cli.run_train(_parsed(["--data", str(tmp_path), "--out", str(out)])) == 3
    err = capsys.readouterr().err
    assert "stage2_macro_f1" in err and str(out / "report") in err
    assert "--seed" in err and "--max-macro-f1-drop" in err
