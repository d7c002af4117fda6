"""Corpus readers (PTB-SD, CoNLL-U, CoNLL-X, text), their errors, and the shipped demo corpus."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lig_jax.data import (
    DEMO_NAME,
    FORMATS,
    Corpus,
    Sentence,
    demo_path,
    detect_format,
    read_corpus,
)
from lig_jax.errors import LIGError

REPO = Path(__file__).resolve().parents[1]

PTB = """\
The 2-det
dog 3-nsubj
barked 0-root
. 3-punct


Cats 2-nsubj
sleep 0-root"""

CONLLU = """\
# sent_id = a
# text = I don't know .
1\tI\tI\tPRON\t_\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\t_\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\t_\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\t_\t_\t0\troot\t_\t_
4.1\tknow\tknow\tVERB\t_\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t_\t_\t4\tpunct\t_\t_

# sent_id = b
1\tYes\tyes\tINTJ\t_\t_\t0\troot\t_\t_
"""

CONLLX = """\
1\tThe\tthe\tDT\tDT\t_\t2\tdet\t_\t_
2\tcat\tcat\tNN\tNN\t_\t3\tnsubj\t_\t_
3\tsat\tsit\tVB\tVBD\t_\t0\tROOT\t_\t_

1\tGo\tgo\tVB\tVB\t_\t0\tROOT\t_\t_
"""

ROW = "{}\t{}\t_\t_\t_\t_\t{}\tdep\t_\t_\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    """Write `text` to `tmp_path/name` and return the path."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def conll_rows(*rows: tuple[str, str, str]) -> str:
    """CoNLL lines from (ID, FORM, HEAD) triples."""
    return "".join(ROW.format(*row) for row in rows)


def triples(corpus: Corpus) -> list[tuple]:
    """(words, heads, relns) per sentence."""
    return [(s.words, s.heads, s.relns) for s in corpus.sentences]


# ------------------------------------------------------------------------------ reading


def test_ptb_reads_words_heads_relations(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, "dev.txt", PTB), "ptb")
    assert corpus.format == "ptb" and corpus.bad_lines == corpus.skipped_sentences == 0
    assert corpus.sentences == (
        Sentence(0, ("The", "dog", "barked", "."), (2, 3, 0, 3),
                 ("det", "nsubj", "root", "punct"), 1),
        Sentence(1, ("Cats", "sleep"), (2, 0), ("nsubj", "root"), 7),
    )


def test_ptb_splits_label_at_first_dash(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, "a.txt", "well-known 2-amod-x\nx 0-root\n"), "ptb")
    assert corpus.sentences[0].words == ("well-known", "x")
    assert corpus.sentences[0].relns == ("amod-x", "root")


def test_conllu_skips_ranges_and_empty_nodes(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, "a.conllu", CONLLU), "conllu")
    assert triples(corpus) == [
        (("I", "do", "n't", "know", "."), (4, 4, 4, 0, 4),
         ("nsubj", "aux", "advmod", "root", "punct")),
        (("Yes",), (0,), ("root",)),
    ]
    assert [s.line for s in corpus.sentences] == [1, 11]


def test_conllx_reads_ten_columns(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, "a.conll", CONLLX), "conllx")
    assert corpus.format == "conllx"
    assert triples(corpus) == [(("The", "cat", "sat"), (2, 3, 0), ("det", "nsubj", "ROOT")),
                               (("Go",), (0,), ("ROOT",))]


def test_text_one_sentence_per_line(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, "a.txt", "The cat sat .\n\n  two   words \n"), "text")
    assert corpus.sentences == (Sentence(0, ("The", "cat", "sat", "."), None, None, 1),
                                Sentence(1, ("two", "words"), None, None, 3))


