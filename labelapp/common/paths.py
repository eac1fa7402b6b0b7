"""Server paths kept out of what the API answers: names relative to their storage root, or bare file names."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

# An absolute POSIX path's folders: '/' not inside a URL ('http://host/a/') or a relative path ('Tops/T-shirts').
_ABSOLUTE_FOLDERS_RE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"():,;]+/)+")


def _roots() -> list[tuple[str, str]]:
    """(absolute folder with a trailing '/', what to show instead), the longest first."""
    named = [(settings.MEDIA_ROOT, "media/"), (settings.ARTEFACT_ROOT, "artefacts/"), (settings.BASE_DIR, "")]
    roots = {}
    for folder, shown in named:
        for form in {str(Path(folder)), str(Path(folder).resolve())}:
            roots[form.rstrip("/") + "/"] = shown
    return sorted(roots.items(), key=lambda item: len(item[0]), reverse=True)


def server_paths_hidden(text: str) -> str:
    """Return a message with the server's absolute paths made relative (media/…, artefacts/…, the project's
    own files) and the folders of any other absolute path replaced by '…/'."""
    if "/" not in text:
        return text
    for folder, shown in _roots():
        text = text.replace(folder, shown)
    return _ABSOLUTE_FOLDERS_RE.sub("…/", text)


def file_name_shown(path: str) -> str:
    """The file name of a stored path ('/srv/media/imports/3f…/feed.csv' → 'feed.csv')."""
    return Path(path).name if path else ""
