"""experiments.errors: what a run stops with for each kind of exception (one line, or a bug's traceback)."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from experiments.errors import DataError, FileFailed, OutOfMemory, WriteFailed, as_user_error


def _raised(action) -> BaseException:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the exception under test, whatever it is
        return exc
    raise AssertionError("nothing was raised")


def test_a_user_error_stays_as_it_is_and_a_failed_write_names_the_path():
    error = DataError("train.csv, row 3: empty text")
    assert as_user_error(error) is error
    full = as_user_error(OSError(errno.ENOSPC, "No space left on device", "/runs/a/metrics.json"))
    assert isinstance(full, WriteFailed) and full.exit_code == 4
    assert str(full) == "could not write /runs/a/metrics.json: No space left on device"


@pytest.mark.parametrize("action", [
    lambda: torch.empty(2 ** 62, dtype=torch.uint8),  # torch's CPU allocator: a RuntimeError
    lambda: bytearray(2 ** 62),  # Python's own MemoryError
])
def test_running_out_of_memory_is_one_line_saying_what_to_lower(action):
    error = as_user_error(_raised(action))
    assert isinstance(error, OutOfMemory) and error.exit_code == 2
    assert str(error).startswith("out of memory (") and "per_device_batch_size" in str(error)
    assert "\n" not in str(error)


def test_anything_else_is_a_bug_and_keeps_its_traceback():
    assert as_user_error(ValueError("shapes do not match")) is None
    assert as_user_error(RuntimeError("expected scalar type Float")) is None


@pytest.mark.parametrize("code", sorted(errno.errorcode))
def test_only_an_errno_of_a_refusing_disk_or_permission_is_called_a_failed_write(code, tmp_path):
    target = tmp_path / "some" / "file.json"
    error = as_user_error(OSError(code, os.strerror(code), str(target)))
    assert error.exit_code == 4 and str(target) in str(error) and "\n" not in str(error)
    disk = code in {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
    assert isinstance(error, WriteFailed) == disk
    assert str(error).startswith("could not write " if disk else "could not use ")


@pytest.mark.parametrize("action", [
    lambda folder: (folder / "missing.json").open().read(),  # a file gone from under the run
    lambda folder: folder.open().read(),  # a folder where a file was expected
    lambda folder: (folder / "a" / "b").mkdir(),  # a parent that does not exist
])
def test_a_failed_read_or_lookup_is_one_line_that_does_not_say_write(action, tmp_path):
    error = as_user_error(_raised(lambda: action(tmp_path)))
    assert isinstance(error, FileFailed) and not isinstance(error, WriteFailed)
    assert str(error).startswith("could not use ") and str(tmp_path) in str(error)
