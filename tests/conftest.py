"""Shared fixtures: the body model is loaded once per test session (the first load builds its cache)."""

import pytest

from humansplat.body import BodyModel


@pytest.fixture(scope="session")
def body() -> BodyModel:
    return BodyModel.load()
