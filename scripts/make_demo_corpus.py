"""Write lig-jax's small demo dependency corpus (PTB Stanford-Dependencies text and CoNLL-U).

The corpus is the project's own: 120 English sentences made from hand-written templates whose
Stanford-Dependencies heads and labels are correct by construction, filled with words drawn by
`random.Random(2026)`. Some words are long or rare, so that WordPiece tokenizers such as
bert-base-uncased split them into several pieces. The same sentences are written twice:

* `lig_jax/data/demo/demo.sd.txt`: one `WORD HEAD-RELATION` per line, blank line after each
  sentence (no comments: the format has none);
* `lig_jax/data/demo/demo.conllu`: CoNLL-U with `# sent_id` and `# text` comments, one
  multi-word token line (`don't` over `do` + `n't`) and one empty node line, which readers skip.

Running the script twice gives identical files; `--check` exits 1 if the files on disk differ
from what it would write.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 2026
N_SENTENCES = 120
MIN_WORDS, MAX_WORDS = 5, 14
OUT_DIR = Path(__file__).resolve().parents[1] / "lig_jax" / "data" / "demo"
PTB_NAME, CONLLU_NAME = "demo.sd.txt", "demo.conllu"
CONLLU_HEADER = (
    "# newdoc id = lig-jax-demo",
    "# generated_by = scripts/make_demo_corpus.py (random seed 2026); do not edit by hand",
)

# Word classes a template slot `{CLASS}` draws from, and their universal POS tag.
WORDS: dict[str, tuple[str, ...]] = {
    "ADJ": ("old", "small", "quiet", "curious", "tired", "clever", "enormous", "mysterious",
            "ancient", "cheerful", "ridiculous", "magnificent", "extraordinary", "grumpy"),
    "PERSON": ("teacher", "farmer", "archaeologist", "saxophonist", "child", "doctor",
               "neighbour", "astronomer", "locksmith", "pharmacist", "librarian",
               "ventriloquist"),
    "THING": ("lighthouse", "marmalade", "violin", "window", "letter", "telescope", "sandwich",
              "umbrella", "manuscript", "harpsichord", "bicycle", "kaleidoscope", "map",
              "chandelier"),
    "PLACE": ("garden", "museum", "kitchen", "library", "harbour", "observatory", "greenhouse",
              "monastery"),
    "NAME": ("Anna", "Omar", "Lena", "Kofi", "Mei", "Tomas", "Priya", "Bartholomew",
             "Guinevere"),
    "VERBED": ("found", "painted", "opened", "carried", "repaired", "borrowed", "photographed",
               "admired", "rediscovered", "polished"),
    "VERB": ("find", "paint", "open", "carry", "repair", "borrow", "photograph", "admire",
             "polish"),
    "INTRANS": ("slept", "laughed", "waited", "arrived", "whispered", "hesitated", "sneezed"),
    "ADV": ("quickly", "quietly", "carefully", "suddenly", "happily", "reluctantly",
            "enthusiastically"),
    "INTENS": ("very", "unbelievably", "rather", "remarkably"),
}
SLOT_UPOS = {"ADJ": "ADJ", "PERSON": "NOUN", "THING": "NOUN", "PLACE": "NOUN", "NAME": "PROPN",
             "VERBED": "VERB", "VERB": "VERB", "INTRANS": "VERB", "ADV": "ADV",
             "INTENS": "ADV"}
LITERAL_UPOS = {"the": "DET", "{A}": "DET", ".": "PUNCT", ",": "PUNCT", "will": "AUX",
                "was": "AUX", "my": "PRON", "in": "ADP", "by": "ADP", "of": "ADP",
                "and": "CCONJ", "that": "SCONJ", "said": "VERB", "gave": "VERB",
                "tomorrow": "NOUN", "yesterday": "NOUN", "I": "PRON", "do": "AUX",
                "n't": "PART"}


@dataclass(frozen=True)
class Template:
    """A sentence pattern: tokens (literal word or `{CLASS}` slot, 1-based head, SD relation).

    `{A}` is the article a/an, chosen by the next word. `mwt` is an optional CoNLL-U multi-word
    token (first id, last id, surface form); `empty` an optional CoNLL-U empty node (inserted
    after word `after`, copying the form of word `copy`, with enhanced dependency `deps`).
    """

    tokens: tuple[tuple[str, int, str], ...]
    mwt: tuple[int, int, str] | None = None
    empty: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class Token:
    """One word of a generated sentence: form, 1-based head (0 = root), relation, UPOS."""

    form: str
    head: int
    rel: str
    upos: str


@dataclass(frozen=True)
class DemoSentence:
    """A generated sentence with the template's CoNLL-U extras."""

    tokens: tuple[Token, ...]
    mwt: tuple[int, int, str] | None
    empty: tuple[int, int, str] | None


