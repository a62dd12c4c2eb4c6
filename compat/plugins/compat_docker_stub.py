"""
Stand-in for lovely-pytest-docker's 'docker_services' fixture.

Flask-Limiter's suite reaches Redis, Memcached and MongoDB only through
fixtures that request 'docker_services'. Without Docker those tests would
error at setup; this stand-in makes them skip with a reason instead, so
they are counted and visible rather than deselected.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def docker_services() -> None:
    """Skip: compat runs have no Docker, Redis, Memcached or MongoDB."""
    pytest.skip("needs a Docker service (Redis, Memcached or MongoDB)")
