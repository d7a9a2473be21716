"""Tests for `modeling_mtl.formats.conll`: WNUT-17-style `token<TAB>tag` files and classic CoNLL-2003 files (space-
separated columns, `-DOCSTART-`, IOB1 tags)."""

import logging

import pytest

from conftest import write
from modeling_mtl.data import DataSource, load_source
from modeling_mtl.formats import detect_format

LOGGER = "modeling_mtl.formats.conll"

# CoNLL-2003's layout: `token POS chunk tag`, a -DOCSTART- line and a blank line first, blank lines between sentences.
CLASSIC = {
    "train.txt": (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    ),
    "valid.txt": "-DOCSTART- -X- -X- O\n\nCRICKET NNP B-NP O\n- : O O\nLEICESTERSHIRE NNP B-NP B-ORG\n\n",
    "test.txt": "-DOCSTART- -X- -X- O\n\nSOCCER NN B-NP O\n\n-DOCSTART- -X- -X- O\n\nJapan NNP B-NP B-LOC\n",
}
EXPECTED = {
    "train": (
        [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
        [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]],
    ),
    "validation": ([["CRICKET", "-", "LEICESTERSHIRE"]], [["O", "O", "B-ORG"]]),
    "test": ([["SOCCER"], ["Japan"]], [["O"], ["B-LOC"]]),
}


def write_classic(root, names=None, separator=" "):
    """The CLASSIC files under `root`, renamed through `names` and with `separator` between columns."""
    for name, text in CLASSIC.items():
        write(root / (names or {}).get(name, name), text.replace(" ", separator))
    return root


def loaded(root, **options):
    dsd = load_source(DataSource(data_dir=str(root), **options))
    return {split: (dsd[split]["words"], dsd[split]["tags"]) for split in dsd}


def test_classic_conll_2003_is_detected_and_loaded(tmp_path, caplog):
    write_classic(tmp_path)
    assert detect_format(tmp_path) == "conll"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert loaded(tmp_path) == EXPECTED
    assert not caplog.records  # valid IOB2, nothing converted; -DOCSTART- gives no empty sentence


def test_tab_separated_two_column_conll(tmp_path):
    for name, text in CLASSIC.items():
        two_columns = "\n".join(" ".join(line.split()[::3]) for line in text.split("\n"))
        write(tmp_path / name.replace(".txt", ".conll"), two_columns.replace(" ", "\t"))
    assert "EU\tB-ORG\n" in (tmp_path / "train.conll").read_text()
    assert detect_format(tmp_path) == "conll"
    assert loaded(tmp_path) == EXPECTED


@pytest.mark.parametrize("suffix", [".iob", ".iob2", ".bio", ".tsv"])
def test_other_conll_file_names(tmp_path, suffix):
    names = {"train.txt": f"eng.train{suffix}", "valid.txt": f"eng.validation{suffix}", "test.txt": f"test{suffix}"}
    write_classic(tmp_path, names)
    assert detect_format(tmp_path) == "conll"
    assert loaded(tmp_path) == EXPECTED


def test_space_separated_columns_need_a_conll_file_name(tmp_path):
    write(tmp_path / "train.annotated", CLASSIC["train.txt"])
    with pytest.raises(ValueError, match=r"Cannot detect the data format .*\*\.txt, \*\.conll.*found train\.annotated"):
        detect_format(tmp_path)
    write(tmp_path / "train.annotated", CLASSIC["train.txt"].replace(" ", "\t"))
    assert detect_format(tmp_path) == "conll"  # tab-separated files may have any name (WNUT-17's *.annotated)


def test_plain_text_files_are_not_conll(tmp_path):
    write(tmp_path / "train.txt", "the film is fine\nit is not good\n")
    with pytest.raises(ValueError, match="Cannot detect the data format"):
        detect_format(tmp_path)


def test_iob1_file_is_converted_to_iob2_with_one_warning(tmp_path, caplog):
    write(
        tmp_path / "train.txt",
        "-DOCSTART- -X- -X- O\n\n"
        "U.N. NNP I-NP I-ORG\nofficial NN I-NP O\nEkeus NNP I-NP I-PER\nheads VBZ I-VP O\n\n"
        "Germany NNP I-NP I-LOC\nFrance NNP I-NP B-LOC\nand CC O O\nEU NNP I-NP I-ORG\nPeter NNP I-NP I-PER\n"
        "Blackburn NNP I-NP I-PER\n",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert loaded(tmp_path, validation_split_percentage=0, test_split_percentage=0)["train"][1] == [
            ["B-ORG", "O", "B-PER", "O"],
            ["B-LOC", "B-LOC", "O", "B-ORG", "B-PER", "I-PER"],
        ]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith(
        "train.txt: 5 I- tags begin an entity (IOB1 tagging as in the original CoNLL-2003, or IOB2 mistakes); "
        "converted them to B- (IOB2)."
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ O\n",
            r"train\.txt:4: 3 columns, but line 3 has 4; every token line of a CoNLL file needs the same columns",
        ),
        ("EU\tB-ORG\n\nrejects\tVBZ\tO\n", r"train\.conll:3: 3 columns, but line 1 has 2"),
        ("EU NNP B-NP B-ORG\nrejects VBZ B-VP 0\n", r"train\.txt:2: tag '0' is not a BIO tag"),
        ("EU NNP B-NP B-ORG\nlonely\n", r"train\.txt:2: expected 'token<TAB>tag' \(or columns separated by spaces"),
    ],
    ids=["ragged_spaces", "ragged_tabs", "not_bio", "single_column"],
)
def test_classic_errors_name_file_and_line(tmp_path, content, message):
    write(tmp_path / ("train.conll" if "\t" in content else "train.txt"), content)
    assert detect_format(tmp_path) == "conll"
    with pytest.raises(ValueError, match=message):
        load_source(DataSource(data_dir=str(tmp_path)))


def test_conll_blank_bom_and_tab_only_lines_end_sentences(tmp_path):
    write(tmp_path / "train.conll", "@user\tO\nParis\tB-location\n\t\nNew\tB-location\nYork\tI-location\n\n\n")
    write(tmp_path / "emerging.dev.conll", "hi\tO\n\ufeff\nthere\tO\n\ufeff\n")
    write(tmp_path / "emerging.test.annotated", "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n")
    assert detect_format(tmp_path) == "conll"
    dsd = load_source(DataSource(data_dir=str(tmp_path), name="ner"))
    assert dsd["train"]["words"] == [["@user", "Paris"], ["New", "York"]]
    assert dsd["train"]["tags"] == [["O", "B-location"], ["B-location", "I-location"]]
    assert dsd["train"]["sentence_label"] == [None, None]
    assert dsd["validation"]["words"] == [["hi"], ["there"]]
    # Space-separated columns: token first, tag last; -DOCSTART- is skipped.
    assert dsd["test"]["words"] == [["EU", "rejects"]]
    assert dsd["test"]["tags"] == [["B-ORG", "O"]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tO\nlonely\n", r"train\.conll:2: expected 'token<TAB>tag'"),
        ("a\tO\nb\tB_PER\n", r"train\.conll:2: tag 'B_PER' is not a BIO tag"),
        ("a\tO\nb\t\n", r"train\.conll:2: expected 'token<TAB>tag'"),
        ("\n\ufeff\n", r"train\.conll: no sentences"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path, content, message):
    write(tmp_path / "train.conll", content)
    with pytest.raises(ValueError, match=message):
        load_source(DataSource(data_dir=str(tmp_path), data_format="conll"))
