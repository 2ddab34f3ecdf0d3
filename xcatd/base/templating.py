"""Jinja2 for everything generated. A site overrides a shipped template by putting a file
of the same name in its custom template directory (site.templatedir, default
<installdir>/custom/templates under XCATROOT). Install and netboot templates, found by OS
and profile, are xcatd.provision.osfamily's."""
from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from xcatd.base.paths import Paths
from xcatd.base.site import SiteValues


def custom_dir(paths: Paths, site: SiteValues) -> Path:
    if site.get("templatedir"):
        return paths.under(site.directory("templatedir", "/"))
    return site.installdir(paths) / "custom" / "templates"


def environment(paths: Paths, site: SiteValues) -> jinja2.Environment:
    """The site's custom template directory first, then the shipped templates."""
    return _environment(jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(custom_dir(paths, site))),
        jinja2.PackageLoader("xcatd.templates", "."),
    ]))


@functools.lru_cache(maxsize=1)
def shipped_environment() -> jinja2.Environment:
    """The shipped templates only (no site at hand: doctests, tools)."""
    return _environment(jinja2.PackageLoader("xcatd.templates", "."))


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True, autoescape=False)
