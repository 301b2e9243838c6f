"""YAML recipes: a command's settings in a file, checked against its flags before any work starts."""
import argparse
from pathlib import Path

import yaml

from compress.errors import UserError

NOT_IN_RECIPES = ("help", "config", "resume", "overwrite")


def read_recipe(path, parser, extra_settings=None):
    """The recipe's settings, each converted by its flag's type; a file that is not a mapping of known settings of the
    right type is refused in one line. ``extra_settings`` maps settings that have no flag to their default value."""
    path, extra_settings = Path(path), extra_settings or {}
    if path.is_dir():
        raise UserError(f"config '{path}' is a folder; give a YAML file, e.g. one of configs/")
    if not path.is_file():
        raise UserError(f"config '{path}' does not exist; see configs/ for recipes")
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config '{path}' is not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise UserError(f"config '{path}' is not a text file; give a YAML recipe (a checkpoint goes to --weights)") from None
    if not isinstance(recipe, dict):
        raise UserError(f"config '{path}' must map settings to values (e.g. 'batch_size: 64')")
    actions = {action.dest: action for action in parser._actions if action.dest not in NOT_IN_RECIPES}
    settings = {}
    for key, value in recipe.items():
        key = str(key).replace("-", "_")
        if key not in actions and key not in extra_settings:
            raise UserError(f"config '{path}': unknown setting '{key}'; settings are the flags of {parser.prog} --help")
        if value is None:  # 'tolerance:' with nothing after it: YAML reads null, which no setting takes
            raise UserError(f"config '{path}': '{key}' has no value; give one or delete the line for its default")
        settings[key] = _convert(path, key, value, actions.get(key), extra_settings.get(key))
    return settings


def _convert(path, key, value, action, default):
    """``value`` as the flag would have read it, or a UserError."""
    convert = action.type if action is not None else None
    if isinstance(value, list):  # a YAML list for a comma-list flag
        value = ",".join(str(item) for item in value)
    if convert is not None and not isinstance(value, (bool, dict)):
        try:
            value = convert(str(value))
        except argparse.ArgumentTypeError as err:  # the flag's own check, e.g. "-1 must be a finite number above 0"
            raise UserError(f"config '{path}': '{key}: {value}': {err}") from None
        except Exception:
            kind = getattr(convert, "__name__", "value").replace("_", " ")  # positive_int: "positive int"
            raise UserError(f"config '{path}': '{key}: {value}' is not a valid {kind}") from None
    else:
        expected = type(action.default if action is not None and action.default is not None else default)
        expected = {type(None): str, float: (int, float)}.get(expected, expected)
        if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # 'target_macs: 150000000' as the flag reads it
        # a bool or mapping for a typed flag, a value of another type, or a bool where a number is expected
        if convert is not None or not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            name = getattr(expected, "__name__", "a number")
            raise UserError(f"config '{path}': '{key}: {value}' should be {name}")
    if action is not None and action.choices and value not in action.choices:
        raise UserError(f"config '{path}': '{key}: {value}' should be one of {', '.join(map(str, action.choices))}")
    return value
