import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.hubserver import hf_env, hub_server  # noqa: E402,F401  (pytest fixtures)

FIXTURES = os.path.join(_ROOT, "tests", "fixtures", "hub")
