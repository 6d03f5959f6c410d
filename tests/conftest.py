"""Test session set-up: two simulated CPU devices, so every sweep in the suite is also sharded, one
persistent compilation cache for the whole run, and one ``jaxq reproduce --size tiny`` whose outputs
the reproduce test and the study tests all read.

The suite's time is mostly XLA compiling, and many tests compile the same programs (a study at its
tiny size in its own test and in ``jaxq reproduce --size tiny``, a learner in the CLI and in the
library, the workers of the multi-process tests). The first process of the run (pytest, or
pytest-xdist's controller) makes the cache folder and removes it at exit; the xdist workers and every
process a test starts inherit it through the environment. A cache set by the user is used as it is.
"""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxq-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def _reads_reproduced(item: pytest.Item) -> bool:
    return "reproduced" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items):
    """Test files that read the ``reproduced`` folder first, then files with a test marked ``slow``,
    each file's tests together and in their order (fixtures are made once per worker).

    With ``--dist worksteal`` the first worker starts with the first half of this order and an idle
    worker takes pending tests from the *end* of a busy one's queue: the readers of ``reproduced``
    stay on one worker, which runs the studies once, and long tests started early leave no worker
    running one alone at the end."""
    readers = {item.path for item in items if _reads_reproduced(item)}
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in readers, item.path not in heavy))


@pytest.fixture(scope="session")
def reproduced(request, tmp_path_factory):
    """The folder of one ``jaxq reproduce --size tiny`` (``<study>/summary.json``, ``curves.npz``, the
    figure, ``report.md``, ``report.json``): the studies at the size the study tests check. Read only;
    a test that writes copies what it needs.

    Every study runs when a collected reader's module names none (the reproduce test); otherwise only
    those its readers' modules list in ``READS``, so one study file run alone runs its own studies."""
    from jaxq.cli import main

    modules = {item.module for item in request.session.items if _reads_reproduced(item)}
    reads = [getattr(module, "READS", None) for module in modules]
    only = [] if None in reads else ["--only", *sorted({name for names in reads for name in names})]
    out = tmp_path_factory.mktemp("reproduce")
    assert main(["reproduce", "--size", "tiny", "--out", str(out), *only]) == 0
    return out
