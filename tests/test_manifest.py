"""Manifest CSV: round trip, relative paths, defaults for optional columns, bad rows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.manifest import read_manifest, write_manifest
from apexmer.data.readers import read_corpus
from apexmer.data.sample import Sample, SampleSet
from apexmer.errors import DataError
from corpus_files import write_frames


def _samples(out):
    images = write_frames(out / "images", range(4), "crop_{}.png")
    return [
        Sample(
            "casme2",
            "sub01",
            "EP02_01f",
            "happiness",
            frames=out / "raw" / "EP02_01f",
            onset=46,
            apex=59,
            offset=86,
            emotion="happiness",
            action_units="12",
            apex_path=images / "crop_0.png",
            onset_path=images / "crop_1.png",
            mid_path=images / "crop_2.png",
            apex_spotted=61,
        ),
        Sample(
            "casme2",
            "sub02",
            "EP09_01",
            "disgust",
            onset=10,
            apex=None,
            offset=40,
            emotion="disgust",
            action_units="4+7",
            apex_path=images / "crop_3.png",
            apex_spotted=22,
        ),
    ]


def test_round_trip(tmp_path):
    samples = _samples(tmp_path)
    path = write_manifest(
        SampleSet(samples, ("disgust", "happiness"), "casme2-2019", "x"), tmp_path / "manifest.csv"
    )
    text = path.read_text()
    assert "images/crop_0.png" in text and str(tmp_path) not in text  # relative paths
    ss = read_manifest(path)
    assert ss.samples == samples and not ss.problems
    assert ss.classes == ("disgust", "happiness") and ss.coding_version == "casme2-2019"
    assert ss.samples[0].extra["apex_used"] == 61  # the crop shows the spotted apex
    assert ss.samples[0].extra["row"] == 2


def test_minimal_manifest_defaults(tmp_path):
    write_frames(tmp_path / "a", [1, 2], "apex_{}.png")
    (tmp_path / "m.csv").write_text(
        "subject,label,apex_path,note\n"
        "s1,positive,a/apex_1.png,first\n"
        f"s1,negative,{tmp_path / 'a' / 'apex_2.png'},second\n"
        "s2,negative,a/apex_1.png,\n"
    )
    ss = read_manifest(tmp_path / "m.csv")
    assert [s.key for s in ss] == ["manifest/s1/apex_1", "manifest/s1/apex_2", "manifest/s2/apex_1"]
    assert ss.coding_version == "manifest" and ss.classes == ("negative", "positive")
    assert ss.samples[0].extra["note"] == "first" and ss.samples[0].apex is None


def test_clip_from_row_when_stems_repeat_and_versions_joined(tmp_path):
    write_frames(tmp_path / "a", [1], "apex_{}.png")
    write_frames(tmp_path / "b", [1], "apex_{}.png")
    (tmp_path / "m.csv").write_text(
        "subject,label,apex_path,coding_version\n"
        "s1,positive,a/apex_1.png,casme2-2019\n"
        "s1,positive,b/apex_1.png,samm-v2\n"
    )
    ss = read_manifest(tmp_path / "m.csv")
    assert [s.clip for s in ss] == ["apex_1", "row3"]
    assert ss.coding_version == "casme2-2019+samm-v2"


def test_missing_required_column(tmp_path):
    (tmp_path / "m.csv").write_text("subject,emotion,apex_path\ns1,x,a.png\n")
    with pytest.raises(
        DataError,
        match=r"m\.csv: missing column\(s\) label; required: "
        "subject, label and apex_path or flow_path",
    ):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("subject,label\ns1,x\n")
    with pytest.raises(DataError, match=r"missing column\(s\) apex_path or flow_path"):
        read_manifest(tmp_path / "n.csv")


def test_flow_only_rows(tmp_path):
    """A row may name a flow (a PNG with a space before .png, as STSTNet ships them) and
    no apex crop; a row with neither is a problem; flow paths round-trip."""
    write_frames(tmp_path, [1], "sub01_EP02_01f {}.png")
    name = "sub01_EP02_01f 1.png"
    (tmp_path / "m.csv").write_text(
        f"subject,label,flow_path\nsub01,negative,{name}\nsub02,positive,\n"
    )
    got = read_manifest(tmp_path / "m.csv")
    assert [s.flow_path.name for s in got.samples] == [name]
    assert got.samples[0].apex_path is None
    assert len(got.problems) == 1 and "both empty" in got.problems[0].message
    write_manifest(got, tmp_path / "again.csv")
    assert read_manifest(tmp_path / "again.csv").samples[0].flow_path == tmp_path / name


def test_bad_rows_are_problems(tmp_path):
    write_frames(tmp_path, [1], "apex_{}.png")
    (tmp_path / "m.csv").write_text(
        "subject,label,apex_path,onset\n"
        "s1,positive,apex_1.png,5\n"
        "s1,positive,gone.png,5\n"
        "s2,positive,apex_1.png,five\n"
        "s3,,apex_1.png,\n"
    )
    ss = read_manifest(tmp_path / "m.csv")
    assert len(ss) == 1 and ss.samples[0].onset == 5
    rowed = {p.row: p.message for p in ss.problems}
    assert "apex image not found" in rowed[3] and "onset 'five'" in rowed[4]
    assert "label is empty" in rowed[5]
    assert all("Fix:" in m for m in rowed.values())


def test_unreadable_manifests(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_manifest(tmp_path / "empty.csv")


def test_manifest_through_registry_and_cli(tmp_path):
    path = write_manifest(
        _samples(tmp_path), tmp_path / "out" / "manifest.csv", coding_version="casme2-2014"
    )
    assert len(read_corpus("manifest", path)) == 2
    result = CliRunner().invoke(
        app, ["data", "summary", "--corpus", "manifest", "--coding", str(path), "--json"]
    )
    assert json.loads(result.output)["coding_version"] == "casme2-2014"


def test_pipeline_style_apex_fields(tmp_path):
    # preprocessing puts the frame it used in Sample.apex and the sheet's in extra
    sample = _samples(tmp_path)[0]
    used = sample.with_(apex=61, extra={"apex_labelled": 59, "mid": 52})
    ss = read_manifest(write_manifest([used], tmp_path / "m.csv", extra_columns=("mid",)))
    back = ss.samples[0]
    assert (back.apex, back.apex_spotted, back.extra["apex_used"]) == (59, 61, 61)
    assert back.extra["mid"] == "52" and ss.coding_version == "manifest"


def test_frame_numbers_out_of_order_are_row_problems(tmp_path) -> None:
    import cv2
    import numpy as np

    from apexmer.data.manifest import read_manifest

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "m.csv").write_text(
        "subject,label,apex_path,onset,apex,offset\n"
        "s1,happy,a.png,3,2,1\n"
        "s2,happy,a.png,1,9,5\n"
        "s3,happy,a.png,1,3,5\n"
    )
    ss = read_manifest(tmp_path / "m.csv")
    assert [s.subject for s in ss] == ["s3"]
    messages = " ".join(p.message for p in ss.problems)
    assert "onset 3 is after offset 1" in messages and "apex 9 is outside" in messages


def test_manifest_refuses_root_and_classes(tmp_path) -> None:
    import pytest

    from apexmer.data.readers import read_corpus
    from apexmer.errors import DataError

    with pytest.raises(DataError, match="do not apply"):
        read_corpus("manifest", coding=tmp_path / "m.csv", root=tmp_path)


def test_no_usable_samples_says_why_and_how_paths_resolve(tmp_path) -> None:
    # The flows lie in tmp/flows, the manifest in tmp/run and its paths were written
    # relative to tmp (the shell's folder), not to the manifest's own folder.
    write_frames(tmp_path / "flows", [1, 2, 3, 4], "sub0{}_EP02_01f .png")
    (tmp_path / "run").mkdir()
    lines = [f"sub0{n},{'ab'[n % 2]},flows/sub0{n}_EP02_01f .png" for n in (1, 2, 3, 4)]
    manifest = tmp_path / "run" / "manifest.csv"
    manifest.write_text("subject,label,flow_path\n" + "\n".join(lines) + "\n")
    args = ["loso", "--data", str(manifest), "--config", "flow", "--out", str(tmp_path / "o")]
    out = CliRunner().invoke(app, [*args, "--executor", "local"])
    assert isinstance(out.exception, DataError)  # main() prints it as one line, exit 2
    text = str(out.exception)
    tried = tmp_path / "run" / "flows" / "sub01_EP02_01f .png"
    assert "no usable samples for data.input=flow: 4 sample(s) left out" in text
    assert f"row 2: flow file not found: {tried}" in text and "(+1 more)" in text
    assert f"resolved against the manifest's folder, {tmp_path / 'run'}" in text
    assert "Fix: correct those paths (relative to the manifest's folder" in text
