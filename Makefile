# One command to run, one to test; each builds the virtual environment it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit system-tools bench bench-quick lock clean

# Every dependency is installed at the version pinned in constraints.txt, so a
# fresh machine runs the tests with what they last passed with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

## run: start the daemon against the built-in simulated cloud
run: $(STAMP)
	$(BIN)/jobwatchd run --simulate -c config/simulate.toml

## test: lint, type-check, build the docs (mkdocs --strict) and run the whole test suite
test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check jobwatchd tests bench
	$(BIN)/ruff format --check jobwatchd tests bench
	$(BIN)/mypy
	@# not --quiet: it hides the warnings that --strict turns into a failed build
	$(BIN)/mkdocs build --strict --site-dir site

# The unit-file tests need systemd-analyze, the PostgreSQL store's tests a real
# server (tests/helpers/pg.py starts a throwaway one with initdb, which Debian keeps in
# /usr/lib/postgresql/<version>/bin), the system test (tests/system/) boots the
# unit in a systemd-nspawn container over a rootfs built with mmdebstrap;
# install what is missing (as root, on Debian-like systems, as CI runs).
# --no-install-recommends: systemd-container recommends libnss-mymachines,
# which would add itself to the host's /etc/nsswitch.conf.
system-tools:
	@{ command -v systemd-nspawn >/dev/null && command -v mmdebstrap >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends systemd-container mmdebstrap >/dev/null; \
	  else echo "systemd-nspawn/mmdebstrap are missing: the system test will be skipped (apt-get install systemd-container mmdebstrap)"; fi; }
	@command -v systemd-analyze >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	  else echo "systemd-analyze is missing: install systemd's tools (apt-get install systemd)"; exit 1; fi; }
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "initdb is missing: install the PostgreSQL server (apt-get install postgresql)"; exit 1; fi; }
	@# promtool (checks the alerting rules and the /metrics exposition) comes with
	@# Debian's prometheus package, whose postinst enables and starts a prometheus
	@# server (systemd's unit, else /etc/init.d/prometheus, unless policy-rc.d
	@# forbids it as in containers): the tests want only the tool, so a server the
	@# install started is stopped (and its unit disabled) again.
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; \
	    if [ -d /run/systemd/system ]; then systemctl disable --now --quiet prometheus || true; \
	    elif pgrep -x prometheus >/dev/null; then /etc/init.d/prometheus stop >/dev/null || true; fi; \
	    ! pgrep -x prometheus >/dev/null || { echo "a prometheus server is still running"; exit 1; }; \
	  else echo "promtool is missing: the alert-rule tests will be skipped (apt-get install prometheus)"; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null; \
	  else echo "chromium is missing: the web view's browser tests will be skipped (apt-get install --no-install-recommends chromium)"; fi; }

unit: $(STAMP) system-tools
	$(BIN)/pytest

## bench: the benchmark suite (about 10 minutes on 2 cores): writes docs/BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python -m bench

## bench-quick: the same at smoke-test sizes (about a minute)
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

## lock: re-pin constraints.txt to the newest versions pyproject.toml allows
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev,bench]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
