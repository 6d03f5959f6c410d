"""Test session set-up: two simulated CPU devices, so every sweep in the suite is also sharded."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
