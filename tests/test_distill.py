import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builder.distill import assign_video_splits, clean_caption, distill_musiccaps, main
from builder.musiccaps import read_musiccaps
from core.errors import DataError
from tests.conftest import MUSICCAPS_COLUMNS, write_musiccaps


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The low quality recording features a piano melody.", "The recording features a piano melody."),
        ("This is a low quality recording. The piano plays.", "This is a recording. The piano plays."),
        ("A piano plays. The recording is of low quality.", "A piano plays."),
        ("A piano plays. It sounds  low quality, sadly. A flute joins .", "A piano plays. A flute joins."),
        ("An old, low quality recording of a choir.", "An old recording of a choir."),
        ("It is a low quality audio recording.", "It is an audio recording."),
        ("low quality recording of a choir", "Recording of a choir"),
    ],
)
def test_clean_caption(raw, expected):
    assert clean_caption(raw)[0] == expected


def test_real_captions_are_clean(taxonomy, musiccaps_csv):
    result = distill_musiccaps(read_musiccaps(musiccaps_csv), taxonomy)
    captions = result.distilled.column("caption").to_pylist()
    assert not [c for c in captions if "  " in c or " ." in c or " ," in c]
    assert not [c for c in captions if "low quality" in c.lower()]
    assert all(c and c[0].isupper() or not c[0].isalpha() for c in captions)


def test_three_category_rule(tmp_path, taxonomy):
    csv_path = write_musiccaps(
        tmp_path / "mc.csv",
        [
            {"aspect_list": ["rock", "energetic", "electric guitar", "fast tempo"]},  # 4 categories
            {"aspect_list": ["rock", "Male Voice", "fast tempo", "low quality"]},  # 3
            {"aspect_list": ["rock", "electric guitar", "e-guitar", "no voice"]},  # 2
            {"aspect_list": ["low quality", "mono"]},  # none
        ],
    )
    result = distill_musiccaps(read_musiccaps(csv_path), taxonomy)
    assert result.distilled.num_rows == 2
    assert result.tagged.num_rows == 3
    assert result.summary["skipped"] == {"fewer than 3 categories": 1, "no taxonomy concept": 1}
    row = result.distilled.to_pylist()[1]
    assert row["instrument"] == ["male vocal"] and row["genre"] == ["rock"] and row["tempo"] == ["fast tempo"]


def test_real_distillation_counts_and_split_disjointness(taxonomy, musiccaps_csv):
    result = distill_musiccaps(read_musiccaps(musiccaps_csv), taxonomy)
    rows = result.tagged.to_pylist()
    assert 1500 < result.summary["distilled_rows"] < 3500
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    video_split = {}
    for r in rows:
        assert video_split.setdefault(r["ytid"], r["split"]) == r["split"], r["ytid"]
    per_split = result.summary["per_split"]
    assert per_split["validation"] > 50 and per_split["test"] > 50
    assert all(r["n_categories"] >= 3 for r in result.distilled.to_pylist())


def test_splits_are_deterministic_and_keep_videos_together():
    ids = [f"v{i}" for i in range(200)] * 2
    a, b = assign_video_splits(ids), assign_video_splits(list(reversed(ids)))
    assert a == b and set(a.values()) == {"train", "validation", "test"}
    assert assign_video_splits(ids, seed=1) != a


def test_distill_is_byte_identical_across_runs(tmp_path, musiccaps_csv):
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        taxonomy_path = out / "taxonomy.json"
        from builder.taxonomy import main as taxonomy_main

        taxonomy_main(["--musiccaps_csv", str(musiccaps_csv), "--output", str(taxonomy_path)])
        main(["--musiccaps_csv", str(musiccaps_csv), "--output_dir", str(out)])
        outputs.append(
            {
                f: (out / f).read_bytes()
                for f in ("taxonomy.json", "distilled.parquet", "musiccaps_tagged.parquet", "distill_summary.json")
            }
        )
    assert outputs[0] == outputs[1]
    table = pq.read_table(tmp_path / "a" / "distilled.parquet")
    assert pa.types.is_list(table.schema.field("genre").type)


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "builder.distill", "--help"], capture_output=True, text=True, check=True
    )
    assert "--min_categories" in out.stdout


# Bad input: each error names the file, the row and the field.
def test_missing_column(tmp_path):
    path = tmp_path / "mc.csv"
    path.write_text("ytid,start_s,end_s,caption\nabc,30,40,hello\n")
    with pytest.raises(DataError, match=r"mc.csv, row 1: missing column\(s\) \['aspect_list'\]"):
        read_musiccaps(path)


def test_unparseable_aspect_list(tmp_path):
    path = write_musiccaps(tmp_path / "mc.csv", [{"aspect_list": ["rock"]}, {"aspect_list": ["pop"]}])
    text = path.read_text().replace("['pop']", "['pop'")
    path.write_text(text)
    with pytest.raises(DataError, match=r"mc.csv, row 3, field 'aspect_list': not a list literal"):
        read_musiccaps(path)


def test_aspect_list_that_is_not_a_list(tmp_path):
    path = write_musiccaps(tmp_path / "mc.csv", [{"aspect_list": "rock"}])
    with pytest.raises(DataError, match=r"row 2, field 'aspect_list': expected a list of strings"):
        read_musiccaps(path)


def test_empty_file(tmp_path):
    path = tmp_path / "mc.csv"
    path.write_text("")
    with pytest.raises(DataError, match="mc.csv: file is empty"):
        read_musiccaps(path)


def test_non_utf8_file(tmp_path):
    path = write_musiccaps(
        tmp_path / "mc.csv", [{"aspect_list": ["rock"]}, {"aspect_list": ["pop"], "caption": "caf\u00e9"}]
    )
    path.write_bytes(path.read_bytes().replace("caf\u00e9".encode(), "caf\u00e9".encode("latin-1")))
    with pytest.raises(DataError, match=r"mc.csv, row 3: not UTF-8"):
        read_musiccaps(path)


def test_duplicate_ids(tmp_path):
    path = write_musiccaps(
        tmp_path / "mc.csv", [{"ytid": "abc", "aspect_list": ["rock"]}, {"ytid": "abc", "aspect_list": ["pop"]}]
    )
    with pytest.raises(DataError, match=r"row 3, field 'ytid': duplicate id 'abc_00030' \(first at row 2\)"):
        read_musiccaps(path)


def test_bad_number_and_short_row(tmp_path):
    path = write_musiccaps(tmp_path / "mc.csv", [{"aspect_list": ["rock"], "start_s": "thirty"}])
    with pytest.raises(DataError, match=r"row 2, field 'start_s': not a number"):
        read_musiccaps(path)
    path.write_text(",".join(MUSICCAPS_COLUMNS) + "\nabc,30\n")
    with pytest.raises(DataError, match=r"row 2: expected 9 fields"):
        read_musiccaps(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_musiccaps(tmp_path / "nope.csv")
