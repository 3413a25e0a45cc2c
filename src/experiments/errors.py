"""User-facing errors: printed as one line (``error: …``) with a non-zero exit, never a traceback."""
import errno
import os


class ExperimentError(Exception):
    """Bad input a user can fix: an unknown option, a missing file, a malformed row."""

    exit_code = 2


class ResolutionError(ExperimentError):
    """A model or dataset could be found in none of the places tried."""


class DataError(ExperimentError):
    """Rows or files that cannot be read as the config says."""


class TrainingDiverged(ExperimentError):
    """The loss became NaN or infinite: the run stops (exit 3) instead of training and saving garbage."""

    exit_code = 3


# errno values that say the disk, not the path, is the problem
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# errno values of an OSError that reached a run unwrapped which are read as a failed write: the disk's, and a
# refused permission (the framework reads its own files, which it wrote, and users' files, which data loading
# checks first). Anything else (a file gone, a folder where a file was expected, an I/O error) is worded neutrally.
_WRITE_ERRNOS = _DISK_ERRNOS | {errno.EACCES, errno.EPERM}


class FileFailed(ExperimentError):
    """A file the run needed could not be used: an operating-system error (permission denied, a path that is
    not a folder, an I/O error) that reached the run without a more precise error of ours. Exit 4."""

    exit_code = 4
    verb = "use"

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"could not {self.verb} {path}: {reason}")


class WriteFailed(FileFailed):
    """A file of the run could not be written (disk full, permission denied, read-only filesystem, a folder
    that is a file): exit 4. Earlier results are intact; after the cause is fixed the run resumes."""

    verb = "write"


class RecordUnreadable(ExperimentError):
    """One of the framework's own records (metrics.json, config.yaml, loop_state.json, a sweep record)
    is truncated, garbled or unreadable."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        super().__init__(f"cannot read {path}: {reason}")


def reason_of(exc: BaseException, path=None) -> str:
    """The short cause of a failed write: ``No space left on device`` (an OSError's text; torch and safetensors
    wrap it in their own messages, or, like torch's writer, drop it: then a full disk under ``path`` says it),
    else the exception's first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    for code in _DISK_ERRNOS:
        if os.strerror(code) in str(exc) or f"os error {code})" in str(exc):
            return os.strerror(code)
    if path is not None and _free_bytes(path) < 1 << 20:
        return os.strerror(errno.ENOSPC)
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _free_bytes(path) -> int:
    probe = os.path.abspath(os.fspath(path))
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        stat = os.statvfs(probe)
    except OSError:
        return 1 << 62
    return stat.f_bavail * stat.f_frsize


def write_failed(exc: BaseException, path=None) -> WriteFailed:
    """The one-line error of a failed write: the path from the OSError when it names one."""
    if isinstance(exc, WriteFailed):
        return exc
    named = getattr(exc, "filename", None)
    return WriteFailed(named or path or "a file", reason_of(exc, named or path))


def disk_failure(exc: BaseException, path) -> "WriteFailed | None":
    """WriteFailed when ``exc`` (an OSError, or a library's error such as torch's writer on a full disk) says a
    write under ``path`` failed for want of space or access; else None."""
    reason = reason_of(exc, path)
    if isinstance(exc, OSError) or reason in {os.strerror(code) for code in _DISK_ERRNOS}:
        return WriteFailed(getattr(exc, "filename", None) or path, reason)
    return None


class OutOfMemory(ExperimentError):
    """The run asked for more memory than the machine (or GPU) has: a config value sized past it."""


_MEMORY_WORDS = ("can't allocate memory", "out of memory", "cannot allocate memory")


def as_user_error(exc: BaseException) -> "ExperimentError | None":
    """The one-line error a run stops with for ``exc``: an ExperimentError as it is; an OSError as a failed write
    when its errno says the disk refused (full, quota, read-only, file too large, permission), else as a file that
    could not be used (both exit 4, naming the file); running out of memory (MemoryError, torch's OutOfMemoryError, its CPU allocator's "can't allocate
    memory") as what to lower (exit 2). None for anything else: a bug, whose traceback is shown."""
    if isinstance(exc, ExperimentError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in _WRITE_ERRNOS:
            return write_failed(exc)
        return FileFailed(exc.filename or "a file", exc.strerror or str(exc) or type(exc).__name__)
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(w in str(exc).lower()
                                                                             for w in _MEMORY_WORDS)):
        return OutOfMemory(f"out of memory ({first}): lower what sizes it — trainer.per_device_batch_size, "
                           f"tokenizer.max_length, task.num_beams / task.max_new_tokens / task.batch_size, or the "
                           f"model")
    return None