@pytest.mark.parametrize(("name", "text", "fmt"), [
    ("a.conllu", CONLLU, "conllu"),
    ("a.conll", CONLLX, "conllx"),
    ("a.conllx", CONLLX, "conllx"),
    ("dev.txt", PTB, "ptb"),
    ("noext", CONLLU, "conllu"),
    ("x.tsv", CONLLX, "conllu"),
    ("plain.txt", "The cat sat .\n", "text"),
    ("one.txt", "hello 2-world-ish and more\n", "text"),
])
def test_auto_detection(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = write(tmp_path, name, text)
    assert detect_format(path) == fmt
    assert read_corpus(path).format == fmt


# --------------------------------------------------------------------------- demo corpus


def test_demo_files_agree_and_are_large_enough() -> None:
    ptb, conllu = read_corpus(demo_path("ptb"), "ptb"), read_corpus(demo_path("conllu"))
    assert conllu.format == "conllu"
    assert len(ptb.sentences) == len(conllu.sentences) >= 100
    assert triples(ptb) == triples(conllu)
    assert all(5 <= len(s.words) <= 14 for s in ptb.sentences)
    assert any("n't" in s.words for s in ptb.sentences)


def test_demo_conllu_has_range_and_empty_node_lines() -> None:
    ids = [ln.split("\t")[0] for ln in demo_path("conllu").read_text().splitlines()
           if ln and not ln.startswith("#")]
    assert sum("-" in i for i in ids) == 1 and sum("." in i for i in ids) == 1


def test_demo_name_reads_shipped_ptb_file() -> None:
    corpus = read_corpus(DEMO_NAME)
    assert corpus.format == "ptb" and Path(corpus.path) == demo_path("ptb")
    assert read_corpus(DEMO_NAME, "conllu").format == "conllu"
    assert detect_format(DEMO_NAME) == "ptb"


def test_demo_generator_check_passes() -> None:
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_corpus.py"),
                          "--check"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_demo_generator_check_fails_on_stale_files(tmp_path: Path) -> None:
    script = str(REPO / "scripts" / "make_demo_corpus.py")
    args = [sys.executable, script, "--out-dir", str(tmp_path)]
    assert subprocess.run(args, capture_output=True, check=False).returncode == 0
    (tmp_path / "demo.sd.txt").write_text("changed 0-root\n")
    res = subprocess.run([*args, "--check"], capture_output=True, text=True, check=False)
    assert res.returncode == 1 and "demo.sd.txt" in res.stderr


# ---------------------------------------------------------------------------- bad lines


PTB_BAD = "A 0-root\n\nB 2-nsubj\nC 0-root\n{bad}\n\nD 0-root\n"


@pytest.mark.parametrize(("bad", "what"), [
    ("word", "found 1 field;"),
    ("a b c", "found 3 fields"),
    ("word nsubj", "has no '-'"),
    ("word x-nsubj", "not a non-negative integer"),
    ("word -1-nsubj", "not a non-negative integer"),
    ("word 2-", "empty relation"),
    ("word 9-dep", "head 9 is outside the sentence"),
])
def test_ptb_bad_line_names_file_and_line(tmp_path: Path, bad: str, what: str) -> None:
    path = write(tmp_path, "dev.txt", PTB_BAD.format(bad=bad))
    with pytest.raises(LIGError) as err:
        read_corpus(path, "ptb")
    msg = str(err.value)
    assert msg.startswith(f"{path}:5: ") and what in msg and "\n" not in msg
    assert "expected" in msg and "--skip-bad-lines" in msg


def test_ptb_skip_bad_lines_keeps_indices_stable(tmp_path: Path) -> None:
    path = write(tmp_path, "dev.txt", PTB_BAD.format(bad="oops"))
    corpus = read_corpus(path, "ptb", skip_bad_lines=True)
    assert [s.words for s in corpus.sentences] == [("A",), ("D",)]
    assert [s.index for s in corpus.sentences] == [0, 2]
    assert [s.line for s in corpus.sentences] == [1, 7]
    assert (corpus.bad_lines, corpus.skipped_sentences) == (1, 1)


def test_skip_counts_every_bad_line_of_a_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, "dev.txt", "A 0-root\n\nB x\nC y\n\nD 0-root\n")
    corpus = read_corpus(path, "ptb", skip_bad_lines=True)
    assert (corpus.bad_lines, corpus.skipped_sentences) == (2, 1)