TEMPLATES: tuple[Template, ...] = (
    # The old teacher found the violin .
    Template((("the", 3, "det"), ("{ADJ}", 3, "amod"), ("{PERSON}", 4, "nsubj"),
              ("{VERBED}", 0, "root"), ("the", 6, "det"), ("{THING}", 4, "dobj"),
              (".", 4, "punct"))),
    # Anna painted a map in the garden .
    Template((("{NAME}", 2, "nsubj"), ("{VERBED}", 0, "root"), ("{A}", 4, "det"),
              ("{THING}", 2, "dobj"), ("in", 2, "prep"), ("the", 7, "det"),
              ("{PLACE}", 5, "pobj"), (".", 2, "punct"))),
    # The doctor will repair my bicycle tomorrow .
    Template((("the", 2, "det"), ("{PERSON}", 4, "nsubj"), ("will", 4, "aux"),
              ("{VERB}", 0, "root"), ("my", 6, "poss"), ("{THING}", 4, "dobj"),
              ("tomorrow", 4, "tmod"), (".", 4, "punct"))),
    # The marmalade was very old .
    Template((("the", 2, "det"), ("{THING}", 5, "nsubj"), ("was", 5, "cop"),
              ("{INTENS}", 5, "advmod"), ("{ADJ}", 0, "root"), (".", 5, "punct"))),
    # Omar and Lena admired the ancient harpsichord .
    Template((("{NAME}", 4, "nsubj"), ("and", 1, "cc"), ("{NAME}", 1, "conj"),
              ("{VERBED}", 0, "root"), ("the", 7, "det"), ("{ADJ}", 7, "amod"),
              ("{THING}", 4, "dobj"), (".", 4, "punct"))),
    # My farmer said that the clever locksmith opened the window .
    Template((("my", 2, "poss"), ("{PERSON}", 3, "nsubj"), ("said", 0, "root"),
              ("that", 8, "mark"), ("the", 7, "det"), ("{ADJ}", 7, "amod"),
              ("{PERSON}", 8, "nsubj"), ("{VERBED}", 3, "ccomp"), ("the", 10, "det"),
              ("{THING}", 8, "dobj"), (".", 3, "punct"))),
    # The tired astronomer quietly slept in the observatory .
    Template((("the", 3, "det"), ("{ADJ}", 3, "amod"), ("{PERSON}", 5, "nsubj"),
              ("{ADV}", 5, "advmod"), ("{INTRANS}", 0, "root"), ("in", 5, "prep"),
              ("the", 8, "det"), ("{PLACE}", 6, "pobj"), (".", 5, "punct"))),
    # The librarian gave Mei an enormous sandwich .
    Template((("the", 2, "det"), ("{PERSON}", 3, "nsubj"), ("gave", 0, "root"),
              ("{NAME}", 3, "iobj"), ("{A}", 7, "det"), ("{ADJ}", 7, "amod"),
              ("{THING}", 3, "dobj"), (".", 3, "punct"))),
    # The lighthouse was photographed by the curious saxophonist .
    Template((("the", 2, "det"), ("{THING}", 4, "nsubjpass"), ("was", 4, "auxpass"),
              ("{VERBED}", 0, "root"), ("by", 4, "prep"), ("the", 8, "det"),
              ("{ADJ}", 8, "amod"), ("{PERSON}", 5, "pobj"), (".", 4, "punct"))),
    # Yesterday , the grumpy child carefully borrowed the map of the old archaeologist .
    Template((("yesterday", 7, "tmod"), (",", 7, "punct"), ("the", 5, "det"),
              ("{ADJ}", 5, "amod"), ("{PERSON}", 7, "nsubj"), ("{ADV}", 7, "advmod"),
              ("{VERBED}", 0, "root"), ("the", 9, "det"), ("{THING}", 7, "dobj"),
              ("of", 9, "prep"), ("the", 13, "det"), ("{ADJ}", 13, "amod"),
              ("{PERSON}", 10, "pobj"), (".", 7, "punct"))),
    # Kofi laughed unbelievably happily .
    Template((("{NAME}", 2, "nsubj"), ("{INTRANS}", 0, "root"), ("{INTENS}", 4, "advmod"),
              ("{ADV}", 2, "advmod"), (".", 2, "punct"))),
    # My cheerful pharmacist and Priya will polish a chandelier .
    Template((("my", 3, "poss"), ("{ADJ}", 3, "amod"), ("{PERSON}", 7, "nsubj"),
              ("and", 3, "cc"), ("{NAME}", 3, "conj"), ("will", 7, "aux"),
              ("{VERB}", 0, "root"), ("{A}", 9, "det"), ("{THING}", 7, "dobj"),
              (".", 7, "punct"))),
)
# I do n't admire the small umbrella .   (CoNLL-U: `2-3 don't` over `do` + `n't`)
CONTRACTION = Template(
    (("I", 4, "nsubj"), ("do", 4, "aux"), ("n't", 4, "neg"), ("{VERB}", 0, "root"),
     ("the", 7, "det"), ("{ADJ}", 7, "amod"), ("{THING}", 4, "dobj"), (".", 4, "punct")),
    mwt=(2, 3, "don't"))
