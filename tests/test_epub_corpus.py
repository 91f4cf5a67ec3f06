"""The EPUBs of the shared corpus, against the facts its MANIFEST records.

"Follows the TOC facts" means, for every book with a usable TOC: one chapter per TOC
entry (every nav <li> / NCX navPoint at every depth, as counted in the MANIFEST), and
the first and last chapter titles equal the MANIFEST's first and last TOC labels. Where
nav and NCX disagree the nav wins (the MANIFEST's nav facts). Titles are the book's own
TOC labels, even where they are odd (Sherlock's "BY" line).
"""

from __future__ import annotations

import pytest

from audiobook.errors import CorruptDocument, InputError
from audiobook.ingest import IngestOptions, read_book
from audiobook.ingest.epub import read_epub

pytestmark = pytest.mark.corpus

# file: (count, first title, last title, book title, authors, language)
FACTS = {
    "gutenberg-1661-adventures-of-sherlock-holmes.epub": (
        16,
        "THE ADVENTURES OF SHERLOCK HOLMES",
        "XII. THE ADVENTURE OF THE COPPER BEECHES",
        "The Adventures of Sherlock Holmes",
        ("Arthur Conan Doyle",),
        "en",
    ),
    "gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub": (
        51,
        "I",
        "Section 5. General Information About Project Gutenberg-tm electronic works.",
        "Voyage au Centre de la Terre",
        ("Jules Verne",),
        "fr",
    ),
    "row-your-boat-epub2-ncx-named-navigation-xml.epub": (
        1,
        "Row, Row, Row Your Boat",
        "Row, Row, Row Your Boat",
        "Row, Row, Row Your Boat",
        ("Unknown Person",),
        "en-US",
    ),
    "idpf-moby-dick.epub": (
        141,
        "Moby-Dick",
        "Copyright Page",
        "Moby-Dick",
        ("Herman Melville",),
        "en-US",
    ),
    "idpf-childrens-literature.epub": (
        31,
        "SECTION IV FAIRY STORIES—MODERN FANTASTIC TALES",
        "204 THE KING OF THE GOLDEN RIVER OR THE BLACK BROTHERS",
        "Children's Literature",
        ("Charles Madison Curry", "Erle Elsworth Clippinger"),
        "en",
    ),
    "idpf-georgia-pls-ssml.epub": (10, "GEORGIA", "History", "Georgia", ("Various",), "en-US"),
    "idpf-haruko-html-jpeg.epub": (
        2,
        "ハルコさんの彼氏/Haruko San No Kareshi",
        "この文書について/About this document",
        "ハルコさんの彼氏",
        (),
        "ja-jp",
    ),
    "idpf-kusamakura-japanese-vertical-writing.epub": (
        14,
        "一",
        "この文書について",
        "草枕",
        ("夏目 漱石",),
        "ja-jp",
    ),
    "idpf-regime-anticancer-arabic.epub": (
        3,
        "Couverture",
        "Commencer la lecture",
        "Le Vrai Régime anti-cancer",
        ("Pr David Khayat", "Nathalie Hutter-Lardeau", "Marina Khalil Fayad"),
        "ar",
    ),
    "se-leaves-of-grass.epub": (
        718,
        "Titlepage",
        "Uncopyright",
        "Leaves of Grass",
        ("Walt Whitman",),
        "en-US",
    ),
    "se-devils-dictionary.epub": (
        32,
        "Titlepage",
        "Uncopyright",
        "The Devil’s Dictionary",
        ("Ambrose Bierce",),
        "en-US",
    ),
    "w3c-pub-xml-non-validating_unclosed.epub": (
        1,
        "Link to main page",
        "Link to main page",
        "pub-xml-non-validating_unclosed",
        ("Dave Cramer",),
        "en",
    ),
    "w3c-nav-spine_not-in-spine.epub": (
        2,
        "Test passes if you can see two links (first link)",
        "Test passes if you can see two links (second link)",
        "nav-spine_not-in-spine",
        ("Dave Cramer",),
        "en",
    ),
}

_cache: dict[str, object] = {}


def _read(corpus, name):
    """The whole book, matter kept: the facts are about every TOC entry."""
    if name not in _cache:
        _cache[name] = read_epub(corpus("epub", name), IngestOptions(skip_matter=False))
    return _cache[name]


@pytest.mark.parametrize("name", sorted(FACTS))
def test_toc_facts(corpus, name):
    count, first, last, title, authors, language = FACTS[name]
    book = _read(corpus, name)
    assert len(book.chapters) == count
    assert book.chapters[0].title == first
    assert book.chapters[-1].title == last
    assert book.title == title
    assert book.authors == authors
    assert book.language == language
    assert all(c.level >= 1 for c in book.chapters)
    assert any(c.blocks for c in book.chapters)


