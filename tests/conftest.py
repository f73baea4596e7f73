"""Test session set-up: settled capacities are cached in a folder of this session only, so
tests share them with each other but never with a user's cache or an earlier run."""

from __future__ import annotations

import os
import tempfile

os.environ["AICPP_OPT_CACHE"] = tempfile.mkdtemp(prefix="aicpp-opt-test-cache-")
