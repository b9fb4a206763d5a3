#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs them.
#   bash scripts/test.sh              default suite (PostgreSQL if reachable, then SQLite)
#   bash scripts/test.sh -m slow      the long proofs only (see README)
#   extra arguments are passed to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/bootstrap.sh
bash scripts/services.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the house's checked facts (pyproject.toml, docs/architecture.md)

PG_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
if .venv/bin/python -c "import psycopg,sys; psycopg.connect('$PG_URL', connect_timeout=3).close()" 2>/dev/null; then
    echo "== pytest on PostgreSQL =="
    DATABASE_URL=$PG_URL .venv/bin/pytest "$@"
    echo "== pytest on SQLite (database-level tests) =="
    # The POP3 protocol's property tests touch no database: once, in the pass above, is enough.
    DATABASE_URL=sqlite:///:memory: .venv/bin/pytest -m "not slow and not browser" \
        --ignore tests/mapping/test_pop3_protocol.py \
        tests/domains tests/accounts tests/mapping tests/fetch tests/mailservice tests/audit \
        tests/alerts "$@"
else
    echo "== PostgreSQL not reachable at $PG_URL: SQLite only =="
    DATABASE_URL=sqlite:///:memory: .venv/bin/pytest "$@"
fi