def test_useless_toc_gives_chapters_from_the_text(corpus):
    book = read_epub(corpus("epub", "gutenberg-23962-xiyouji-zh.epub"))
    assert book.title == "西遊記" and book.language == "zh"
    assert book.authors == ("Cheng'en Wu",)
    body = [c for c in book.chapters if c.role == "body"]
    assert len(body) > 6
    assert not any("Gutenberg" in c.title or "Section" in c.title for c in body)
    assert body[0].title.startswith("第一回")
    assert len(body) == 100 and all(c.title.startswith("第") for c in body)
    assert any("licence" in w for w in book.warnings)


def test_zero_bytes_is_an_input_error(corpus):
    with pytest.raises(CorruptDocument) as err:
        read_book(corpus("epub", "corrupt-zero-bytes.epub"))
    assert isinstance(err.value, InputError)
    assert "not a zip" in str(err.value) and "\n" not in str(err.value)


def test_missing_media_is_reported_not_fatal(corpus):
    book = _read(corpus, "idpf-kusamakura-japanese-vertical-writing.epub")
    missing = [w for w in book.warnings if "missing" in w]
    assert any("fmse004b.mp3" in w for w in missing)
    assert any("ulnr0036.mp3" in w for w in missing)
    assert book.direction == "rtl"
    # ruby: the reading (rt) is not read after its base text
    text = "".join(c.text for c in book.chapters)
    assert "山路を登りながら" in text and "やまみち" not in text


def test_malformed_xhtml_is_recovered(corpus):
    book = _read(corpus, "w3c-pub-xml-non-validating_unclosed.epub")
    assert "This paragraph has an unclosed tag." in [b.text for b in book.chapters[0].blocks]
    assert any("content_001.xhtml" in w and "malformed" in w for w in book.warnings)


def test_nav_not_in_spine_is_not_a_chapter(corpus):
    book = _read(corpus, "w3c-nav-spine_not-in-spine.epub")
    text = " ".join(c.text for c in book.chapters)
    assert text.startswith("Test passes if you can access the two links")
    # the nav's link texts are chapter titles, never spoken text
    assert "(first link)" not in text


def test_covers(corpus):
    assert _read(corpus, "idpf-moby-dick.epub").cover.media_type == "image/jpeg"
    assert _read(corpus, "idpf-childrens-literature.epub").cover.media_type == "image/png"
    assert _read(corpus, "idpf-regime-anticancer-arabic.epub").cover.media_type == "image/jpeg"
    assert _read(corpus, "se-leaves-of-grass.epub").cover is None  # SVG only


def test_notes_and_markers(corpus):
    book = _read(corpus, "idpf-georgia-pls-ssml.epub")
    history = book.chapters[-1]
    assert len(history.footnotes) >= 10
    assert book.direction is None
    # the PLS lexicon is read now (tests/test_pronunciation.py), not reported as unread
    assert [lx.source for lx in book.lexicons] == ["EPUB/lexicon/en.pls"]
    moby = _read(corpus, "idpf-moby-dick.epub")
    assert moby.chapters[1].footnotes[0].text == "These have been corrected in this EPUB3 edition."


def test_skip_matter_on_real_books(corpus):
    leaves = read_epub(corpus("epub", "se-leaves-of-grass.epub"), IngestOptions(skip_matter=True))
    names = [c.title for c in leaves.chapters]
    assert "Imprint" not in names and "Uncopyright" not in names and "Colophon" not in names
    assert "Titlepage" not in names and "Song of Myself" in names
    sherlock = read_epub(
        corpus("epub", "gutenberg-1661-adventures-of-sherlock-holmes.epub"),
        IngestOptions(skip_matter=True),
    )
    text = " ".join(c.text for c in sherlock.chapters)
    assert "This eBook is for the use of anyone anywhere" not in text
    assert "START OF THIS PROJECT GUTENBERG" not in text
    assert "END OF THIS PROJECT GUTENBERG" not in text
    assert "To Sherlock Holmes she is always the woman." in text
    voyage = read_epub(
        corpus("epub", "gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub"),
        IngestOptions(skip_matter=True),
    )
    assert (
        voyage.chapters[-1].title != FACTS["gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub"][2]
    )
    assert not any("Gutenberg" in c.title for c in voyage.chapters)


def test_long_books_keep_their_text(corpus):
    moby = _read(corpus, "idpf-moby-dick.epub")
    text = " ".join(c.text for c in moby.chapters)
    assert "Call me Ishmael." in text
    assert len(text) > 1_100_000
    loomings = next(c for c in moby.chapters if c.title == "Chapter 1. Loomings.")
    assert "Call me Ishmael." in loomings.text
    assert "Call me Ishmael." not in moby.chapters[5].text
