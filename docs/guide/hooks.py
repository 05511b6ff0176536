"""MkDocs hook (``mkdocs.yml``): the site's pages live under ``docs/guide/`` beside the result
pages in ``docs/``, so the site root gets a small ``index.html`` that redirects to the guide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_REDIRECT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wideflat</title>
<meta http-equiv="refresh" content="0; url=guide/">
<link rel="canonical" href="guide/"></head>
<body><a href="guide/">wideflat documentation</a></body></html>
"""


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Write ``index.html`` at the site root unless a page already took that place."""
    index = Path(config["site_dir"]) / "index.html"
    if not index.exists():
        index.write_text(_REDIRECT, encoding="utf-8")
