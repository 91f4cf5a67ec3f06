"""Markdown and plain-text ingestion."""

from __future__ import annotations

import pytest

from audiobook.errors import NoTextError
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.html import CODE_NOTE
from audiobook.ingest.text import MarkdownIngestor, TextIngestor, front_matter

WORDS = "The quick brown fox jumps over the lazy dog near the quiet river bank. " * 6

MARKDOWN = f"""---
title: "A Field Guide to Foxes"
author: Jane Doe, John Roe
date: 2024-05-01
lang: en
---

Intro paragraph before any heading. {WORDS}

## Habitat

{WORDS}
Soft-wrapped line that
continues here.

- First point about dens
- Second point about *burrows*

> A quotation from a naturalist.

![A red fox in snow](fox.jpg)

```python
print("never spoken")
```

### Diet

{WORDS}

| Food | Share |
|------|-------|
| Mice | 40%   |
| Fruit| 20%   |

<script>alert("never spoken")</script>
"""


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def blocks(book):
    return [(b.kind, b.text) for c in book.chapters for b in c.blocks]


def test_markdown_front_matter_chapters_and_blocks(tmp_path):
    book = MarkdownIngestor().read(write(tmp_path, "foxes.md", MARKDOWN), IngestOptions())
    assert book.title == "A Field Guide to Foxes"
    assert book.authors == ("Jane Doe", "John Roe")
    assert book.date == "2024-05-01" and book.language == "en"
    assert [(c.title, c.level) for c in book.chapters] == [
        ("A Field Guide to Foxes", 1),
        ("Habitat", 1),
        ("Diet", 2),
    ]
    got = blocks(book)
    assert ("list_item", "Second point about burrows") in got
    assert ("quote", "A quotation from a naturalist.") in got
    assert ("image_alt", "A red fox in snow") in got
    assert ("code", CODE_NOTE) in got
    # a data table is read row by row, each cell named by its column
    assert ("paragraph", "Food: Mice; Share: 40%.") in got
    assert ("paragraph", "Food: Fruit; Share: 20%.") in got
    assert any(t.endswith("Soft-wrapped line that continues here.") for _, t in got)
    assert "never spoken" not in " ".join(t for _, t in got)


def test_markdown_title_from_first_h1_then_stem(tmp_path):
    book = MarkdownIngestor().read(
        write(tmp_path, "notes.md", f"# Real Title\n\n{WORDS}\n"), IngestOptions()
    )
    assert book.title == "Real Title"
    assert "Real Title" not in " ".join(t for _, t in blocks(book))
    book = MarkdownIngestor().read(write(tmp_path, "my-notes.md", WORDS), IngestOptions())
    assert book.title == "my-notes"


def test_markdown_captions_option(tmp_path):
    path = write(tmp_path, "foxes.md", MARKDOWN)
    book = MarkdownIngestor().read(path, IngestOptions(captions=False))
    assert ("image_alt", "A red fox in snow") not in blocks(book)


def test_front_matter_parser():
    assert front_matter("+++\ntitle = 'T'\n+++\nbody") == ({"title": "T"}, "body")
    assert front_matter("no front matter") == ({}, "no front matter")


TEXT = f"""The Story of Foxes

CHAPTER I.

Into the Woods

{WORDS}

{WORDS}
Second line of the same paragraph.

Chapter 2: The Den

{WORDS}

# Afterword heading

{WORDS}
"""


def test_plain_text_chapters_and_paragraphs(tmp_path):
    book = TextIngestor().read(write(tmp_path, "story.txt", TEXT), IngestOptions())
    assert book.title == "The Story of Foxes"
    assert [c.title for c in book.chapters] == [
        "CHAPTER I: Into the Woods",
        "Chapter 2: The Den",
        "Afterword heading",
    ]
    first = book.chapters[0].blocks
    assert len(first) == 2 and first[1].text.endswith("Second line of the same paragraph.")


def test_plain_text_title_is_stem_when_first_line_is_a_paragraph(tmp_path):
    book = TextIngestor().read(write(tmp_path, "memo.txt", WORDS + "\n\n" + WORDS), IngestOptions())
    assert book.title == "memo"
    assert len(book.chapters) == 1 and len(book.chapters[0].blocks) == 2


@pytest.mark.parametrize("encoding", ["cp1252", "shift_jis", "utf-16", "utf-8-sig"])
def test_text_encodings_detected(tmp_path, encoding):
    body = (
        ("Café — “naïve” façade for €5. " * 10)
        if encoding == "cp1252"
        else ("吾輩は猫である。名前はまだ無い。" * 10)
    )
    book = TextIngestor().read(
        write(tmp_path, "enc.txt", f"Title\n\n{body}\n\n{body}", encoding), IngestOptions()
    )
    assert book.chapters[0].blocks[0].text == body.strip()


def test_markdown_shift_jis(tmp_path):
    body = "吾輩は猫である。名前はまだ無い。" * 10
    book = MarkdownIngestor().read(
        write(tmp_path, "neko.md", f"# 猫\n\n{body}\n", "shift_jis"), IngestOptions()
    )
    assert book.title == "猫" and book.chapters[0].blocks[0].text == body


@pytest.mark.parametrize(
    "name,text",
    [("e.txt", ""), ("e.txt", "\n\n  \n"), ("e.md", ""), ("e.md", "```\ncode only\n```\n")],
)
def test_empty_documents_give_one_line_error(tmp_path, name, text):
    path = write(tmp_path, name, text)
    ingestor = MarkdownIngestor() if name.endswith(".md") else TextIngestor()
    if text.startswith("```"):
        book = ingestor.read(path, IngestOptions())  # a code note is still something
        assert blocks(book) == [("code", CODE_NOTE)]
        return
    with pytest.raises(NoTextError) as info:
        ingestor.read(path, IngestOptions())
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name,content",
    [
        (
            "article.html",
            (
                "<html lang='en'><head><title>An HTML article title</title></head><body>"
                f"<article><p>{WORDS}</p><h2>Second part</h2><p>{WORDS}</p>"
                f"<h2>Third part</h2><p>{WORDS}</p></article></body></html>"
            ),
        ),
        (
            "article.md",
            (
                f"# A Markdown title\n\n{WORDS}\n\n## Second part\n\n{WORDS}\n\n"
                f"## Third part\n\n{WORDS}\n"
            ),
        ),
        (
            "article.txt",
            f"A text title\n\n{WORDS}\n\nChapter 2\n\n{WORDS}\n\nChapter 3\n\n{WORDS}\n",
        ),
    ],
)
def test_inspect_json_contract_for_html_markdown_and_text(tmp_path, name, content):
    import json

    from click.testing import CliRunner

    from audiobook.cli import cli

    path = write(tmp_path, name, content)
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info) == {"title", "authors", "language", "chapters", "total_billable_chars"}
    assert len(info["chapters"]) == 3
    for ch in info["chapters"]:
        assert set(ch) == {"title", "level", "chars", "billable_chars"}
        assert ch["chars"] >= ch["billable_chars"] > 0
    assert info["total_billable_chars"] == sum(c["billable_chars"] for c in info["chapters"])
