"""The cascade: gating, boxes, labels, unknown, determinism and threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from bundle_factory import field_image, make_bundle

import edge
from edge.classes import DEFECT_CLASSES, UNKNOWN
from edge.results import image_label, label_tiles


class CountingSession:
    """Wraps a session and records how many tiles (and which) it was given."""

    def __init__(self, inner):
        self.inner, self.batches, self.lock = inner, [], threading.Lock()
        self.backend, self.provider, self.format = inner.backend, inner.provider, inner.format

    @property
    def describe(self):
        return self.inner.describe

    def run(self, batch):
        with self.lock:
            self.batches.append(batch.copy())
        return self.inner.run(batch)

    @property
    def tiles(self):
        return sum(len(b) for b in self.batches)


@pytest.fixture()
def counted(bundle_dir, cpu_profile):
    c = edge.load(bundle_dir, target=cpu_profile)
    c.stage1, c.stage2 = CountingSession(c.stage1), CountingSession(c.stage2)
    return c


def test_stage2_runs_only_on_flagged_tiles(counted):
    bright = [(0, 1), (3, 4), (4, 0)]
    image = field_image(5, 5, bright)
    result = counted.classify(image)
    expected = sorted(r * 5 + c for r, c in bright)
    assert np.flatnonzero(result.flagged).tolist() == expected
    assert counted.stage1.tiles == 25 and counted.stage2.tiles == 3 == result.stage2_count
    assert all(len(b) <= counted.batch for b in counted.stage1.batches)
    # stage 2 saw exactly the flagged tiles, bright ones, in tile order
    seen = np.concatenate(counted.stage2.batches)
    tiles = counted.tile(image).batch
    np.testing.assert_array_equal(seen, tiles[expected])
    assert np.isnan(result.stage2_probs[~result.flagged]).all()
    assert not np.isnan(result.stage2_probs[result.flagged]).any()
    assert [result.tile_labels[i] for i in expected] == ["short"] * 3
    assert result.label == "short" and result.decisive_tile == expected[0]
    assert result.score == pytest.approx(np.exp(3) / (np.exp(3) + 5), abs=1e-4)


def test_clean_field_is_normal_and_stage2_never_runs(counted):
    result = counted.classify(field_image(3, 4))
    assert result.label == "normal" and counted.stage2.tiles == 0
    assert result.score == pytest.approx(1.0 - result.stage1_scores.max())
    assert set(result.tile_labels) == {"normal"} and result.decisive_tile is None
    assert result.timings_ms["stage2"] < 5.0


def test_tile_boxes_map_back_to_the_image(cascade):
    h, w = 2048, 2048
    result = cascade.classify(field_image(10, 10, shape=(h, w)))
    assert result.grid == (10, 10) and result.boxes.shape == (100, 4)
    covered = np.zeros((h, w), bool)
    for k, (x0, y0, x1, y1) in enumerate(result.boxes):
        r, c = divmod(k, 10)
        assert (x0, y0) == (c * 224, r * 224)
        assert (x1, y1) == (min(x0 + 224, w), min(y0 + 224, h))
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_flagged_box_is_where_the_bright_patch_is(cascade):
    image = field_image(4, 6, [(2, 3)], shape=(900, 1400))
    result = cascade.classify(image)
    (k,) = np.flatnonzero(result.flagged)
    x0, y0, x1, y1 = result.boxes[k]
    assert (x0, y0, x1, y1) == (3 * 224, 2 * 224, 4 * 224, 3 * 224)
    assert (image[y0:y1, x0:x1] == 255).all()


def test_a_224_image_is_one_tile(cascade):
    image = field_image(1, 1)
    image[:200] = 255  # mostly bright: flagged (a constant tile would normalize to 0)
    result = cascade.classify(image)
    assert result.grid == (1, 1) and result.boxes.tolist() == [[0, 0, 224, 224]]
    assert result.label == "short"


@pytest.mark.parametrize(("shape", "boxes"), [
    ((100, 300), [[0, 0, 100, 100], [100, 0, 200, 100], [200, 0, 300, 100]]),
    ((1, 1), [[0, 0, 1, 1]]),
    # 224×100 → 502×224 work image → 3 tiles; mapped back they overlap by 1 px at most
    ((224, 100), [[0, 0, 100, 100], [0, 99, 100, 200], [0, 199, 100, 224]]),
])
def test_small_images_are_upscaled_and_boxes_map_back(cascade, shape, boxes):
    image = field_image(1, 1, shape=shape)
    result = cascade.classify(image)
    assert result.image_shape == shape
    assert result.boxes.tolist() == boxes
    assert result.label in ("normal", *DEFECT_CLASSES, UNKNOWN)


def test_uint16_gives_the_same_answer_as_uint8(cascade):
    bright = [(1, 1)]
    r8 = cascade.classify(field_image(3, 3, bright))
    r16 = cascade.classify(field_image(3, 3, bright, dtype=np.uint16))
    assert r16.tile_labels == r8.tile_labels and r16.label == r8.label
    np.testing.assert_array_equal(r16.flagged, r8.flagged)


def test_low_confidence_tile_is_unknown_never_forced(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", unknown_threshold=0.9)  # top prob is ~0.80
    c = edge.load(root, target=cpu_profile)
    result = c.classify(field_image(2, 2, [(0, 0)]))
    assert result.tile_labels[0] == UNKNOWN and result.label == UNKNOWN
    assert result.score == pytest.approx(0.80, abs=0.01)
    assert result.tiles[0].probabilities["short"] == pytest.approx(0.80, abs=0.01)


def test_temperature_flattens_probabilities_into_unknown(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", temperature=50.0)
    result = edge.load(root, target=cpu_profile).classify(field_image(2, 2, [(1, 1)]))
    assert result.label == UNKNOWN
    assert result.stage2_probs[3].max() < 0.2


def test_stage2_class_follows_the_model(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", stage2_bias=[0, 0, 0, 0, 0, 6.0])
    result = edge.load(root, target=cpu_profile).classify(field_image(2, 2, [(1, 0)]))
    assert result.label == "crack" and result.tile_labels == ("normal", "normal", "crack", "normal")


@pytest.mark.parametrize("other_bias, label", [(6.0, UNKNOWN), (-6.0, "crack")])
def test_the_other_output_answers_unknown_when_it_wins(tmp_path, cpu_profile, other_bias,
                                                       label):
    root = make_bundle(tmp_path / "b", stage2_bias=[0, 0, 0, 0, 0, 3.0, other_bias])
    cascade = edge.load(root, target=cpu_profile)
    assert cascade.bundle.other_output and cascade.bundle.stage2_outputs == 7
    result = cascade.classify(field_image(2, 2, [(1, 0)]))
    probs = result.stage2_probs[2]
    assert probs.shape == (6,) and probs.sum() < 1.0  # the rest is the other output's
    assert result.label == label and result.tile_labels[2] == label
    other = 1.0 - probs.sum()
    assert result.score == pytest.approx(other if label == UNKNOWN else probs.max(), abs=1e-5)


def test_a_seven_output_stage2_needs_the_manifest_to_say_so(tmp_path, cpu_profile):
    from bundle_factory import read_manifest, write_manifest

    root = make_bundle(tmp_path / "b", stage2_bias=[0, 0, 0, 0, 0, 3.0, 6.0])
    manifest = read_manifest(root)
    del manifest["stage2"]["other_output"]
    write_manifest(root, manifest)
    from edge.bundle import BundleError

    with pytest.raises(BundleError, match=r"stage2 contract \[N, 6\]"):
        edge.load(root, target=cpu_profile)


def test_image_label_rule_is_pure_and_documented():
    s1 = np.array([0.1, 0.95, 0.7, 0.99], np.float32)
    flagged = s1 >= 0.5
    probs = np.full((4, 6), np.nan, np.float32)
    probs[1] = [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]   # ler, confident
    probs[2] = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]        # crack, confident
    probs[3] = [0.3, 0.3, 0.1, 0.1, 0.1, 0.1]        # unsure
    labels, scores = label_tiles(s1, flagged, probs, 0.5)
    assert labels == ("normal", "ler", "crack", UNKNOWN)
    assert scores[0] == pytest.approx(0.9) and scores[3] == pytest.approx(0.3)
    # the decisive tile is the flagged one with the highest stage-1 score: tile 3
    assert image_label(s1, flagged, labels, scores) == (UNKNOWN, pytest.approx(0.3), 3)
    # a probability exactly at the threshold is trusted
    probs[3] = [0.5, 0.1, 0.1, 0.1, 0.1, 0.1]
    labels, scores = label_tiles(s1, flagged, probs, 0.5)
    assert labels[3] == "ler"
    none = np.zeros(4, bool)
    assert image_label(s1, none, ("normal",) * 4, 1 - s1)[0] == "normal"
    # with the other output a row sums to 1 − its probability; it wins over every class
    probs[1] = [0.2, 0.1, 0.05, 0.05, 0.05, 0.05]    # other: 0.5
    probs[2] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.6]        # other: 0.4, crack wins
    labels, scores = label_tiles(s1, flagged, probs, 0.5)
    assert labels[1:3] == (UNKNOWN, "crack")
    assert scores[1] == pytest.approx(0.5) and scores[2] == pytest.approx(0.6)


def test_repeated_runs_are_identical(cascade):
    image = field_image(5, 5, [(2, 2), (0, 4)], seed=3)
    first = cascade.classify(image)
    for _ in range(3):
        again = cascade.classify(image)
        np.testing.assert_array_equal(again.stage1_scores, first.stage1_scores)
        np.testing.assert_array_equal(again.stage2_probs, first.stage2_probs)
        assert again.tile_labels == first.tile_labels and again.score == first.score


def test_two_threads_get_the_same_answers_as_one(cascade):
    images = [field_image(4, 4, [(i % 4, (i * 3) % 4)], seed=i) for i in range(6)]
    alone = [cascade.classify(im) for im in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(cascade.classify, images * 2))
    for a, b in zip(alone * 2, together):
        np.testing.assert_array_equal(a.stage1_scores, b.stage1_scores)
        np.testing.assert_array_equal(a.stage2_probs, b.stage2_probs)
        assert a.label == b.label and a.tile_labels == b.tile_labels


@pytest.mark.parametrize(("image", "error", "message"), [
    (np.zeros((300, 300, 3), np.uint8), ValueError, "must be 2-D"),
    (np.zeros((300, 300), np.float32), TypeError, "uint8 or uint16"),
    (np.zeros((0, 300), np.uint8), ValueError, "empty"),
    ([[1, 2], [3, 4]], TypeError, "numpy ndarray"),
])
def test_bad_arrays_raise_clear_errors(cascade, image, error, message):
    with pytest.raises(error, match=message):
        cascade.classify(image)


def test_timings_cover_every_step(cascade):
    t = cascade.classify(field_image(2, 2)).timings_ms
    assert set(t) == {"tile", "stage1", "stage2", "total"}
    assert t["total"] >= t["tile"] + t["stage1"] + t["stage2"] - 1e-6


def test_int8_bundle_on_x86_uses_int8(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", formats=("onnx", "onnx-int8"))
    c = edge.load(root, target=cpu_profile)
    assert c.backend == "onnxruntime:CPUExecutionProvider:int8"
    result = c.classify(field_image(3, 3, [(1, 2)]))
    assert np.flatnonzero(result.flagged).tolist() == [5] and result.label == "short"
