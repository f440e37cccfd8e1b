"""Line families keep their material bright unless the recipe says otherwise (open vs short)."""

from __future__ import annotations

from synth import load_recipe, render


def test_line_families_follow_line_inverted_prob(default):
    r = default.replace({"sem.inverted_prob": 1.0, "sem.line_inverted_prob": 0.0,
                         "classes.normal.families": {"lines": 1.0, "routed": 1.0, "vias": 1.0}})
    seen = {}
    for i in range(18):
        _img, rec = render(r, "normal", i, seed=4)
        seen.setdefault(rec.family, set()).add(rec.params["sem"]["inverted"])
    assert seen.get("lines") == {False} and seen.get("routed") == {False}, seen
    assert seen.get("vias") == {True}, seen
    flipped = r.replace({"sem.line_inverted_prob": 1.0})
    for i in range(6):
        _img, rec = render(flipped, "open", i, seed=4)
        assert rec.params["sem"]["inverted"], rec.family


def test_open_and_short_are_told_apart_by_brightness_in_the_default_recipe(clean):
    # CLEAN sets inverted_prob 0; the default recipe's own line_inverted_prob must keep lines bright
    r = clean.replace({"sem.inverted_prob": 1.0})
    assert r.get("sem.line_inverted_prob") == 0.0
    for label, want_bright in (("open", False), ("short", True)):
        for i in range(4):
            img, rec = render(r, label, i, seed=6)
            level = img.astype(float)[rec.mask].mean() / 255.0
            assert (level > 0.5) == want_bright, (label, i, rec.family, level)  # gap dark, bridge bright
            assert not rec.params["sem"]["inverted"]


def test_shifted_recipe_still_inverts_lines():
    shifted = load_recipe("shifted")
    assert shifted.get("sem.line_inverted_prob") == shifted.get("sem.inverted_prob") > 0.5
    inv = [render(shifted, "short", i, seed=2)[1].params["sem"]["inverted"] for i in range(12)]
    assert 0 < sum(inv) < 12
