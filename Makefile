# Two commands: `make run` starts everything, `make test` runs the checks and tests.
# Both use PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL are set, and an
# embedded SQLite database and filesystem broker (under var/) otherwise.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_PORT ?= 8000
export WEB_PORT

.PHONY: run test install lint typecheck migrate seed bench bench-sockets soak clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "  Flowdesk is starting:"
	@echo "    app        http://127.0.0.1:$(WEB_PORT)/"
	@echo "    admin      http://127.0.0.1:$(WEB_PORT)/admin/"
	@echo "    inbox      http://127.0.0.1:$(WEB_PORT)/inbox/"
	@echo "    API docs   http://127.0.0.1:$(WEB_PORT)/api/docs/"
	@echo "    health     http://127.0.0.1:$(WEB_PORT)/healthz"
	@echo "    login      demo / demo-pass-2026"
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" DEBUG=$${DEBUG:-1} $(BIN)/python scripts/run.py start -f Procfile

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

bench: migrate
	$(BIN)/python -m bench.engine

# The chaos soak (bench/soak.py): its own Redis, workers killed; drops and creates flowdesk_soak.
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# 500 live-update sockets on daphne: fan-out latency and throughput against the bare
# channel layer (owns the database flowdesk_bench_sockets and Redis db 12; bench/README.md).
bench-sockets: install
	nice -n 10 $(BIN)/python -m bench.sockets $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
