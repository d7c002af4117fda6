"""Readers for dependency corpora: PTB Stanford-Dependencies text, CoNLL-U, CoNLL-X, plain text.

`read_corpus(path, fmt)` returns a `Corpus` of `Sentence`s (words, 1-based heads with 0 = root,
relation labels). Every problem a user can cause is a one-line `LIGError`; a malformed line is
named as `PATH:LINE: what is wrong; expected ...`. With `skip_bad_lines=True` the sentences
holding such lines are left out instead (their indices stay reserved, so ids are stable).

CoNLL-U and CoNLL-X blocks are first checked line by line here (the `conllu` package does not
report line numbers), then handed to `conllu` for the field parsing.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import conllu

from lig_jax.errors import LIGError, choice_error

FORMATS = ("auto", "ptb", "conllu", "conllx", "text")
DEMO_NAME = "demo"

_DEMO_DIR = pathlib.Path(__file__).resolve().parent / "demo"
_DEMO_FILES = {"ptb": "demo.sd.txt", "conllu": "demo.conllu"}
_EXTENSIONS = {".conllu": "conllu", ".conll": "conllx", ".conllx": "conllx"}
_PTB_LABEL = re.compile(r"[0-9]+-\S+")
_UINT = re.compile(r"[0-9]+")
_CONLLU_ID = re.compile(r"[0-9]+(?:-[0-9]+|\.[0-9]+)?")
_CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps",
                  "misc")
_CONLLX_FIELDS = ("id", "form", "lemma", "cpostag", "postag", "feats", "head", "deprel",
                  "phead", "pdeprel")
_PTB_EXPECTED = "'WORD HEAD-RELATION' (two fields, e.g. 'dog 2-nsubj')"
_CONLLU_EXPECTED = ("10 TAB-separated fields ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS "
                    "MISC")
_CONLLX_EXPECTED = ("10 TAB-separated fields ID FORM LEMMA CPOSTAG POSTAG FEATS HEAD DEPREL "
                    "PHEAD PDEPREL")
_SKIP_HINT = "Use --skip-bad-lines to leave such sentences out"


@dataclass(frozen=True)
class Sentence:
    """One sentence of a corpus.

    `index` is the 0-based position among all sentences of the file (skipped ones included),
    `heads` the 1-based head word index per word (0 = root) and `relns` the relation label per
    word; both are None for plain text. `line` is the 1-based line where the sentence starts.
    """

    index: int
    words: tuple[str, ...]
    heads: tuple[int, ...] | None
    relns: tuple[str, ...] | None
    line: int


@dataclass(frozen=True)
class Corpus:
    """The sentences read from one file, in file order, and what was left out.

    `format` is the format actually read ("ptb", "conllu", "conllx" or "text"); `bad_lines` is
    the number of malformed lines seen and `skipped_sentences` the number of sentences left out
    because of them (both non-zero only with `skip_bad_lines`).
    """

    path: str
    format: str
    sentences: tuple[Sentence, ...]
    bad_lines: int
    skipped_sentences: int


@dataclass(frozen=True)
class _Problem:
    """A malformed line: its 1-based number, what is wrong and what the format wants."""

    line: int
    what: str
    expected: str


@dataclass(frozen=True)
class _Block:
    """Consecutive non-blank lines: `start` is the first line's number, `lines` (number, text)."""

    start: int
    lines: tuple[tuple[int, str], ...]


_Parsed = tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]


# ---------------------------------------------------------------------------------- files


def demo_path(fmt: str = "ptb") -> pathlib.Path:
    """The shipped demo corpus file in format `fmt` ("ptb" or "conllu")."""
    if fmt not in _DEMO_FILES:
        raise choice_error("demo corpus format", fmt, _DEMO_FILES)
    return _DEMO_DIR / _DEMO_FILES[fmt]


def _resolve(path: str | os.PathLike, fmt: str = "auto") -> str:
    """`path` as a string, with the name `DEMO_NAME` replaced by the shipped demo file."""
    if isinstance(path, str) and path == DEMO_NAME:
        return str(demo_path("conllu" if fmt == "conllu" else "ptb"))
    return os.fspath(path)


def _read_lines(path: str) -> list[str]:
    """The file's lines (without line ends); one-line `LIGError` if it cannot be read as text."""
    p = pathlib.Path(path)
    if not p.exists():
        raise LIGError(f"data file not found: {path}")
    if p.is_dir():
        raise LIGError(f"{path} is a directory, not a data file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LIGError(f"cannot read data file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LIGError(f"{path} is not UTF-8 text (byte {e.start})") from None
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


def _blocks(lines: Sequence[str]) -> Iterator[_Block]:
    """Runs of non-blank lines, separated by one or more blank lines."""
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            yield _Block(current[0][0], tuple(current))
            current = []
    if current:
        yield _Block(current[0][0], tuple(current))


# ---------------------------------------------------------------------------- detection


def _detect_from_lines(path: str, lines: Sequence[str]) -> str:
    """The format of a file from its extension, else from its first non-comment line."""
    by_ext = _EXTENSIONS.get(pathlib.Path(path).suffix.lower())
    if by_ext:
        return by_ext
    first = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), None)
    if first is None:
        return "text"
    if len(first.split("\t")) == 10:
        return "conllu"
    fields = first.split()
    if len(fields) == 2 and _PTB_LABEL.fullmatch(fields[1]):
        return "ptb"
    return "text"


