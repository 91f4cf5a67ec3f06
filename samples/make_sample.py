"""Build samples/aesop-fables.epub, the demo book, from the text below.

The fables are from George Fyler Townsend's translation of Aesop (1867), in the public
domain. Run with the project's Python: `python samples/make_sample.py`. The EPUB is
committed, so `make demo` does not need this script; it is here so the sample can be
rebuilt and its origin checked.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ebooklib import epub

FABLES: list[tuple[str, list[str]]] = [
    ("The Fox and the Grapes", [
        "A famished fox saw some clusters of ripe black grapes hanging from a trellised "
        "vine. She resorted to all her tricks to get at them, but wearied herself in vain, "
        "for she could not reach them. At last she turned away, hiding her disappointment "
        "and saying: \u201cThe Grapes are sour, and not ripe as I thought.\u201d",
    ]),
    ("The Hare and the Tortoise", [
        "A hare one day ridiculed the short feet and slow pace of the tortoise, who replied, "
        "laughing: \u201cThough you be swift as the wind, I will beat you in a race.\u201d "
        "The hare, believing her assertion to be simply impossible, assented to the proposal; "
        "and they agreed that the fox should choose the course and fix the goal.",
        "On the day appointed for the race the two started together. The tortoise never for "
        "a moment stopped, but went on with a slow but steady pace straight to the end of the "
        "course. The hare, lying down by the wayside, fell fast asleep. At last waking up, "
        "and moving as fast as he could, he saw the tortoise had reached the goal, and was "
        "comfortably dozing after her fatigue.",
        "Slow but steady wins the race.",
    ]),
    ("The Lion and the Mouse", [
        "A lion was awakened from sleep by a mouse running over his face. Rising up angrily, "
        "he caught him and was about to kill him, when the mouse piteously entreated, saying: "
        "\u201cIf you would only spare my life, I would be sure to repay your kindness.\u201d "
        "The lion laughed and let him go.",
        "It happened shortly after this that the lion was caught by some hunters, who bound "
        "him by strong ropes to the ground. The mouse, recognizing his roar, came and gnawed "
        "the rope with his teeth, and set him free, exclaiming: \u201cYou ridiculed the idea "
        "of my ever being able to help you, expecting to receive from me any repayment of "
        "your favor; now you know that it is possible for even a mouse to confer benefits on "
        "a lion.\u201d",
    ]),
    ("The Boy Who Cried Wolf", [
        "A shepherd-boy, who watched a flock of sheep near a village, brought out the "
        "villagers three or four times by crying out, \u201cWolf! Wolf!\u201d and when his "
        "neighbors came to help him, laughed at them for their pains.",
        "The wolf, however, did truly come at last. The shepherd-boy, now really alarmed, "
        "shouted in an agony of terror: \u201cPray, do come and help me; the wolf is killing "
        "the sheep\u201d; but no one paid any heed to his cries, nor rendered any assistance. "
        "The wolf, having no cause of fear, at his leisure lacerated or destroyed the whole "
        "flock.",
        "There is no believing a liar, even when he speaks the truth.",
    ]),
    ("The Ant and the Grasshopper", [
        "In a field one summer\u2019s day a grasshopper was hopping about, chirping and "
        "singing to its heart\u2019s content. An ant passed by, bearing along with great "
        "toil an ear of corn he was taking to the nest.",
        "\u201cWhy not come and chat with me,\u201d said the grasshopper, \u201cinstead of "
        "toiling and moiling in that way?\u201d \u201cI am helping to lay up food for the "
        "winter,\u201d said the ant, \u201cand recommend you to do the same.\u201d When the "
        "winter came the grasshopper had no food, and found itself dying of hunger.",
        "It is best to prepare for the days of necessity.",
    ]),
]


def _cover_png(width: int = 400, height: int = 600) -> bytes:
    """A plain two-colour cover, written without an imaging library."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF
        )

    rows = []
    for y in range(height):
        colour = b"\x8b\x45\x13" if y < height * 0.62 else b"\xf5\xde\xb3"
        rows.append(b"\x00" + colour * width)
    raw = zlib.compress(b"".join(rows), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def build(dest: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("urn:audiobook:sample:aesop-fables")
    book.set_title("Aesop\u2019s Fables: A Selection")
    book.set_language("en")
    book.add_author("Aesop")
    book.add_metadata("DC", "contributor", "George Fyler Townsend (translator)")
    book.add_metadata("DC", "date", "1867")
    book.set_cover("cover.png", _cover_png())
    chapters = []
    for i, (title, paragraphs) in enumerate(FABLES, 1):
        item = epub.EpubHtml(title=title, file_name=f"fable{i:02d}.xhtml", lang="en")
        body = "".join(f"<p>{p}</p>" for p in paragraphs)
        item.content = f"<h1>{title}</h1>{body}"
        book.add_item(item)
        chapters.append(item)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    tmp = dest.with_suffix(".tmp")
    epub.write_epub(str(tmp), book)
    tmp.replace(dest)


if __name__ == "__main__":
    build(Path(__file__).resolve().parent / "aesop-fables.epub")