# Anna found a violin and Omar a telescope .   (CoNLL-U: elided verb as empty node 6.1)
GAPPING = Template(
    (("{NAME}", 2, "nsubj"), ("{VERBED}", 0, "root"), ("{A}", 4, "det"),
     ("{THING}", 2, "dobj"), ("and", 2, "cc"), ("{NAME}", 2, "conj"), ("{A}", 8, "det"),
     ("{THING}", 6, "dep"), (".", 2, "punct")),
    empty=(6, 2, "2:conj"))
SPECIAL = {7: CONTRACTION, 12: GAPPING}  # sentence index -> template used there


# ------------------------------------------------------------------------------ generation


def _slot(word: str) -> str | None:
    """The word class of a `{CLASS}` slot (None for a literal word or `{A}`)."""
    if word.startswith("{") and word.endswith("}") and word[1:-1] in WORDS:
        return word[1:-1]
    return None


def _fill_slots(template: Template, rng: random.Random) -> list[tuple[str, str]]:
    """(form, upos) per token; words of one class are distinct within the sentence."""
    used: set[str] = set()
    filled = []
    for word, _, _ in template.tokens:
        cls = _slot(word)
        if cls is None:
            filled.append((word, LITERAL_UPOS[word]))
            continue
        choice = rng.choice([w for w in WORDS[cls] if w not in used])
        used.add(choice)
        filled.append((choice, SLOT_UPOS[cls]))
    return filled


def _articles(forms: list[str]) -> list[str]:
    """`{A}` replaced by "an" before a vowel letter, else "a"."""
    out = list(forms)
    for i, form in enumerate(out):
        if form == "{A}":
            out[i] = "an" if out[i + 1][0].lower() in "aeiou" else "a"
    return out


def make_sentence(template: Template, rng: random.Random) -> DemoSentence:
    """One sentence from `template`, first word capitalised."""
    filled = _fill_slots(template, rng)
    forms = _articles([form for form, _ in filled])
    forms[0] = forms[0][:1].upper() + forms[0][1:]
    tokens = tuple(Token(form, head, rel, upos) for form, (_, upos), (_, head, rel)
                   in zip(forms, filled, template.tokens, strict=True))
    return DemoSentence(tokens, template.mwt, template.empty)


def _check_sentence(sentence: DemoSentence) -> None:
    """Fail loudly if a template produced a sentence of bad length or a bad tree."""
    n = len(sentence.tokens)
    if not MIN_WORDS <= n <= MAX_WORDS:
        raise AssertionError(f"sentence of {n} words: {sentence}")
    heads = [tok.head for tok in sentence.tokens]
    if heads.count(0) != 1 or not all(0 <= h <= n for h in heads):
        raise AssertionError(f"bad heads {heads}: {sentence}")