def detect_format(path: str | os.PathLike) -> str:
    """The format "auto" reads `path` as: "ptb", "conllu", "conllx" or "text".

    `.conllu` files are CoNLL-U, `.conll`/`.conllx` CoNLL-X. Otherwise the first non-blank line
    not starting with '#' decides: 10 TAB-separated fields -> "conllu" (which also reads CoNLL-X
    with integer ids), two fields with the second like `2-nsubj` -> "ptb", else "text".
    """
    resolved = _resolve(path)
    return _detect_from_lines(resolved, _read_lines(resolved))


# ------------------------------------------------------------------------- sentence checks


def _check_tree(ids: Sequence[int], heads: Sequence[int], lines: Sequence[int]) -> list[_Problem]:
    """Word IDs must run 1..n in order and every head must lie in 0..n."""
    n = len(ids)
    problems = []
    rows = zip(ids, heads, lines, strict=True)
    for position, (word_id, head, line) in enumerate(rows, start=1):
        if word_id != position:
            problems.append(_Problem(line, f"word ID {word_id} where ID {position} comes next",
                                     "word IDs 1, 2, 3, ... in order"))
        elif not 0 <= head <= n:
            problems.append(_Problem(line, f"head {head} is outside the sentence",
                                     f"a head between 0 (root) and {n}, the number of words"))
    return problems


# ---------------------------------------------------------------------------------- ptb


def _count(n: int, noun: str) -> str:
    """`n noun` with the noun in plural unless n is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ptb_line_problem(number: int, line: str) -> _Problem | None:
    """What is wrong with one `WORD HEAD-RELN` line, or None."""
    fields = line.split()
    if len(fields) != 2:
        return _Problem(number, f"found {_count(len(fields), 'field')}", _PTB_EXPECTED)
    label = fields[1]
    if "-" not in label:
        return _Problem(number, f"label {label!r} has no '-'", _PTB_EXPECTED)
    head, reln = label.split("-", 1)
    if not _UINT.fullmatch(head):
        return _Problem(number, f"head {head!r} is not a non-negative integer", _PTB_EXPECTED)
    if not reln:
        return _Problem(number, f"label {label!r} has an empty relation", _PTB_EXPECTED)
    return None


def _parse_ptb(block: _Block) -> _Parsed | list[_Problem]:
    """Words, heads and relations of one PTB block, or the block's problems."""
    problems = [p for n, ln in block.lines if (p := _ptb_line_problem(n, ln)) is not None]
    if problems:
        return problems
    pairs = [line.split() for _, line in block.lines]
    words = tuple(word for word, _ in pairs)
    splits = [label.split("-", 1) for _, label in pairs]
    heads = tuple(int(head) for head, _ in splits)
    numbers = [n for n, _ in block.lines]
    problems = _check_tree(range(1, len(words) + 1), heads, numbers)
    return problems or (words, heads, tuple(reln for _, reln in splits))


# ------------------------------------------------------------------------ conllu / conllx


def _token_line_problem(number: int, line: str, conllx: bool) -> _Problem | None:
    """What is wrong with one CoNLL-U (or CoNLL-X) token line, or None."""
    expected = _CONLLX_EXPECTED if conllx else _CONLLU_EXPECTED
    fields = line.split("\t")
    if len(fields) != 10:
        return _Problem(number, f"found {_count(len(fields), 'TAB-separated field')}", expected)
    if "" in fields:
        return _Problem(number, f"field {fields.index('') + 1} is empty", expected)
    word_id, head = fields[0], fields[6]
    id_pattern = _UINT if conllx else _CONLLU_ID
    if not id_pattern.fullmatch(word_id):
        what = "an integer" if conllx else "an integer, a range like 3-4 or a decimal like 5.1"
        return _Problem(number, f"ID {word_id!r} is not valid", f"an ID that is {what}")
    if _UINT.fullmatch(word_id) and not _UINT.fullmatch(head):
        return _Problem(number, f"HEAD {head!r} is not a non-negative integer",
                        "an integer HEAD (0 = root) for every word")
    return None


def _token_lines(block: _Block) -> list[tuple[int, str]]:
    """The block's lines that are not '#' comments."""
    return [(n, ln) for n, ln in block.lines if not ln.startswith("#")]


def _word_lines(block: _Block) -> list[tuple[int, str]]:
    """The block's token lines whose ID is an integer (words, not ranges or empty nodes)."""
    return [(n, ln) for n, ln in _token_lines(block) if _UINT.fullmatch(ln.split("\t")[0])]


