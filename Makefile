# ioppy-agent: `make demo` and `make test` do all the set-up, as root, on a
# fresh Debian/Ubuntu machine: system packages, the RabbitMQ broker, a
# virtualenv with the package installed, /dev/net/tun.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := $(shell find ioppy_agent twisted -name '*.py' -o -name '*.xml' -o -path '*/static/*') setup.cfg setup.py
# Where make bench writes its tables and plot (git ignores bench-results/).
ifndef BENCH_OUT
BENCH_OUT := bench-results/$(shell date -u +%Y%m%d-%H%M%S)
endif

.PHONY: demo test bench bench-tools unit integration setup system test-tools broker tun install clean

demo: setup
	$(BIN)/python scripts/demo.py

test: setup test-tools
	$(BIN)/python -m twisted.trial --temp-directory=_trial_temp tests

# The bench: latency and throughput of the tunnel next to the kernel's own
# path and the broker's rate; the scale run (2, 10, 30 agents); the ways of
# direct delivery at the broker (delivery.py: 2 and 30 agents); the broker
# wake-up run (private RabbitMQ nodes, default and busy-wait schedulers);
# the soak (1,000,000 packets, memory sampled); then the session recorder
# off and on, and ioppy-capture reading a window back; acknowledgements on
# and off; one participant's flood on a session of four.  Results go to
# $(BENCH_OUT); copy a run into docs/ on purpose.
bench: setup bench-tools
	$(BIN)/python scripts/bench.py --out $(BENCH_OUT)
	$(BIN)/python scripts/scale.py --out $(BENCH_OUT)
	$(BIN)/python scripts/delivery.py --out $(BENCH_OUT)
	$(BIN)/python scripts/latency.py --out $(BENCH_OUT)
	$(BIN)/python scripts/soak.py --out $(BENCH_OUT)
	$(BIN)/python scripts/recorder.py --out $(BENCH_OUT)
	$(BIN)/python scripts/acks.py --out $(BENCH_OUT)
	$(BIN)/python scripts/flood.py --out $(BENCH_OUT)
	@echo "bench results in $(BENCH_OUT)"

bench-tools: install
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q matplotlib
	@missing=""; \
	command -v iperf3 >/dev/null 2>&1 || missing="$$missing iperf3"; \
	command -v tshark >/dev/null 2>&1 || missing="$$missing tshark"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

unit: install
	$(BIN)/python -m twisted.trial --temp-directory=_trial_temp tests.unit

integration: setup test-tools
	$(BIN)/python -m twisted.trial --temp-directory=_trial_temp tests.integration

setup: system broker tun install

# System packages: only what is missing is installed.
system:
	@missing=""; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v ping >/dev/null 2>&1 || missing="$$missing iputils-ping"; \
	command -v rabbitmqctl >/dev/null 2>&1 || missing="$$missing rabbitmq-server"; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# What only the tests use: tshark reads the pcap files the programs write;
# headless Chromium and its driver load the router's live page.
test-tools:
	@missing=""; \
	command -v tshark >/dev/null 2>&1 || missing="$$missing tshark"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The broker: started when it is not running, then waited for (bounded).
broker: system
	@scripts/ensure-broker.sh

tun:
	@[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Installed non-editable: a PEP 660 editable install hides the plugin from
# twistd.  setuptools' build/ is removed first, or a module deleted from the
# tree would still be in the wheel.  The plugin cache is rebuilt after every
# install.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	rm -rf build
	$(BIN)/pip install -q '.[test]'
	cd / && $(CURDIR)/$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $@

install: $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp twisted/plugins/dropin.cache