def template_order(rng: random.Random) -> list[Template]:
    """Templates for all sentences: shuffled rounds over `TEMPLATES`, `SPECIAL` at fixed spots."""
    order: list[Template] = []
    while len(order) < N_SENTENCES:
        round_ = list(TEMPLATES)
        rng.shuffle(round_)
        order.extend(round_)
    order = order[:N_SENTENCES - len(SPECIAL)]
    for index in sorted(SPECIAL):
        order.insert(index, SPECIAL[index])
    return order


def make_corpus(seed: int = SEED) -> list[DemoSentence]:
    """All demo sentences, deterministic for a given seed."""
    rng = random.Random(seed)
    sentences = [make_sentence(t, rng) for t in template_order(rng)]
    for sentence in sentences:
        _check_sentence(sentence)
    return sentences


# -------------------------------------------------------------------------------- writing


def to_ptb(sentences: Sequence[DemoSentence]) -> str:
    """PTB Stanford-Dependencies text: `WORD HEAD-RELATION` lines, blank line after each."""
    blocks = ["".join(f"{t.form} {t.head}-{t.rel}\n" for t in s.tokens) for s in sentences]
    return "\n".join(blocks) + "\n"


def _surface_text(sentence: DemoSentence) -> str:
    """The `# text` of a sentence: forms joined by spaces, multi-word tokens as one form."""
    forms = [t.form for t in sentence.tokens]
    if sentence.mwt:
        first, last, surface = sentence.mwt
        forms[first - 1:last] = [surface]
    return " ".join(forms)


def _conllu_word(word_id: int, tok: Token) -> str:
    """The CoNLL-U line of one word."""
    return "\t".join((str(word_id), tok.form, tok.form.lower(), tok.upos, "_", "_",
                      str(tok.head), tok.rel, "_", "_"))


def _conllu_lines(sentence: DemoSentence) -> list[str]:
    """Token lines of one sentence, with its multi-word token and empty node lines."""
    lines = []
    for word_id, tok in enumerate(sentence.tokens, start=1):
        if sentence.mwt and sentence.mwt[0] == word_id:
            first, last, surface = sentence.mwt
            lines.append("\t".join((f"{first}-{last}", surface) + ("_",) * 8))
        lines.append(_conllu_word(word_id, tok))
        if sentence.empty and sentence.empty[0] == word_id:
            after, copy, deps = sentence.empty
            src = sentence.tokens[copy - 1]
            lines.append("\t".join((f"{after}.1", src.form, src.form.lower(), src.upos, "_",
                                    "_", "_", "_", deps, "_")))
    return lines


def to_conllu(sentences: Sequence[DemoSentence]) -> str:
    """CoNLL-U text; the header comments open the first sentence's comment lines."""
    blocks = []
    for index, sentence in enumerate(sentences):
        header = list(CONLLU_HEADER) if index == 0 else []
        comments = header + [f"# sent_id = demo-{index + 1}",
                             f"# text = {_surface_text(sentence)}"]
        blocks.append("".join(f"{line}\n" for line in comments + _conllu_lines(sentence)))
    return "\n".join(blocks) + "\n"


def rendered(out_dir: Path = OUT_DIR) -> dict[Path, str]:
    """The file contents this script writes, by path."""
    sentences = make_corpus()
    return {out_dir / PTB_NAME: to_ptb(sentences), out_dir / CONLLU_NAME: to_conllu(sentences)}


def stale_files(files: dict[Path, str]) -> list[Path]:
    """The paths whose content on disk differs from `files` (or that are missing)."""
    return [p for p, text in files.items()
            if not p.is_file() or p.read_text(encoding="utf-8") != text]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the demo corpus files, or with `--check` report whether they are up to date."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the files on disk differ from what would be written")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR,
                        help=f"folder for {PTB_NAME} and {CONLLU_NAME} (default: %(default)s)")
    args = parser.parse_args(argv)
    files = rendered(args.out_dir)
    if args.check:
        stale = stale_files(files)
        for path in stale:
            print(f"out of date: {path} (run scripts/make_demo_corpus.py)", file=sys.stderr)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