def _conll_problems(block: _Block, conllx: bool) -> list[_Problem]:
    """Line-level and tree-level problems of one CoNLL-U/CoNLL-X block."""
    tokens = _token_lines(block)
    problems = [p for n, ln in tokens if (p := _token_line_problem(n, ln, conllx)) is not None]
    if problems:
        return problems
    words = _word_lines(block)
    if not words:
        return [_Problem(tokens[0][0], "sentence has no word with an integer ID",
                         "at least one word line")]
    fields = [ln.split("\t") for _, ln in words]
    return _check_tree([int(f[0]) for f in fields], [int(f[6]) for f in fields],
                       [n for n, _ in words])


def _parse_conll(block: _Block, path: str, conllx: bool) -> _Parsed | list[_Problem]:
    """Words, heads and relations of one checked block, parsed by `conllu`."""
    problems = _conll_problems(block, conllx)
    if problems:
        return problems
    text = "\n".join(line for _, line in block.lines) + "\n\n"
    fields = _CONLLX_FIELDS if conllx else _CONLLU_FIELDS
    try:
        (sentence,) = conllu.parse(text, fields=fields)
    except Exception as e:  # conllu's own errors become one-line user errors
        raise LIGError(f"{path}:{block.start}: conllu could not parse this sentence: {e}") from None
    words = [tok for tok in sentence if isinstance(tok["id"], int)]
    return (tuple(tok["form"] for tok in words), tuple(tok["head"] for tok in words),
            tuple(tok["deprel"] for tok in words))


# ---------------------------------------------------------------------------- reading


def _read_text_format(path: str, lines: Sequence[str]) -> Corpus:
    """One sentence per non-blank line, words split at whitespace."""
    sentences = []
    for number, line in enumerate(lines, start=1):
        words = tuple(line.split())
        if words:
            sentences.append(Sentence(len(sentences), words, None, None, number))
    return Corpus(path, "text", tuple(sentences), 0, 0)


def _bad_line_error(path: str, problem: _Problem) -> LIGError:
    """The one-line error for a malformed line."""
    return LIGError(f"{path}:{problem.line}: {problem.what}; expected {problem.expected}. "
                    f"{_SKIP_HINT}")


def _block_parser(fmt: str, path: str) -> Callable[[_Block], _Parsed | list[_Problem]]:
    """The function that turns a block of format `fmt` into words/heads/relations or problems."""
    if fmt == "ptb":
        return _parse_ptb
    return lambda block: _parse_conll(block, path, conllx=fmt == "conllx")


def _has_tokens(block: _Block, fmt: str) -> bool:
    """False for a CoNLL block made of '#' comments only (not a sentence)."""
    return fmt == "ptb" or bool(_token_lines(block))


def _read_blocks(path: str, fmt: str, lines: Sequence[str], skip_bad_lines: bool) -> Corpus:
    """Read a dependency format; bad sentences raise or, with `skip_bad_lines`, are counted."""
    parse = _block_parser(fmt, path)
    sentences: list[Sentence] = []
    bad_lines = skipped = index = 0
    for block in (b for b in _blocks(lines) if _has_tokens(b, fmt)):
        result = parse(block)
        if isinstance(result, list):
            if not skip_bad_lines:
                raise _bad_line_error(path, result[0])
            bad_lines += len(result)
            skipped += 1
        else:
            words, heads, relns = result
            sentences.append(Sentence(index, words, heads, relns, block.start))
        index += 1
    return Corpus(path, fmt, tuple(sentences), bad_lines, skipped)


def _no_sentences_error(corpus: Corpus) -> LIGError:
    """The error for a corpus without a single usable sentence."""
    message = f"{corpus.path} holds no sentences (format {corpus.format})"
    if corpus.skipped_sentences:
        message += (f"; all {corpus.skipped_sentences} sentences had bad lines and were "
                    "left out")
    return LIGError(message)


def read_corpus(path: str | os.PathLike, fmt: str = "auto", *,
                skip_bad_lines: bool = False) -> Corpus:
    """Read a corpus file in format `fmt` (one of `FORMATS`; "auto" uses `detect_format`).

    `path` may be `DEMO_NAME` for the shipped demo corpus (its CoNLL-U version when
    `fmt="conllu"`, else the PTB one). Raises `LIGError` for a missing, unreadable or non-UTF-8
    file, an unknown format, a malformed line (unless `skip_bad_lines`) and a file without
    sentences.
    """
    if fmt not in FORMATS:
        raise choice_error("corpus format", fmt, FORMATS)
    resolved = _resolve(path, fmt)
    lines = _read_lines(resolved)
    if fmt == "auto":
        fmt = _detect_from_lines(resolved, lines)
    if fmt == "text":
        corpus = _read_text_format(resolved, lines)
    else:
        corpus = _read_blocks(resolved, fmt, lines, skip_bad_lines)
    if not corpus.sentences:
        raise _no_sentences_error(corpus)
    return corpus
