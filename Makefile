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

.PHONY: install demo test offlinetest bench check mutation books batch clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - install, then convert samples/ into an audiobook offline (Piper voice)"
	@echo "make test   - install, then run the whole test suite"
	@echo "make books  - convert every file in $(BOOKS_DIR)/ into $(OUT_DIR)/ (use -j)"
	@echo "make batch  - the same through 'audiobook batch' (one shared Polly quota)"
	@echo "make bench  - run the benchmarks, write bench/results.json"
	@echo "make mutation - mutation testing of the orchestration, write bench/mutation.txt"

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,voice-en,cluster]'
	@touch $@

demo: $(STAMP)
	$(AUDIOBOOK) convert samples/aesop-fables.epub -o samples/aesop-fables.m4b --state-dir samples/.state --engine piper

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
# TEST_JOBS: pytest-xdist workers (auto: one per core; 0: in this process).
TEST_JOBS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; \
	exit $$rc

offlinetest: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal -m "not aws"

bench: $(STAMP)
	$(PY) -m bench

check: $(STAMP)
	$(BIN)/ruff format --check audiobook tests
	$(BIN)/ruff check audiobook tests
	$(BIN)/mypy audiobook

# Mutation testing (mutmut, configured in pyproject.toml) of the functions that keep the
# promises: error classification, up-to-date checks, retries, failures and resume, the
# chunk rows. All ~2,200 mutants of the four modules would take many hours on two
# shared cores (a mutant runs every fast test that reaches its function: up to ~100
# tests); these ~400 take about an hour at low priority. Widen it with e.g.
# MUTATION_TARGETS="'audiobook.scheduler.*'".
MUTATION_TARGETS ?= \
	'audiobook.engines.polly.aws.x_map_client_error__*' \
	'audiobook.engines.polly.aws.x__call__*' \
	'audiobook.engines.polly.aws.x_reason_is_transient__*' \
	'audiobook.engines.polly.aws.x_task_state__*' \
	'audiobook.pipeline.x__up_to_date__*' \
	'audiobook.pipeline.x__outputs_fingerprint__*' \
	'audiobook.pipeline.x__cached_or_fail__*' \
	'audiobook.scheduler.xǁSchedulerǁ_retry_or_raise__*' \
	'audiobook.scheduler.xǁSchedulerǁ_backoff__*' \
	'audiobook.scheduler.xǁSchedulerǁ_fail__*' \
	'audiobook.scheduler.xǁSchedulerǁ_resume__*' \
	'audiobook.state.xǁStateStoreǁmark_starting__*' \
	'audiobook.state.xǁStateStoreǁmark_submitted__*' \
	'audiobook.state.xǁStateStoreǁmark_not_started__*' \
	'audiobook.state.xǁStateStoreǁmark_done__*' \
	'audiobook.state.xǁStateStoreǁmark_failed__*' \
	'audiobook.state.xǁStateStoreǁcached__*'

mutation: $(STAMP)
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children 2 $(MUTATION_TARGETS) > bench/mutation.log 2>&1 \
		|| { tail -c 4000 bench/mutation.log; exit 1; }
	$(PY) -m bench.mutation $(MUTATION_TARGETS) > bench/mutation.txt
	@head -4 bench/mutation.txt

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
