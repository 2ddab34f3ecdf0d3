"""Jinja2 for everything generated. A site overrides a shipped template by putting a file
of the same name in its custom template directory (site.templatedir, default
<installdir>/custom/templates under XCATROOT)."""
from __future__ import annotations

from pathlib import Path

import jinja2

from xcatd.config import Paths


def custom_dir(paths: Paths, site: dict[str, str]) -> Path:
    if site.get("templatedir"):
        return paths.under(site["templatedir"])
    return paths.under(site.get("installdir") or "/install") / "custom" / "templates"


def environment(paths: Paths, site: dict[str, str]) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(custom_dir(paths, site))),
        jinja2.PackageLoader("xcatd.templates", "."),
    ])
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True, autoescape=False)
