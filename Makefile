# Everything a fresh machine needs comes from here: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
AUDIOBOOK := $(BIN)/audiobook

BOOKS_DIR ?= books
OUT_DIR   ?= out
# one state store (and audio cache) per output folder; parallel make jobs share it safely
STATE_DIR ?= $(OUT_DIR)/.audiobook
BOOKS     := $(wildcard $(BOOKS_DIR)/*.epub $(BOOKS_DIR)/*.pdf $(BOOKS_DIR)/*.html $(BOOKS_DIR)/*.md $(BOOKS_DIR)/*.txt)
OUTPUTS   := $(patsubst $(BOOKS_DIR)/%,$(OUT_DIR)/%.m4b,$(basename $(BOOKS)))
# extra arguments for every conversion, e.g. AUDIOBOOK_ARGS="--engine polly --bucket b"
AUDIOBOOK_ARGS ?=

.PHONY: install demo test offlinetest bench check books batch clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - install, then convert samples/ into an audiobook offline (Piper voice)"
	@echo "make test   - install, then run the whole test suite"
	@echo "make books  - convert every file in $(BOOKS_DIR)/ into $(OUT_DIR)/ (use -j)"
	@echo "make batch  - the same through 'audiobook batch' (one shared Polly quota)"
	@echo "make bench  - run the benchmarks, write bench/results.json"

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,voice-en]'
	@touch $@

demo: $(STAMP)
	$(AUDIOBOOK) convert samples/aesop-fables.epub -o samples/aesop-fables.m4b --state-dir samples/.state --engine piper

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; \
	exit $$rc

offlinetest: $(STAMP)
	$(PY) -m pytest -m "not aws"

bench: $(STAMP)
	$(PY) -m bench

check: $(STAMP)
	$(BIN)/ruff format --check audiobook tests
	$(BIN)/ruff check audiobook tests
	$(BIN)/mypy audiobook

books: $(OUTPUTS)

# For Polly, prefer this: books run in parallel inside one process and share one rate
# limiter, where `make -j4 books` runs four limiters that rely on throttling retries.
batch: $(STAMP)
	$(AUDIOBOOK) batch $(BOOKS_DIR) -o $(OUT_DIR) --jobs 4 --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)

# `make -j2 out/NAME.m4b` builds from books/NAME.epub (or .pdf, .html, .md, .txt);
# the state store makes a re-run do nothing and a crashed run resume.
$(OUT_DIR)/%.m4b: $(BOOKS_DIR)/%.epub | $(STAMP)
	$(AUDIOBOOK) convert $< -o $@ --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)
$(OUT_DIR)/%.m4b: $(BOOKS_DIR)/%.pdf | $(STAMP)
	$(AUDIOBOOK) convert $< -o $@ --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)
$(OUT_DIR)/%.m4b: $(BOOKS_DIR)/%.html | $(STAMP)
	$(AUDIOBOOK) convert $< -o $@ --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)
$(OUT_DIR)/%.m4b: $(BOOKS_DIR)/%.md | $(STAMP)
	$(AUDIOBOOK) convert $< -o $@ --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)
$(OUT_DIR)/%.m4b: $(BOOKS_DIR)/%.txt | $(STAMP)
	$(AUDIOBOOK) convert $< -o $@ --state-dir $(STATE_DIR) $(AUDIOBOOK_ARGS)

clean:
	rm -rf $(OUT_DIR) samples/*.m4b .pytest_cache
