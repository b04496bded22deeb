"""The `served` fixture of the server, REST and batching tests (one server per test module)."""
from __future__ import annotations

import pytest

from tests.serving.served import two_versions


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with two_versions(str(tmp_path_factory.mktemp("models"))) as handles:
        yield handles
