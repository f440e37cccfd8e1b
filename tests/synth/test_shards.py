"""Sharded synthesis: N shards merged are the single run, byte for byte; bad shards refused."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from synth import write_dataset
from synth.cli import add_arguments, add_merge_arguments, run, run_merge
from synth.shards import ShardError, merge_shards, take_shard

SMALL_FIELDS = {"fields.size": [256, 256], "fields.defects": [1, 2]}
RUN = {"per_class": 3, "seed": 5, "size": 64, "fields": 2}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _cli(add, runner, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add(parser)
    return runner(parser.parse_args(argv))


@pytest.fixture(scope="module")
def recipe(default):
    return default.replace(SMALL_FIELDS, name="small-fields")


@pytest.fixture(scope="module")
def single(tmp_path_factory, recipe) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    write_dataset(out, recipe=recipe, sheet=True, **RUN)
    return out


@pytest.fixture(scope="module")
def separate(tmp_path_factory, recipe) -> list[Path]:
    """Three shards, one folder each (as on three machines)."""
    root = tmp_path_factory.mktemp("separate")
    dirs = [root / f"s{k}" for k in range(3)]
    for k, d in enumerate(dirs):
        write_dataset(d, recipe=recipe, shard=(k, 3), workers=1 + k % 2, **RUN)
    return dirs


def test_shards_in_one_folder_merge_to_the_single_run(tmp_path, recipe, single):
    out = tmp_path / "run"
    for k in (2, 0, 1):  # any order; they share the folder
        manifest = write_dataset(out, recipe=recipe, shard=(k, 3), **RUN)
        assert manifest == out / "shards" / f"shard-{k}-of-3.manifest.jsonl"
    assert not (out / "manifest.jsonl").exists()  # never a dataset before the merge
    merge_shards(out, [out], sheet=True)
    assert _tree(out) == _tree(single)  # every image, both manifests, the sheet
    assert not (out / "shards").exists()


def test_shards_in_separate_folders_merge_to_the_single_run(tmp_path, separate, single):
    out = tmp_path / "merged"
    rc = _cli(add_merge_arguments, run_merge,
              ["--out", str(out), "--sheet", *map(str, reversed(separate))])
    assert rc == 0
    assert _tree(out) == _tree(single)
    assert (out / "manifest.jsonl").read_text() == (single / "manifest.jsonl").read_text()
    assert all((d / "shards" / f"shard-{k}-of-3.json").exists() for k, d in enumerate(separate))


def test_each_shard_holds_its_interleaved_part(separate, single):
    lines = (single / "manifest.jsonl").read_text().splitlines()
    for k, d in enumerate(separate):
        shard_lines = (d / "shards" / f"shard-{k}-of-3.manifest.jsonl").read_text().splitlines()
        assert shard_lines == take_shard(lines, (k, 3))
        info = json.loads((d / "shards" / f"shard-{k}-of-3.json").read_text())
        assert (info["shard"], info["shards"], info["images"]) == (k, 3, len(shard_lines))
    assert not (separate[2] / "fields" / "field_0.png").exists()  # fields 0, 1: shards 0, 1


@pytest.mark.parametrize("shard", ["3/3", "-1/3", "0/0", "1", "a/b", "1/2/3"])
def test_bad_shard_is_refused_before_work(tmp_path, capsys, shard):
    out = tmp_path / "o"
    rc = _cli(add_arguments, run, ["--out", str(out), "--per-class", "1", "--seed", "0",
                                   f"--shard={shard}", "--no-progress"])
    assert rc == 2
    assert "--shard must be K/N" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("shard", [(3, 3), (0, 0), (-1, 2), (1.0, 2), "0/2"])
def test_bad_shard_tuple_is_refused(tmp_path, shard):
    with pytest.raises(ShardError, match="0 <= K < N"):
        write_dataset(tmp_path / "o", per_class=1, seed=0, shard=shard)
    assert not (tmp_path / "o").exists()


def test_a_shard_refuses_a_sheet_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="sheet needs every image"):
        write_dataset(tmp_path / "o", per_class=1, seed=0, shard=(0, 2), sheet=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="not synth shard output.*notes.txt"):
        write_dataset(tmp_path / "x", per_class=1, seed=0, shard=(0, 2))


def test_a_shard_rendered_twice_needs_overwrite(tmp_path, recipe):
    out = tmp_path / "run"
    write_dataset(out, recipe=recipe, shard=(1, 3), **RUN)
    with pytest.raises(ShardError, match="already holds shard 1 of 3"):
        write_dataset(out, recipe=recipe, shard=(1, 3), **RUN)
    write_dataset(out, recipe=recipe, shard=(0, 3), **RUN)  # another shard is fine
    before = _tree(out)
    write_dataset(out, recipe=recipe, shard=(1, 3), overwrite=True, **RUN)
    assert _tree(out) == before


def _copy(dirs: list[Path], dst: Path) -> list[Path]:
    return [Path(shutil.copytree(d, dst / d.name)) for d in dirs]


def test_merge_refuses_mismatched_shards(tmp_path, separate, recipe, capsys):
    other = tmp_path / "other"
    write_dataset(other, recipe=recipe, shard=(2, 3), **{**RUN, "seed": 6})
    rc = _cli(add_merge_arguments, run_merge,
              ["--out", str(tmp_path / "m"), str(separate[0]), str(separate[1]), str(other)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "shards disagree on seed" in err and "shard 2 of 3" in err
    assert not (tmp_path / "m").exists()
    four = tmp_path / "four"
    write_dataset(four, recipe=recipe, shard=(2, 4), **RUN)
    with pytest.raises(ShardError, match="disagree on shards"):
        merge_shards(tmp_path / "m", [*separate[:2], four])


def test_merge_refuses_gaps_and_duplicates(tmp_path, separate):
    with pytest.raises(ShardError, match=r"missing shard\(s\) 1 of 3"):
        merge_shards(tmp_path / "m", [separate[0], separate[2]])
    twin = _copy([separate[1]], tmp_path / "twin")[0]
    with pytest.raises(ShardError, match="shard 1 of 3 given twice"):
        merge_shards(tmp_path / "m", [*separate, twin])
    with pytest.raises(ShardError, match="no finished shard"):
        merge_shards(tmp_path / "m", [*separate, tmp_path / "twin"])
    assert not (tmp_path / "m").exists()


def test_merge_refuses_damaged_or_unfinished_shards(tmp_path, separate):
    dirs = _copy(separate, tmp_path / "copy")
    (dirs[1] / "normal" / "normal_1.png").write_bytes(b"truncated")
    with pytest.raises(ShardError, match=r"normal_1.png: bytes differ"):
        merge_shards(tmp_path / "m", dirs)
    dirs = _copy(separate, tmp_path / "copy2")
    (dirs[0] / "shards" / "shard-0-of-3.json").unlink()
    with pytest.raises(ShardError, match="did not finish"):
        merge_shards(tmp_path / "m", dirs)


def test_two_shards_on_a_local_ray_instance(tmp_path, default):
    """The docs/synth.md Ray recipe: one ``ray.remote`` task per shard, then the merge."""
    ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install ray)")
    run_args = {"per_class": 2, "seed": 9, "size": 64}
    write_dataset(tmp_path / "single", **run_args)

    @ray.remote
    def shard(k: int, n: int, out: str) -> str:
        from synth import write_dataset

        return str(write_dataset(out, shard=(k, n), **run_args))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        dirs = [str(tmp_path / f"s{k}") for k in range(2)]
        ray.get([shard.remote(k, 2, d) for k, d in enumerate(dirs)])
    finally:
        ray.shutdown()
    merge_shards(tmp_path / "merged", dirs)
    assert _tree(tmp_path / "merged") == _tree(tmp_path / "single")
