"""The SSML templates shipped with audiobook (jinja2, autoescaped); see audiobook.ssml."""
