"""Output files: checked before the work that ends in them, and written atomically, so a run directory never holds a
half-written artefact."""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from compress.errors import FILESYSTEM_FIXES, UserError


def check_output(path, flag, *, folder):
    """Refuse, before the work, an output its end could not write: a file where a folder is meant, a folder where a
    file is, or a place this user may not write in."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} '{path}' is a file; give a folder")
    if not folder and path.is_dir():
        raise UserError(f"{flag} '{path}' is a folder; give a file name, e.g. '{path / 'model.pt'}'")
    into = (path if folder else path.parent).absolute()
    place = next(p for p in (into, *into.parents) if p.exists())  # the folder the write will create folders in
    if not place.is_dir():
        raise UserError(f"{flag} '{path}': '{place}' is a file, not a folder; give another path")
    try:  # a write, not os.access: root passes that everywhere, and /proc or a read-only mount still refuse
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        fix = FILESYSTEM_FIXES.get(err.errno, "give another path")
        raise UserError(f"{flag} '{path}': cannot write in '{place}' ({err.strerror}); {fix}") from None
    return path


def read_run_config(run_dir):
    """The config.yaml of a ``python -m compress`` run in ``run_dir``; None where there is none, or another program's."""
    path = Path(run_dir) / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    is_run = isinstance(config, dict) and str(config.get("command", "")).startswith("python -m compress")
    return config if is_run else None


def exported_checkpoint(folder):
    """The checkpoint a folder's model.onnx and model.engine were exported from: a run's model.pt, or the one its
    export.json names (python -m export runs/x/ft5.pt writes runs/x/ft5_export/ and records ../ft5.pt); None where the
    folder has neither."""
    checkpoint = Path(folder) / read_export_record(folder).get("checkpoint", "model.pt")
    return checkpoint if checkpoint.is_file() else None


def read_export_record(folder):
    """The export.json ``python -m export`` wrote in ``folder``: {} where there is none, or where it is not JSON or not
    an export's (then nothing in the folder counts as exported)."""
    record = Path(folder) / "export.json"
    try:
        result = json.loads(record.read_text()) if record.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return result if isinstance(result, dict) and isinstance(result.get("checkpoint", ""), str) else {}


@contextlib.contextmanager
def removed_on_failure(folder):
    """Remove ``folder`` if this block created it and did not finish (an error, Ctrl-C): no half-made output is left."""
    created = not Path(folder).exists()
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def write_with(path, write):
    """Call ``write`` on a temporary binary file beside ``path``, then rename it into place.

    The file gets the permissions ``open`` would give it (0666 less the umask), not mkstemp's owner-only 0600, so a run
    directory can be shared or served like any other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask():
    """The process's umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_bytes(path, data: bytes):
    return write_with(path, lambda f: f.write(data))


def write_text(path, text: str):
    return write_bytes(path, text.encode())


def write_json(path, obj):
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_yaml(path, obj):
    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


def torch_save(path, obj):
    return write_with(path, lambda f: torch.save(obj, f))


def read_json(path):
    """A JSON file the toolkit wrote; one cut short or edited into something that is not JSON is refused in one line
    (the toolkit writes atomically, so the file was changed outside it)."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise UserError(f"'{path}' is not the JSON the toolkit wrote ({err}); delete it and run the command that made "
                        "it again (in a run directory, the same python -m compress command with --resume)") from None


def first_named_twice(values):
    """The first of ``values`` (paths, names or numbers) named again, or None; paths compare by the file or folder they
    resolve to, so runs/x and ./runs/x/ are one."""
    places = [str(Path(str(value)).resolve()) if Path(str(value)).exists() else value for value in values]
    return next((value for value, place in zip(values, places) if places.count(place) > 1), None)


def file_digest(path):
    """SHA-256 of a file's bytes: a checkpoint replaced at the same path is a different input."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
