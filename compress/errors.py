"""User input: one-line errors (exit code 2, no traceback) and the argparse types that check flags as they are read."""
import argparse
import errno
import functools
import math
import sys

# What the filesystem refuses for reasons the user fixes, not a fault of the code, and the fix.
FILESYSTEM_FIXES = {
    **dict.fromkeys((errno.EACCES, errno.EPERM, errno.EROFS), "fix its permissions or write elsewhere"),
    **dict.fromkeys((errno.EISDIR, errno.ENOTDIR, errno.EEXIST), "give another path"),
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space or write elsewhere"),
    errno.ENAMETOOLONG: "give a shorter path",
}


class UserError(Exception):
    """Bad input the user can fix; the message names the problem and the fix."""


class TargetOutOfReach(UserError):
    """A target no allocation meets (under the floor, out of reach): what the run measured serves the next target."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (a missing argument, an invalid int) are one line too; name the command in ``prog``."""

    def error(self, message):
        raise UserError(f"{message}; see {self.prog} --help")


def exit_on_user_error(main=None, *, interrupted="interrupted"):
    """Wrap a CLI entry point so a UserError, or a path the filesystem refuses, prints one line and exits with code 2,
    and Ctrl-C prints ``interrupted`` (say how to continue) and exits with 130, as a shell reports SIGINT.
    Use bare (``@exit_on_user_error``) or with the message (``@exit_on_user_error(interrupted=...)``)."""
    if main is None:
        return functools.partial(exit_on_user_error, interrupted=interrupted)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
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
        except KeyboardInterrupt:
            print(f"\n{interrupted}", file=sys.stderr)
            sys.exit(130)

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


def positive_int_list(text):
    """'1,8,64' -> [1, 8, 64]."""
    return [positive_int(item) for item in comma_list(text)]


def image_size(text):
    """'224' -> (3, 224, 224); '1x28x28' -> (1, 28, 28)."""
    parts = [positive_int(part) for part in str(text).lower().split("x")]
    if len(parts) not in (1, 3):
        raise argparse.ArgumentTypeError(f"'{text}' is neither a side (224) nor CxHxW (3x224x224)")
    return (3, parts[0], parts[0]) if len(parts) == 1 else tuple(parts)