CONLLU_GOOD = conll_rows(("1", "a", "0"), ("2", "b", "1"))


@pytest.mark.parametrize(("line", "what"), [
    ("3\tc\t_\t_\t_\t_\t1\tdep\t_\n", "found 9 TAB-separated fields"),
    ("3 c _ _ _ _ 1 dep _ _\n", "found 1 TAB-separated field;"),
    ("x\tc\t_\t_\t_\t_\t1\tdep\t_\t_\n", "ID 'x' is not valid"),
    ("3\tc\t_\t_\t_\t_\t_\tdep\t_\t_\n", "HEAD '_' is not a non-negative integer"),
    ("3\t\t_\t_\t_\t_\t1\tdep\t_\t_\n", "field 2 is empty"),
    (ROW.format("3", "c", "7"), "head 7 is outside the sentence"),
    (ROW.format("4", "c", "1"), "word ID 4 where ID 3 comes next"),
])
def test_conllu_bad_line_names_file_and_line(tmp_path: Path, line: str, what: str) -> None:
    text = ROW.format("1", "z", "0") + "\n# c\n" + CONLLU_GOOD + line + "\n" + CONLLU_GOOD
    path = write(tmp_path, "a.conllu", text)
    with pytest.raises(LIGError) as err:
        read_corpus(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:6: ") and what in msg and "--skip-bad-lines" in msg
    corpus = read_corpus(path, skip_bad_lines=True)
    assert [s.index for s in corpus.sentences] == [0, 2]
    assert [s.line for s in corpus.sentences] == [1, 8]
    assert (corpus.bad_lines, corpus.skipped_sentences) == (1, 1)


def test_conllx_rejects_range_ids(tmp_path: Path) -> None:
    text = CONLLX + "\n" + conll_rows(("1", "a", "0"), ("1-2", "ab", "_"))
    path = write(tmp_path, "a.conllx", text)
    with pytest.raises(LIGError, match=r"a\.conllx:8: ID '1-2' is not valid"):
        read_corpus(path)


def test_conllx_skip_bad_lines(tmp_path: Path) -> None:
    text = conll_rows(("2", "a", "0")) + "\n" + CONLLX
    corpus = read_corpus(write(tmp_path, "a.conll", text), skip_bad_lines=True)
    assert [s.index for s in corpus.sentences] == [1, 2]
    assert corpus.skipped_sentences == 1


def test_all_sentences_bad_is_no_sentences(tmp_path: Path) -> None:
    path = write(tmp_path, "dev.txt", "A x\n")
    with pytest.raises(LIGError, match="holds no sentences .format ptb."):
        read_corpus(path, "ptb", skip_bad_lines=True)


# -------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(LIGError, match=re.escape(f"data file not found: {path}")):
        read_corpus(path)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LIGError, match="is a directory"):
        read_corpus(tmp_path)


def test_unknown_format_names_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(LIGError) as err:
        read_corpus(path, "xml")
    assert "'xml'" in str(err.value) and all(f in str(err.value) for f in FORMATS)


@pytest.mark.parametrize("fmt", ["auto", "ptb", "conllu", "conllx", "text"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, "empty.txt", "\n\n  \n")
    with pytest.raises(LIGError, match=r"holds no sentences \(format (text|ptb|conllu|conllx)\)"):
        read_corpus(path, fmt)


def test_comment_only_conllu_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conllu", "# just a comment\n")
    with pytest.raises(LIGError, match=r"holds no sentences \(format conllu\)"):
        read_corpus(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.txt", b"caf\xe9 1-x\n")
    with pytest.raises(LIGError, match=r"is not UTF-8 text \(byte 3\)"):
        read_corpus(path)


def test_crlf_and_bom_are_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path, "dev.txt", b"\xef\xbb\xbfA 2-det\r\nB 0-root\r\n")
    corpus = read_corpus(path, "ptb")
    assert triples(corpus) == [(("A", "B"), (2, 0), ("det", "root"))]
