"""Records which of the listed libraries this Python can import, with their installed versions.

    record_libraries.py REQUIREMENTS [--find-only] [--require NAME]...

Prints one JSON object to stdout, {"<name as written in REQUIREMENTS>": "<installed version>"}, sorted by
name, with only the libraries that are installed AND import (or, with --find-only, whose module can be
found without importing it: cheap enough for a start-up probe). Libraries that are installed but fail to
import are left out and named on stderr with the error, so nothing is promised that is not there.

Dockerfile.sandbox runs it at build time (real imports) and keeps the output as /opt/oi/libraries.json,
the list the controller may tell the model. Exit status 1 when a --require'd library is missing (the
build then fails), 2 on bad arguments; 0 otherwise.

Versions come from importlib.metadata (https://docs.python.org/3/library/importlib.metadata.html), so
Debian's python3-* packages are recognised as well as pip's; a library installed without metadata (Debian's
python3-opencv) is recognised by importing it and reading its __version__.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import warnings

# Distribution name (lower case) -> module names to try, first found wins. Anything not listed here
# imports under its own name with '-' replaced by '_'.
IMPORT_NAMES = {
    'beautifulsoup4': ['bs4'],
    'ffmpeg-python': ['ffmpeg'],
    'opencv-python': ['cv2'],
    'opencv-python-headless': ['cv2'],
    'pymupdf': ['pymupdf', 'fitz'],  # Debian bookworm's python3-fitz (1.21) has only `fitz`
    'scikit-learn': ['sklearn'],
}


def requirement_names(text):
    """Package names of a requirements file: the same rules as controller/agent/requirements.ts."""
    names = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line or line.startswith('-'):
            continue
        name = re.split(r'[\s<>=!~;\[]', line, maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def module_usable(module, find_only):
    """None when the module can be used, else why not (a one-line message)."""
    try:
        if find_only:
            return None if importlib.util.find_spec(module) is not None else 'not found'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # deprecation chatter of old libraries is not a failure
            importlib.import_module(module)
        return None
    except Exception as error:  # noqa: BLE001 - any failure to import means "not usable"
        return f'{type(error).__name__}: {error}'.splitlines()[0]


def version_from_module(module):
    """The module's own __version__: for distributions installed without metadata (Debian's python3-opencv)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            version = getattr(importlib.import_module(module), '__version__', None)
    except Exception:  # noqa: BLE001 - not importable: no version
        return None
    return version if isinstance(version, str) and version else None


def usable_version(name, find_only):
    """(version, None) when the library is installed and usable, else (None, reason)."""
    modules = IMPORT_NAMES.get(name.lower(), [name.lower().replace('-', '_')])
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        for module in modules:
            version = version_from_module(module)
            if version is not None:
                return version, None
        return None, 'not installed'
    reasons = []
    for module in modules:
        reason = module_usable(module, find_only)
        if reason is None:
            return version, None
        reasons.append(f'{module}: {reason}')
    return None, '; '.join(reasons)


def parse_arguments(argv):
    if not argv or argv[0].startswith('-'):
        raise SystemExit(2)
    requirements, find_only, required = argv[0], False, []
    rest = argv[1:]
    while rest:
        option = rest.pop(0)
        if option == '--find-only':
            find_only = True
        elif option == '--require' and rest:
            required.append(rest.pop(0))
        else:
            raise SystemExit(2)
    return requirements, find_only, required


def main(argv):
    try:
        requirements, find_only, required = parse_arguments(argv)
    except SystemExit:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(requirements, encoding='utf-8') as file:
        names = requirement_names(file.read())
    found = {}
    for name in names:
        version, reason = usable_version(name, find_only)
        if version is None:
            print(f'record_libraries: {name} left out ({reason})', file=sys.stderr)
        else:
            found[name] = version
    missing = [name for name in required if name not in found]
    if missing:
        print(f'record_libraries: required but not usable: {", ".join(missing)}', file=sys.stderr)
        return 1
    json.dump(dict(sorted(found.items(), key=lambda item: item[0].lower())), sys.stdout, indent=1)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
