"""Running ffmpeg: finding the binary, probing a file, encoding with progress.

The binary is ``--ffmpeg PATH``, else ``config.origin.ffmpeg``, else the one
shipped by imageio-ffmpeg. Encodes run as a child process in its own session
(so a terminal's Ctrl-C reaches only us, and we stop ffmpeg ourselves), with
the parent-death signal set on Linux (so a SIGKILLed publish does not leave an
orphan encoder writing into the library). stdout carries ``-progress`` blocks,
parsed by :class:`~seedcast.origin.progress.ProgressParser`; stderr goes to a
temporary file whose last line becomes the one-line error when ffmpeg fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import shutil
import signal
import subprocess
import tempfile
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from seedcast.errors import MediaError, UsageError
from seedcast.origin.probe import MediaInfo, parse_probe
from seedcast.origin.progress import ProgressParser, ProgressUpdate

__all__ = ["find_ffmpeg", "probe_file", "run_ffmpeg"]

PROBE_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


def find_ffmpeg(override: str | None = None, configured: str = "") -> str:
    """The ffmpeg to run. Raises UsageError when the named one does not exist."""
    named = override or configured
    if named:
        found = (
            shutil.which(named)
            if os.sep not in named
            else (named if os.access(named, os.X_OK) else None)
        )
        if found is None:
            raise UsageError(f"ffmpeg not found: {named!r} (give a path to an ffmpeg binary)")
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        try:
            return str(imageio_ffmpeg.get_ffmpeg_exe())
        except RuntimeError:
            pass
    system = shutil.which("ffmpeg")
    if system:
        return system
    raise UsageError("no ffmpeg: install imageio-ffmpeg (pip) or pass --ffmpeg PATH")


def probe_file(ffmpeg_binary: str, path: Path) -> MediaInfo:
    """Describe ``path`` by running ``ffmpeg -i``. Raises MediaError in one line."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        completed = subprocess.run(
            [ffmpeg_binary, "-hide_banner", "-nostdin", "-i", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path}: ffmpeg took over {PROBE_TIMEOUT:g} s to read it") from None
    except OSError as error:
        raise UsageError(f"cannot run ffmpeg {ffmpeg_binary!r}: {error.strerror}") from None
    return parse_probe(completed.stderr.decode("utf-8", "replace"), str(path))


def _set_parent_death_signal() -> None:  # runs in the child before exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_ffmpeg(
    command: Sequence[str],
    *,
    on_progress: Callable[[ProgressUpdate], None] | None = None,
    what: str = "ffmpeg",
) -> None:
    """Run ``command`` to completion, feeding progress blocks to ``on_progress``.

    On failure raises MediaError with ffmpeg's last error line. On
    KeyboardInterrupt (or any exception) ffmpeg is killed and reaped before the
    exception propagates.
    """
    parser = ProgressParser()
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if os.name == "posix" else None,
            )
        except OSError as error:
            raise UsageError(f"cannot run ffmpeg {command[0]!r}: {error.strerror}") from None
        try:
            stdout = typing.cast(io.BufferedReader, process.stdout)
            while chunk := stdout.read1(65536):
                for update in parser.feed(chunk):
                    if on_progress is not None:
                        on_progress(update)
            returncode = process.wait()
        except BaseException:
            _stop(process)
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
        if returncode != 0:
            errors.seek(0)
            raise MediaError(f"{what} failed: {_last_error_line(errors.read())}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _last_error_line(stderr: bytes) -> str:
    lines = [
        line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()
    ]
    if not lines:
        return "ffmpeg exited with an error and said nothing"
    # "Conversion failed!" and similar summaries say less than the line before them.
    for line in reversed(lines):
        if not line.startswith(("Conversion failed", "Error while")):
            return line[:300]
    return lines[-1][:300]
