"""User input: one-line errors (exit code 2, no traceback) and the argparse types that check flags as they are read."""
import argparse
import errno
import functools
import math
import signal
import sys
import threading

# What the filesystem refuses for reasons the user fixes, not a fault of the code, and the fix.
FILESYSTEM_FIXES = {
    **dict.fromkeys((errno.EACCES, errno.EPERM, errno.EROFS), "fix its permissions or use another path"),
    **dict.fromkeys((errno.EISDIR, errno.ENOTDIR, errno.EEXIST), "give another path"),
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space or write elsewhere"),
    errno.ENAMETOOLONG: "give a shorter path",
}


class UserError(Exception):
    """Bad input the user can fix; the message names the problem and the fix."""


class TargetOutOfReach(UserError):
    """A target no allocation meets (under the floor, out of reach): what the run measured serves the next target."""


class Terminated(BaseException):
    """SIGTERM (what timeout, docker stop and job schedulers send), raised so temporary files are removed as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (a missing argument, an invalid int) are one line too; name the command in ``prog``."""

    def error(self, message):
        raise UserError(f"{message}; see {self.prog} --help")


def exit_on_user_error(main=None, *, interrupted="interrupted"):
    """Wrap a CLI entry point so a UserError, or a path the filesystem refuses, prints one line and exits with code 2,
    and Ctrl-C or SIGTERM prints ``interrupted`` (say how to continue) and exits with 130 or 143, as a shell reports
    them, once temporary files are removed. Use bare (``@exit_on_user_error``) or with the message
    (``@exit_on_user_error(interrupted=...)``)."""
    if main is None:
        return functools.partial(exit_on_user_error, interrupted=interrupted)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        in_main_thread = threading.current_thread() is threading.main_thread()  # the only one signal handlers go to
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            if err.errno not in FILESYSTEM_FIXES:
                raise
            where = f": '{err.filename}'" if err.filename else ""
            print(f"error: {err.strerror}{where}; {FILESYSTEM_FIXES[err.errno]}", file=sys.stderr)
            sys.exit(2)
        except (KeyboardInterrupt, Terminated) as err:
            print(f"\n{interrupted}", file=sys.stderr)
            sys.exit(130 if isinstance(err, KeyboardInterrupt) else 143)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def comma_list(text):
    """'a,b' -> ['a', 'b']; argparse also applies it to a recipe's string values. An empty list is refused."""
    items = [item for item in text.split(",") if item]
    if not items:
        raise argparse.ArgumentTypeError(f"'{text}' names nothing; give one value or a comma list")
    return items


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def nonnegative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0")
    return value


def positive_float(text):
    """A finite number above 0 (a learning rate, a number of epochs): NaN and infinity are refused too."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def nonnegative_float(text):
    """A finite number of at least 0 (a weight decay, epochs where 0 means none)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of at least 0")
    return value


def seed(text):
    """A random seed torch takes: from 0 to 2**64 - 1."""
    value = int(text)
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"{text} must lie from 0 to 2**64 - 1")
    return value


def positive_int_list(text):
    """'1,8,64' -> [1, 8, 64]."""
    return [positive_int(item) for item in comma_list(text)]


MAX_SIDE = 2048  # px: the small-stem MobileNetV2 took 8.5 GB and 73 s a forward at 2048 on 2 cores; at 5000 torch crashed


def image_size(text):
    """'224' -> (3, 224, 224); '1x28x28' -> (1, 28, 28)."""
    parts = [positive_int(part) for part in str(text).lower().split("x")]
    if len(parts) not in (1, 3):
        raise argparse.ArgumentTypeError(f"'{text}' is neither a side (224) nor CxHxW (3x224x224)")
    if max(parts[-2:]) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"'{text}': a side above {MAX_SIDE} px is no classification network's input "
                                         "(ImageNet's is 224); give a smaller size")
    return (3, parts[0], parts[0]) if len(parts) == 1 else tuple(parts)
