"""Language detection where a document declares none; a declared language wins."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.ingest import read_book
from audiobook.ingest._language import detect_language
from tests.pdfgen import lines_at, simple_pdf

GERMAN = (
    "Es war einmal ein kleines Haus am Rande des Waldes, in dem eine alte Frau mit ihrer "
    "Katze wohnte. Jeden Morgen ging sie hinaus in den Garten, um die Blumen zu gießen "
    "und den Vögeln zuzuhören, die in den Bäumen sangen. "
)
FRENCH = (
    "Il était une fois une petite maison au bord de la forêt, où vivait une vieille femme "
    "avec son chat. Chaque matin, elle sortait dans le jardin pour arroser les fleurs et "
    "écouter les oiseaux qui chantaient dans les arbres. "
)


def page(body: str, lang: str = "") -> str:
    attr = f' lang="{lang}"' if lang else ""
    return (
        f"<html{attr}><head><title>T</title></head><body><article>"
        + (f"<p>{body}</p>" * 4)
        + "</article></body></html>"
    )


def test_undeclared_web_pages_get_their_language(tmp_path: Path) -> None:
    for text, lang in ((GERMAN, "de"), (FRENCH, "fr")):
        path = tmp_path / f"{lang}.html"
        path.write_text(page(text), "utf-8")
        book = read_book(path)
        assert (book.language, book.language_detected) == (lang, True)


def test_a_declared_language_wins(tmp_path: Path) -> None:
    path = tmp_path / "declared.html"
    path.write_text(page(FRENCH, lang="en-GB"), "utf-8")
    book = read_book(path)
    assert (book.language, book.language_detected) == ("en-GB", False)


def test_an_undeclared_pdf_gets_its_language_and_inspect_says_so(tmp_path: Path) -> None:
    sentences = [s.strip() + "." for s in GERMAN.split(".") if s.strip()] * 6
    path = tmp_path / "de.pdf"
    path.write_bytes(simple_pdf([lines_at(72, 700, sentences)]))
    assert read_book(path).language == "de"
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 0 and "[de, detected]" in r.output


def test_too_little_text_is_no_guess() -> None:
    assert detect_language("Hallo Welt") is None
    assert detect_language("12345 67890 " * 40) is None
    assert detect_language(GERMAN * 2) == "de"


def test_arabic_varieties_count_as_arabic() -> None:
    text = (
        "كان يا ما كان في قديم الزمان بيت صغير على حافة الغابة تسكنه امرأة عجوز مع قطتها. "
        "وفي كل صباح كانت تخرج إلى الحديقة لتسقي الزهور وتستمع إلى العصافير. "
    ) * 3
    assert detect_language(text) == "ar"
