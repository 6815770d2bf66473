# The two commands: `make run` (the whole mesh) and `make test` (the whole suite).
# Both set themselves up: a virtualenv in .venv, dependencies, generated code.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Reinstall whenever pyproject.toml changes, or libvirt-dev appears (the libvirt driver's
# binding builds against it; see tools/install_deps.sh).
LIBVIRT_TAG := $(shell pkg-config --exists libvirt 2>/dev/null && echo -libvirt)
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)$(LIBVIRT_TAG)
PROTOS := $(shell find protos -name '*.proto')
PYTEST_ARGS ?=

.PHONY: run test lint gen venv clean config-reference bench-placement bench-scheduler bench-boot \
	bench-api bench-liveness bench-idle fleet

run: gen
	$(BIN)/python -m deploy.local.run

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: gen
	cd protos && ../$(BIN)/buf lint ../gen/stratus.binpb --path stratus --config buf.yaml
	$(BIN)/ruff check .

gen: gen/stratus.binpb

gen/stratus.binpb: $(STAMP) $(PROTOS) tools/gen_protos.py tools/gen_openapi.py
	$(BIN)/python tools/gen_protos.py
	$(BIN)/python tools/gen_openapi.py

venv: $(STAMP)

$(STAMP): pyproject.toml tools/install_deps.sh tools/setup_podman.sh deploy/podman/containers.conf
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Stratus needs Python 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	tools/install_deps.sh $(BIN)/python
	# The repository root (services/, deploy/, tests/) and gen/ (generated code) on sys.path.
	printf '%s\n' "$(CURDIR)" "$(CURDIR)/gen" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/stratus-dev.pth"
	rm -f $(VENV)/.installed-*
	touch $@

bench-placement: gen
	$(BIN)/python -m bench.placement --sizes 1000,10000 --databases sqlite,postgresql --claims 10000

bench-scheduler: gen
	$(BIN)/python -m bench.scheduler --sizes 1000,10000 --samples 10,50,200,0

bench-boot: gen
	$(BIN)/python -m bench.boot --hosts 1000,10000 --servers 10000,single=2000,anti-affinity=500 \
		--variants multi,single,anti-affinity --rates multi=500 --databases sqlite,postgresql

bench-api: gen
	$(BIN)/python -m bench.api --databases sqlite,postgresql

bench-liveness: gen
	$(BIN)/python -m bench.liveness --sizes 1000,10000 --ttls 5,10,15

bench-idle: gen
	$(BIN)/python -m bench.idle --sizes 1000,10000

# Simulated hosts joining the mesh `make run` started (reads state/mesh.env); Ctrl-C stops them.
HOSTS ?= 1000
PROCESSES ?= 4
fleet: gen
	$(BIN)/python -m deploy.local.fleet --hosts $(HOSTS) --processes $(PROCESSES)

config-reference: venv
	$(BIN)/python -m services.common.config

clean:
	rm -rf $(VENV) gen
