# The --test-dsn option and fixtures of psycopg's own conftest that the probes use.
import pytest
def pytest_addoption(parser):
    parser.addoption("--test-dsn")
@pytest.fixture
def dsn(request): return request.config.getoption("--test-dsn")
@pytest.fixture
def conn(dsn):
    import psycopg
    c = psycopg.connect(dsn)
    yield c
    c.close()
