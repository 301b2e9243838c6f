"""User-facing errors: one line, exit code 2, no traceback."""
import argparse
import functools
import sys


class UserError(Exception):
    """Bad input the user can fix; the message names the problem and the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (a missing argument, an invalid int) are one line too; name the command in ``prog``."""

    def error(self, message):
        raise UserError(f"{message}; see {self.prog} --help")


def exit_on_user_error(main):
    """Wrap a CLI entry point so a UserError prints one line and exits with code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
