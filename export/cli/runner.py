"""The one top-level handler every command runs in: what reaches the user is one line, never a traceback.

    def main(argv=None) -> int:
        return run_command(build_parser(), run, argv)   # run(args) -> exit status

Exit status and what is printed on stderr:
  2    `error: <one line>` for bad input: a `UserError` (export/errors.py), a usage error, an
       OSError (it names its file), memory exhausted, or a missing Python package;
  130  `interrupted` on Ctrl-C, 143 `terminated` on SIGTERM (both unwind, so the outputs' staging
       folders are removed: export/outputs.py);
  3    `internal error: ...` for anything else (a bug; NVFP4_EXPORT_TRACEBACK=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from typing import Callable, NoReturn

from export.errors import UsageError, UserError, one_line

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
TRACEBACK_ENV = "NVFP4_EXPORT_TRACEBACK"


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup runs (BaseException: not swallowed by
    `except Exception`)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors as one line (`error: ... (see PROG --help)`) through the handler.
    PROG is the script's name (`export.py`), or the entry point's (`nvfp4-export`) when run as one."""

    def __init__(self, *args, prog: str | None = None, **kwargs):
        invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        super().__init__(*args, prog=invoked if invoked.startswith("nvfp4-") else prog, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def describe_os_error(e: OSError) -> str:
    reason = e.strerror or type(e).__name__
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    return one_line(e) or reason


def _say(text: str) -> None:
    try:
        sys.stderr.write(one_line(text) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _SigtermRaises:
    """While active (main thread only), SIGTERM raises `Terminated`."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Terminated()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
                argv: list[str] | None = None) -> int:
    """Parse `argv`, call `run(args)`, and turn every way it can end into an exit status."""
    with _SigtermRaises():
        try:
            try:
                args = parser.parse_args(argv)
                return int(run(args) or 0)
            finally:
                try:
                    sys.stdout.flush()
                except BrokenPipeError:
                    pass
        except UserError as e:
            _say(f"error: {e}")
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            _say("interrupted")
            return EXIT_INTERRUPTED
        except Terminated:
            _say("terminated")
            return EXIT_TERMINATED
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): stop quietly, as `cat` does.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 128 + signal.SIGPIPE
        except ModuleNotFoundError as e:
            _say(f"error: the Python package {e.name!r} is not installed for {sys.executable}; run "
                 "scripts/setup.sh and use .venv/bin/python3")
            return EXIT_BAD_INPUT
        except MemoryError:
            _say("error: out of memory (is a size in the input absurd, or the model too large for this machine?)")
            return EXIT_BAD_INPUT
        except OSError as e:
            _say(f"error: {describe_os_error(e)}")
            return EXIT_BAD_INPUT
        except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback for users
            if os.environ.get(TRACEBACK_ENV):
                traceback.print_exc()
            _say(f"internal error: {type(e).__name__}: {one_line(e, 300)} "
                 f"(a bug; {TRACEBACK_ENV}=1 shows the traceback)")
            return EXIT_INTERNAL
